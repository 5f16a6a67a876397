"""One router per resource: pages (HTML), api (faces and decisions), media (pictures, manual crop), rounds."""
