"""Atomic file writes: write a temporary file in the target's folder, fsync it, rename it into place.

A reader (or a resumed run after kill -9) sees either the old file or the complete new one, never a
half-written one. OS errors (disk full, file too large, read-only or forbidden folder, quota) become
one StorageError naming the operation and the path; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from egocache.errors import StorageError

_ERRNO_NAMES = {errno.ENOSPC: "disk full (ENOSPC)", errno.EFBIG: "file too large (EFBIG)",
                errno.EROFS: "read-only file system (EROFS)", errno.EACCES: "permission denied (EACCES)",
                errno.EPERM: "operation not permitted (EPERM)", errno.EDQUOT: "disk quota exceeded (EDQUOT)"}


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` is an fsspec URL (s3://, gs://, memory://, ...) rather than a local path."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def os_error_reason(exc: OSError) -> str:
    """A short reason for an OSError: the errno's name where it is one a user can fix, else strerror."""
    return _ERRNO_NAMES.get(exc.errno or -1) or exc.strerror or str(exc)


def storage_error(action: str, path: str | os.PathLike[str], exc: OSError) -> StorageError:
    """StorageError "cannot <action> <path>: <reason>" for an OSError met while doing `action`."""
    err = StorageError(f"cannot {action} {os.fspath(path)}: {os_error_reason(exc)}")
    err.__cause__ = exc
    return err


def _fsync_dir(folder: str) -> None:
    """Flush a folder's entry table so a rename survives a power cut (best effort where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (e.g. tmpfs on old kernels) refuse fsync on folders; the rename stands
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path next to `path`; on success fsync it and rename it onto `path`.

    The temporary name keeps the target's suffix (some writers infer the format from it) and is
    unique per call. On any failure the temporary file is removed and `path` is left untouched.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    name = os.path.basename(target)
    stem, suffix = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise storage_error("create folder", folder, exc) from exc
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise storage_error("write", target, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(folder)


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], Any]) -> Path:
    """Call `write(tmp)` to fill a temporary file, then move it onto `path` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return write_atomic(path, write)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = True) -> Path:
    """Write `obj` as indented JSON (plus a newline) to `path` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")


_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def read_text(path: str | os.PathLike[str], error: type[Exception]) -> str:
    """The text of a file whose encoding is knowable: UTF-8, or UTF-8/UTF-16 with a byte-order mark
    (dropped); line ends normalised to "\\n" (CRLF and CR files read like LF ones).

    Anything else raises `error` in one line naming the file, the line and the byte, e.g.
    "notes.csv:12: not UTF-8 text (byte 0xe9 at column 7; save the file as UTF-8)".
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise error(f"{os.fspath(path)}: cannot read: {os_error_reason(exc)}") from exc
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom):], name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{os.fspath(path)}:{line}: not {encoding.upper()} text (byte 0x{data[exc.start]:02x} at "
                    f"column {column}; save the file as UTF-8)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def finished_summary(result: str | os.PathLike[str], summary: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON summary a finished run wrote next to its `result`, or None when either file is missing or
    the summary does not parse (the run did not finish: it is run again, and its resume logic takes over)."""
    if not (Path(result).is_file() and Path(summary).is_file()):
        return None
    try:
        found = json.loads(Path(summary).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
