"""Frame sources for the face tracker: cameras, video files and image sequences."""
