"""`nerkit tag-corpus`: tag files, folders or globs of texts into Parquet part files (resumable; local or Ray)."""
from __future__ import annotations

import argparse
import json
import sys

from nerkit.cli._util import add_backend


def _tag_corpus(a: argparse.Namespace) -> None:
    from nerkit.tagcorpus import result_dict, tag_corpus

    result = tag_corpus(a.model_dir, a.inputs, a.output, runner=a.runner, backend=a.backend, workers=a.workers,
                        threads=a.threads, text_column=a.text_column, keep_text=not a.no_text,
                        rows_per_shard=a.rows_per_shard, batch_rows=a.batch_rows, progress=not a.quiet)
    print(json.dumps(result_dict(result), indent=2))


class _Deprecated(argparse.Action):
    """``--engine``, the former name of ``--runner``: still accepted, with a note on stderr."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"nerkit tag-corpus: {option_string} is now --runner", file=sys.stderr)
        setattr(namespace, self.dest, values)


def register(sub) -> None:
    """Add the `tag-corpus` subcommand to the `nerkit` parser."""
    from nerkit.tagcorpus import DEFAULT_BATCH_ROWS, DEFAULT_ROWS_PER_SHARD, RUNNERS

    p = sub.add_parser("tag-corpus", help="tag a corpus (.txt/.jsonl/.parquet files, folders, globs) into Parquet",
                       description="Tag every text of the inputs; one Parquet part file per input shard, plus a "
                                   "manifest. A rerun into the same --output skips the shards already done.")
    p.add_argument("model_dir")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".txt (a text per line), .jsonl, .parquet; "
                   "files, folders (searched recursively) or globs (quote them)")
    p.add_argument("--output", required=True, help="folder for the part files and the manifest")
    p.add_argument("--runner", choices=RUNNERS, default="local",
                   help="local: this process; ray: Ray Data actors (pip install 'nerkit[ray]')")
    p.add_argument("--engine", dest="runner", choices=RUNNERS, action=_Deprecated, help=argparse.SUPPRESS)
    add_backend(p)
    p.add_argument("--workers", type=int, help="ray: model actors (default: the cluster's CPUs / --threads)")
    p.add_argument("--threads", type=int, help="threads per actor (ray, default 1) or for this process (local, "
                   "default: every core)")
    p.add_argument("--text-column", default="text", help="the text field of .jsonl / column of .parquet inputs")
    p.add_argument("--no-text", action="store_true", help="leave the text column out of the output")
    p.add_argument("--rows-per-shard", type=int, default=DEFAULT_ROWS_PER_SHARD,
                   help="Parquet inputs: row groups are gathered into shards of about this many rows")
    p.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="texts per model call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_tag_corpus)
