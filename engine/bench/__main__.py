"""``python -m pirender.engine.bench``: the same as ``pirender bench``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
