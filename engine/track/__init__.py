"""Face tracking: camera frames -> landmarks -> motion in the open space or the authors' space."""
