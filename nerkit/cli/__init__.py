"""`nerkit <verb>`: a thin command line over the public Python API.

Each verb is a small function in ``pipeline`` (stats, train, distill, evaluate, predict, demo), ``serving`` (export,
serve), ``corpus`` (tag-corpus) or ``annotating`` (validate, convert, agree, adjudicate, preannotate, suggest, curve); options shared by
several verbs are defined once in ``_util``. Heavy or optional libraries load only when a verb runs, so a
missing extra (fastapi, onnxruntime, pyyaml) fails only the verb that needs it.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from nerkit.cli import annotating, corpus, pipeline, serving
from nerkit.data import DataWarning
from nerkit.errors import NerkitError

_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """nerkit's own warnings as one line (their message names the file and line of the data; where in nerkit's code
    they were raised, and that source line, only confused: "/.../nerkit/data.py:360: DataWarning: ..."); others as
    Python shows them."""
    if issubclass(category, DataWarning):
        print(f"nerkit: warning: {message}", file=file or sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    """The `nerkit` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="nerkit", description="Fine-tune, evaluate and serve BERT NER models.")
    sub = p.add_subparsers(dest="verb", required=True)
    for group in (pipeline, serving, corpus, annotating):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nerkit` console script."""
    argv = sys.argv[1:] if argv is None else argv
    bad = next(((i, a) for i, a in enumerate(argv, 1) if not _is_unicode(a)), None)
    if bad is not None:  # bytes that are not UTF-8 (Python hands them on as lone surrogates): every writer fails
        shown = bad[1].encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"nerkit: error: argument {bad[0]} '{shown}' is not UTF-8 (\\udcXX: a byte that is not UTF-8); "
              "nerkit takes texts and file names in UTF-8", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args.func(args)
    except NerkitError as exc:
        print(f"nerkit: error: {exc}", file=sys.stderr)
        return 2
    except UnicodeEncodeError as exc:  # the last resort: readers name the file and line where they can
        print(f"nerkit: error: {exc.object[exc.start:exc.end]!r} is not Unicode text and cannot be written as "
              "UTF-8 (a lone surrogate, e.g. from a file name that is not UTF-8)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`nerkit stats ... | head`): stop quietly, as command-line tools do. Later writes,
        # including the interpreter's final flush, go to /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe
    return 0

