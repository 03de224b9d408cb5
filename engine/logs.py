"""Keeping third-party native libraries quiet: MediaPipe, TensorFlow Lite and absl print INFO/WARNING
lines straight to the process's standard error (file descriptor 2) from C++ when a graph first runs,
e.g. "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and "W0000 ... inference_feedback_manager
.cc:114] Feedback manager requires a model with a single signature inference". They say nothing a user
can act on.

:func:`quiet_native_logs` wraps such a call: fd 2 goes to a temporary file for the call's duration,
then every line that is not known noise is written back to standard error, so real errors are never
lost. ``PIRENDER_VERBOSE=1`` (the CLI's ``--verbose``) turns the filter off.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

__all__ = ["VERBOSE_ENV", "quiet_native_logs", "verbose"]

#: Environment variable that keeps every third-party log line (set by ``pirender --verbose``).
VERBOSE_ENV = "PIRENDER_VERBOSE"

#: Lines of native libraries that are dropped (INFO/WARNING chatter of MediaPipe, TF Lite and absl).
_NOISE = re.compile(
    r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog"
    r"|[IW]\d{4} [\d:. ]+\s+\d+ [\w.]+:\d+\]|I\d{4} |W\d{4} )"
)

# fd 2 is one per process: one redirection at a time
_LOCK = threading.Lock()


def verbose() -> bool:
    """True where third-party log lines should be shown (``PIRENDER_VERBOSE`` set to a non-empty,
    non-zero value)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Drop known native INFO/WARNING lines written to fd 2 inside the block; keep all others."""
    if verbose():
        yield
        return
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [
                    line
                    for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not _NOISE.match(line)
                ]
                if kept:
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()
