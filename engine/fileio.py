"""Writing files so that a failure never leaves a half-written one behind.

Every file the project writes goes to a hidden temporary file beside its target and is renamed into
place once complete: :func:`write_atomically` for files written in one go, :func:`staged_output` for
streamed ones (videos, sound). The commands check their outputs before any work
(:func:`check_output`, :func:`prepare_output`): an existing file is only replaced with
``--overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

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


# --------------------------------------------------------------------------------------------------
# output files of the commands: checked before any work, written beside the target, moved into place

#: What :func:`staged_output` does with the file when the block is interrupted (KeyboardInterrupt:
#: Ctrl-C, or SIGTERM in the CLI): keep it as ``<stem>.partial<suffix>`` (a render stopped half way),
#: move it into place like a finished one (a recording whose normal end is Ctrl-C), or delete it.
OnInterrupt = Literal["partial", "finish", "discard"]

OVERWRITE_OPTION = "--overwrite"


def temporary_path(target: str | os.PathLike[str]) -> Path:
    """A fresh hidden name beside ``target`` with its suffix (muxers pick the container from it):
    ``out.mp4`` -> ``.out.mp4.<16 hex>.tmp.mp4``."""
    path = Path(target)
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp{path.suffix}")


def partial_path(target: str | os.PathLike[str]) -> Path:
    """Where an interrupted output is kept: ``out.mp4`` -> ``out.partial.mp4``."""
    path = Path(target)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def check_output(
    target: str | os.PathLike[str], *, overwrite: bool, error: type[PirenderError] = PirenderError
) -> Path:
    """Check an output file path before any work starts, without creating anything.

    Returns the path with ``~`` expanded.

    Raises:
        error: the path is a folder; the file exists and ``overwrite`` is False (the message names
            ``--overwrite``); its folder is missing and cannot be made (a file is in the way); its
            folder exists but is not writable.
    """
    path = Path(target).expanduser()
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise error(f"{path}: already exists; add {OVERWRITE_OPTION} to replace it")
    folder = Path(os.path.abspath(path)).parent
    existing = folder
    while not existing.exists():  # the nearest folder that is there must take the missing ones
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{path}: cannot create its folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write in its folder" if existing == folder else "create its folder"
        raise error(f"{path}: cannot {verb} ({existing}: permission denied)")
    return path


def prepare_output(
    target: str | os.PathLike[str], *, overwrite: bool, error: type[PirenderError] = PirenderError
) -> Path:
    """:func:`check_output`, then create the file's missing folder(s): call it before any work.

    Returns the path with ``~`` expanded.

    Raises:
        error: what :func:`check_output` refuses, or the folder cannot be created.
    """
    path = check_output(target, overwrite=overwrite, error=error)
    prepare_folder(path.parent, error=error, label=path)
    return path


def prepare_folder(
    folder: str | os.PathLike[str],
    *,
    error: type[PirenderError] = PirenderError,
    label: str | os.PathLike[str] | None = None,
) -> Path:
    """Create an output folder (and its parents) if missing; returns it with ``~`` expanded.

    Raises:
        error: a file is in the way or the folder cannot be created (the message names ``label``,
            default the folder).
    """
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(
            f"{label or path}: cannot create its folder ({exception_text(exc, with_type=False)})"
        ) from None
    return path


@contextlib.contextmanager
def staged_output(
    target: str | os.PathLike[str],
    *,
    on_interrupt: OnInterrupt = "partial",
    on_error: Literal["discard", "partial"] = "discard",
    what: str = "what was written so far is",
    error: type[PirenderError] = PirenderError,
    announce: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Give the block a hidden temporary path beside ``target`` to write (a video, any streamed
    file), and move the file into place only when the block ends normally.

    - Success: the temporary file is flushed to disk (fsync) and renamed over ``target``
      (``os.replace``: atomic; an existing file is only ever replaced by a complete one). A block
      that wrote nothing (no temporary file) leaves ``target`` as it was.
    - KeyboardInterrupt (Ctrl-C; SIGTERM in the CLI): per ``on_interrupt``; ``"partial"`` renames
      what was written to ``<stem>.partial<suffix>`` (:func:`partial_path`) and says so through
      ``announce`` (default: a line on stderr, ``interrupted: {what} in {file}``: ``what`` is the
      subject and its verb, e.g. "the frames written so far are"); ``"finish"`` moves it into place as
      on success; ``"discard"`` deletes it. The interrupt then propagates. The block must have
      closed its file (a video writer used as an inner ``with`` closes it playable).
    - Any other exception: the temporary file is deleted (``on_error="partial"``: kept as
      ``<stem>.partial<suffix>``, said as for an interrupt); ``target`` is untouched.
    - Killed (SIGKILL, power loss): ``target`` is untouched; the temporary file stays, hidden.

    Raises:
        error: the finished file cannot be moved into place (one line naming ``target``).
    """
    path = Path(target)
    temporary = temporary_path(path)
    say = announce or _to_stderr
    try:
        yield temporary
    except KeyboardInterrupt:
        if not _written(temporary) or on_interrupt == "discard":
            temporary.unlink(missing_ok=True)
        elif on_interrupt == "finish":
            _commit(temporary, path, error)
            say(f"interrupted: {what} in {path}")
        else:
            _commit(temporary, partial_path(path), error)
            say(f"interrupted: {what} in {partial_path(path)}")
        raise
    except BaseException:
        if _written(temporary) and on_error == "partial":
            with contextlib.suppress(PirenderError):  # the first error is what the user needs
                _commit(temporary, partial_path(path), error)
                say(f"stopped by an error: {what} in {partial_path(path)}")
        temporary.unlink(missing_ok=True)
        raise
    if temporary.exists():
        _commit(temporary, path, error)


def _written(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _commit(temporary: Path, target: Path, error: type[PirenderError]) -> None:
    """fsync ``temporary``, rename it over ``target``, fsync the folder (where the OS allows)."""
    try:
        descriptor = os.open(temporary, os.O_RDONLY | _O_BINARY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise error(f"{target}: cannot write ({exception_text(exc, with_type=False)})") from None
    with contextlib.suppress(OSError, AttributeError):  # folders cannot be opened on Windows
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
