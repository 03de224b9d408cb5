"""Writing files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import PirenderError, exception_text

_NEW_FILE_MODE = 0o666  # like open(): permissions 0o666 less the umask (mkstemp would give 0o600)
_O_BINARY = getattr(os, "O_BINARY", 0)


def write_atomically(
    target: str | os.PathLike[str],
    write: Callable[[BinaryIO], None],
    *,
    error: type[PirenderError] = PirenderError,
) -> Path:
    """Run ``write(handle)`` on a temporary file beside ``target``, then move it into place.

    Readers never see a partial file and an existing file is only replaced by a complete one. An
    OSError (missing folder, permissions, full disk) becomes ``error`` with one line naming the file.
    """
    path = Path(target)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, _NEW_FILE_MODE)
    except OSError as exc:
        raise error(f"{path}: cannot write ({exception_text(exc, with_type=False)})") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise error(f"{path}: cannot write ({exception_text(exc, with_type=False)})") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
