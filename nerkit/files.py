"""File access shared by every reader and writer: atomic writes, and reads whose errors name the file and line."""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nerkit.errors import DataError, NerkitError


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


def check_text(text: str, path: object, line: int | None = None, what: str = "text") -> str:
    """``text`` if it is Unicode text; a lone surrogate (a broken "\\ud800" JSON escape, or bytes of a command-line
    argument that were not UTF-8) is a ``DataError`` naming where: every encoder downstream (the tokenizer, Arrow,
    the UTF-8 writers) would fail on it with a traceback."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        kind = "a byte that is not UTF-8" if "\udc80" <= bad <= "\udcff" else "a lone surrogate (half a UTF-16 pair)"
        raise DataError(path, line, f"{what} holds {bad!r} at character {e.start + 1}: {kind}, not Unicode text") from None
    return text


def check_json_text(value: object, path: object, line: int | None = None, raw: str | None = None) -> None:
    """Refuse a decoded JSON value holding a lone surrogate anywhere (keys included), naming ``path`` and ``line``.
    Given the ``raw`` text it was decoded from, values without a \\u escape (the only way to write one) are
    passed without a look."""
    if raw is not None and "\\u" not in raw:
        return
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            check_text(v, path, line, "a JSON string")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (links and ``./`` spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_not_input(output: str | os.PathLike, inputs, option: str = "--output") -> None:
    """Refuse an output path that is one of the inputs: it would be replaced by what was read from it, less what
    the output format cannot hold."""
    for src in inputs:
        if src is not None and same_file(output, src):
            raise NerkitError(f"{option} {output}: is the input {src}; nerkit does not overwrite its input, "
                              "write to another file")


def umask() -> int:
    """The process's file-creation mask (read without changing it where Linux reports it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the /proc read first)
    os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike) -> int:
    """Permissions for a file written at ``path``: those of the file it replaces, else what open() would give
    (0o666 less the umask). Temporary files start 0o600, which readers other than the owner cannot open."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~umask()


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` for the body to write (a file, or a folder it creates), moved onto ``path``
    in one rename when the body finishes and removed if it raises: readers see the old content or the new, whole.

    A new file gets the permissions of the file it replaces, else what open() would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and ending .tmp: folder readers (pyarrow, tag-corpus resume) skip it if a kill leaves it behind.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, new_file_mode(path))
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def follow_umask(directory: str | os.PathLike) -> None:
    """Give ``directory`` and the files in it the permissions the umask gives (safetensors and mkdtemp make
    them 0o600/0o700, which other users cannot read although the rest of the model is readable)."""
    mask, directory = umask(), Path(directory)
    os.chmod(directory, 0o777 & ~mask)
    for p in directory.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and ``os.replace``: readers never see half a file.

    A path that cannot be written (missing or read-only folder, a file where a folder should be) is a NerkitError
    naming it."""
    try:
        with replacing(path) as tmp:
            # Private while written (the finished file gets its permissions from ``replacing``).
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)
    except OSError as exc:
        raise NerkitError(f"{path}: cannot write ({exc.strerror or exc})") from None


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, or a parent that is missing,
    not a folder, or read-only (a NerkitError naming the path)."""
    p = Path(path)
    if p.is_dir():
        raise NerkitError(f"{p}: is a directory, expected a file to write")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise NerkitError(f"{p}: cannot write ({parent} is not a directory)")
    if not parent.exists():
        raise NerkitError(f"{p}: cannot write (no directory {parent})")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise NerkitError(f"{p}: cannot write (permission denied)")
    try:  # for real: permission bits say yes to root on /sys or a read-only mount
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NerkitError(f"{p}: cannot write ({exc.strerror or exc})") from None
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically, newlines exactly as given (character offsets must survive)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fingerprint(path: str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 of the file's bytes (to record exactly which data a run used)."""
    return hashlib.sha256(read_bytes(path)).hexdigest()[:16]
