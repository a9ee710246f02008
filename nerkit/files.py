"""File access shared by every reader and writer: atomic writes, and reads whose errors name the file and line."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from nerkit.errors import DataError


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; a missing file, a directory or an unreadable file is a ``DataError`` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a directory, expected a file") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read: {e.strerror}") from None


def lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each line, decoding UTF-8 line by line so errors have a line number."""
    raw_lines = read_bytes(path).split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the newline ending the last line does not start another
    for n, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = raw[e.start : e.end]
            problem = f"invalid UTF-8 bytes {bad!r} at byte {e.start + 1} of the line (files must be UTF-8)"
            raise DataError(path, n, problem) from None
        if n == 1:
            line = line.removeprefix("\ufeff")  # editors on Windows add a byte-order mark
        yield n, line.rstrip("\r")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and ``os.replace``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically, newlines exactly as given (character offsets must survive)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fingerprint(path: str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 of the file's bytes (to record exactly which data a run used)."""
    return hashlib.sha256(read_bytes(path)).hexdigest()[:16]
