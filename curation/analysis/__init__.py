"""The analysis room: runs alignment (a pure library) over the workspace's images and stores the faces it finds
in the catalog."""
