"""`nerkit <verb>`: a thin command line over the public Python API.

Each verb is a small function in ``pipeline`` (stats, train, evaluate, predict, demo), ``serving`` (export,
serve), ``corpus`` (tag-corpus) or ``annotating`` (validate, convert, agree, adjudicate, preannotate, suggest, curve); options shared by
several verbs are defined once in ``_util``. Heavy or optional libraries load only when a verb runs, so a
missing extra (fastapi, onnxruntime, pyyaml) fails only the verb that needs it.
"""
from __future__ import annotations

import argparse
import os
import sys

from nerkit.cli import annotating, corpus, pipeline, serving
from nerkit.errors import NerkitError


def build_parser() -> argparse.ArgumentParser:
    """The `nerkit` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="nerkit", description="Fine-tune, evaluate and serve BERT NER models.")
    sub = p.add_subparsers(dest="verb", required=True)
    for group in (pipeline, serving, corpus, annotating):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nerkit` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NerkitError as exc:
        print(f"nerkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`nerkit stats ... | head`): stop quietly, as command-line tools do. Later writes,
        # including the interpreter's final flush, go to /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe
    return 0

