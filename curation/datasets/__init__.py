"""The datasets room: from accepted faces to training archives. The archive format (names, the dataset card,
the writer, the one reader, the verifier), dataset versions, freeze (plan -> write -> commit), pack (a folder
of photos straight to an archive) and takedown (removing a person's photos from every version)."""
