"""Errors that nerkit reports to users as one clear line (the CLI prints them without a traceback)."""
from __future__ import annotations


class NerkitError(Exception):
    """A problem with the user's input or setup, worded for the user."""


class DataError(NerkitError):
    """Bad input data; the message names the file, the line (or record) and the problem."""

    def __init__(self, path: object, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        # Pickle rebuilds an exception from its args (here the message alone): give the three fields instead, so
        # one raised in another process (a Ray worker) comes back whole.
        return type(self), (self.path, self.line, self.problem)
