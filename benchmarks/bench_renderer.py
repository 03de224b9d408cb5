#!/usr/bin/env python
"""The renderer benchmark: the same as ``pirender bench`` (``pirender.engine.bench``); kept so that the
commands recorded in RESULTS.md still run."""

from pirender.engine.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
