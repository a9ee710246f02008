"""The Ray runner of ``tag-corpus``: shards read by a light Ray Data stage, tagged by an actor pool that loads the
model once per actor, and handed back to the driver one finished shard at a time.

It knows nothing of the output contract: ``tagcorpus.tag_corpus`` passes it how to read a shard, which callable
class tags a batch (``tagcorpus.TagBatch``), how to tag an empty table, and ``done(shard, table)`` that writes a
finished shard. Ray retries failed tasks and restarts dead actors; a row that comes back twice, or a shard whose
rows do not all come back, is an error and nothing is written for it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from nerkit.errors import NerkitError

# Internal columns: a row's shard, the shard's row count, and (on one row of the shard) its column names as JSON,
# because Ray Data unifies the schemas of the blocks it batches together.
SHARD_COL, SHARD_ROWS_COL, SHARD_COLS_COL = "__nerkit_shard", "__nerkit_shard_rows", "__nerkit_shard_cols"
INTERNAL_COLUMNS = (SHARD_COL, SHARD_ROWS_COL, SHARD_COLS_COL)


def import_ray():
    """The ``ray`` module with Ray Data, or a NerkitError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise NerkitError("--runner ray needs Ray Data, which is not installed: pip install 'nerkit[ray]'") from None
    return ray


class _ReadShards:
    """Ray Data stage: shard indices in, the shards' rows out (with the shard index and its row count)."""

    def __init__(self, shards: list, read: Callable, text_column: str):
        self.shards, self.read, self.text_column = shards, read, text_column

    def __call__(self, batch):
        import pyarrow as pa

        tables = []
        for i in batch["shard"].to_pylist():
            t = self.read(self.shards[i], self.text_column)
            if not t.num_rows:
                continue  # an empty shard: the driver writes its (empty) part when the stream ends
            cols = json.dumps(t.column_names)
            t = t.append_column(SHARD_COL, pa.array([i] * t.num_rows, pa.int64()))
            t = t.append_column(SHARD_ROWS_COL, pa.array([t.num_rows] * t.num_rows, pa.int64()))
            tables.append(t.append_column(SHARD_COLS_COL, pa.array([cols] + [None] * (t.num_rows - 1), pa.string())))
        if not tables:
            return pa.table({"text": pa.array([], pa.string()), SHARD_COL: pa.array([], pa.int64())})
        return pa.concat_tables(tables, promote_options="permissive")


def _nerkit_cause(exc: BaseException) -> NerkitError | None:
    """The NerkitError inside an exception Ray raised for a failed task, if there is one."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NerkitError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None


def run_ray(model_dir: str | os.PathLike, backend: str, pending: Sequence, *, read: Callable, actor: type,
            tag_empty: Callable, done: Callable, workers: int | None = None, threads: int | None = None,
            text_column: str = "text", batch_rows: int = 1024, progress: bool = False) -> None:
    """Tag the ``pending`` shards on Ray (a local cluster of ``available_cores()`` unless one is running or
    RAY_ADDRESS names one): ``workers`` actors of class ``actor`` with ``threads`` CPU threads each."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        from nerkit.engines import available_cores

        kwargs = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": available_cores()}
        ray.init(include_dashboard=False, logging_level="WARNING", **kwargs)
        started = True
    try:
        threads = threads or 1
        cpus = int(ray.cluster_resources().get("CPU", 0))
        workers = workers or max(1, cpus // threads)
        if workers * threads > cpus:
            raise NerkitError(f"--workers {workers} x --threads {threads} needs {workers * threads} CPUs; the Ray "
                              f"cluster has {cpus}")
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.raise_original_map_exception = True  # a bad row's DataError, not a UserCodeException with its text
        ds = ray.data.from_items([{"shard": i} for i in range(len(pending))], override_num_blocks=len(pending))
        # Reading is light; with num_cpus=0 it never waits behind the actors, which hold every CPU.
        ds = ds.map_batches(_ReadShards(list(pending), read, text_column), batch_size=1, batch_format="pyarrow",
                            num_cpus=0)
        ds = ds.map_batches(actor, fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()),
                                                          "backend": backend, "threads": threads},
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
                            batch_size=batch_rows, batch_format="pyarrow")
        try:
            complete, seen = _collect(ds, pending, done)
        except Exception as exc:
            cause = _nerkit_cause(exc)
            if cause is not None:
                raise NerkitError(str(cause)) from None
            raise
        for i, shard in enumerate(pending):
            if i in complete:
                continue
            table = read(shard, text_column)  # rows that produced no batch: only an empty shard may
            if table.num_rows or i in seen:
                raise NerkitError(f"{shard.key}: {len(seen.get(i, ()))} of {table.num_rows} rows came back "
                                  "from Ray; nothing was written for this shard")
            done(shard, tag_empty(table))
    finally:
        if started:
            ray.shutdown()


def _collect(ds, pending: Sequence, done: Callable) -> tuple[set[int], dict[int, set]]:
    """Gather the tagged rows per shard as they stream back; ``done`` each shard once all its rows are in.
    Returns the shards done and, per shard, the rows that came back."""
    import pyarrow as pa
    import pyarrow.compute as pc

    got: dict[int, list] = {}
    rows_seen: dict[int, set] = {}
    complete: set[int] = set()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        if not batch.num_rows:
            continue
        shard_col = batch[SHARD_COL].to_numpy()
        for i in sorted(set(shard_col.tolist())):
            part = batch.filter(pc.equal(batch[SHARD_COL], i))
            seen = rows_seen.setdefault(i, set())
            rows = part["row"].to_pylist()
            if seen.intersection(rows) or i in complete:
                raise NerkitError(f"{pending[i].key}: a row came back twice from Ray; nothing was written "
                                  "for this shard")
            seen.update(rows)
            got.setdefault(i, []).append(part)
            if len(seen) == part[SHARD_ROWS_COL][0].as_py():
                table = pa.concat_tables(got.pop(i), promote_options="permissive")
                names = pc.drop_null(table[SHARD_COLS_COL])[0].as_py()
                done(pending[i], table.select(json.loads(names) + ["entities"]))
                complete.add(i)
    return complete, rows_seen
