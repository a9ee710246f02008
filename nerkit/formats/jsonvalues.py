"""JSON and JSON Lines values with the line each starts on, so errors in annotation exports name the line."""
from __future__ import annotations

import json
import os
import re
from typing import Iterator

from nerkit.errors import DataError
from nerkit.files import check_json_text, read_bytes


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file's contents (byte-order mark dropped); bad bytes are a ``DataError`` naming the line."""
    raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, f"bytes {raw[e.start:e.end]!r} are not valid UTF-8 (files must be UTF-8)") from None
    return text.removeprefix("\ufeff")


def json_values(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """``(line, value)`` for each element of a top-level JSON array, or each value of a JSON Lines file."""
    raw = read_text(path)
    dec = json.JSONDecoder()
    pos, line, n = 0, 1, len(raw)
    ws = re.compile(r"\s*")

    def skip(i: int) -> int:
        nonlocal line
        j = ws.match(raw, i).end()
        line += raw.count("\n", i, j)
        return j

    def decode(i: int) -> tuple[object, int]:
        try:
            value, end = dec.raw_decode(raw, i)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}") from None
        check_json_text(value, path, line, raw[i:end])  # a lone "\ud800" crashed every writer with a traceback
        return value, end

    pos = skip(0)
    if pos == n:
        raise DataError(path, None, "the file is empty")
    if raw[pos] == "[":
        # An array of objects (a Label Studio export) is read element by element, to know each one's line;
        # an array of anything else is one JSON Lines value (spaCy's ["text", {"entities": ...}] lines).
        probe = skip(pos + 1)
        # ... so is an array of arrays: spaCy v2 training data saved as one array of ["text", {"entities"}] pairs.
        if probe < n and raw[probe] in "{[]":
            pos = probe
            while pos < n and raw[pos] != "]":
                start_line = line
                value, end = decode(pos)
                line += raw.count("\n", pos, end)
                yield start_line, value
                pos = skip(end)
                if pos < n and raw[pos] == ",":
                    pos = skip(pos + 1)
                elif pos < n and raw[pos] != "]":
                    raise DataError(path, line, f"invalid JSON: expected ',' or ']' but found {raw[pos]!r}")
            if pos >= n:
                raise DataError(path, line, "invalid JSON: the array is not closed with ']'")
            if skip(pos + 1) != n:
                raise DataError(path, line, "invalid JSON: extra data after the array")
            return
        line = 1
        pos = skip(0)
    while pos < n:
        start_line = line
        value, end = decode(pos)
        line += raw.count("\n", pos, end)
        yield start_line, value
        pos = skip(end)
