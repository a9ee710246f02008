"""Tag a corpus of files with a model: shards in, one Parquet part file per shard out, resumable.

Inputs are .txt (a text per line), .jsonl (a text field per line, other fields carried through) and .parquet (a
text column, other columns carried through), given as files, folders or globs. A *shard* is a whole text file or
a range of a Parquet file's row groups. Each shard becomes one part file, written under a temporary name and then
renamed, and recorded in the output's manifest; a rerun skips the shards already done, so a killed job resumes.

One function, ``tag_table`` (a table in, the same table with an ``entities`` column out), serves both runners:
``local`` (this process) and ``ray`` (``tagcorpus_ray``: Ray Data ``map_batches`` over an actor pool of ``TagBatch``,
which loads the model once per actor; Ray retries failed tasks and restarts dead actors). The backend is chosen by
the rule every command shares (``engines.resolve_backend``). The output contract is in docs/corpus.md.
"""
# size: ~510 lines because it is the whole tag-corpus output contract in one place, in sections: inputs and shards,
# the table function, the model fingerprint, part files and the manifest, then the run (the Ray runner is apart).
from __future__ import annotations

import glob
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from nerkit.engines import BACKEND_FILES, resolve_backend
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_bytes, check_json_text, check_text, replacing
from nerkit.modeldir import META_FILE, open_model_dir, probe_writable
from nerkit.spans import SPAN_FILE
from nerkit.tagcorpus_ray import INTERNAL_COLUMNS, import_ray, run_ray

SUFFIXES = (".txt", ".jsonl", ".parquet")
MANIFEST_FILE = "_nerkit_manifest.json"
MANIFEST_FORMAT = 1
OUTPUT_COLUMNS = ("source", "row", "id", "text", "entities", "model")
DEFAULT_ROWS_PER_SHARD = 100_000  # Parquet inputs: row groups are gathered into shards of about this many rows
DEFAULT_BATCH_ROWS = 1024  # texts per tag_table call; the Tagger batches them by tokens inside
MANIFEST_EVERY_S = 5.0  # the manifest is rewritten at most this often (and at the end); see _Manifest
_KILL_ONCE_ENV = "NERKIT_TEST_KILL_ONCE"  # tests only: a flag file; the first actor batch to find it removes it and dies


def entity_type():
    """The Arrow type of the ``entities`` column: list<struct<start, end, label, score, text>>."""
    import pyarrow as pa

    return pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string()),
                               ("score", pa.float32()), ("text", pa.string())]))


# ---------------------------------------------------------------- inputs and shards


@dataclass(frozen=True)
class Shard:
    """A unit of work and of output: a whole .txt/.jsonl file, or row groups ``[rg_start, rg_stop)`` of a .parquet."""

    source: str  # absolute path
    kind: str  # "txt", "jsonl" or "parquet"
    rg_start: int | None = None
    rg_stop: int | None = None

    @property
    def key(self) -> str:
        """A stable name for the shard (its source, plus the row-group range for Parquet)."""
        return self.source if self.rg_start is None else f"{self.source}#row-groups={self.rg_start}-{self.rg_stop}"

    @property
    def part_name(self) -> str:
        """The part file this shard is written to (stable across runs, so a rerun finds it)."""
        return f"part-{Path(self.source).stem[:40]}-{hashlib.sha256(self.key.encode()).hexdigest()[:12]}.parquet"


def find_inputs(inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[Path]:
    """Files named by ``inputs`` (files, folders searched recursively, or globs), in a stable order, no repeats."""
    found: dict[Path, None] = {}  # ordered, and fast membership for folders of many files
    skip = Path(exclude).resolve() if exclude is not None else None
    skipped: list[Path] = []
    for item in inputs:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            matches = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in SUFFIXES)
            if not matches:
                raise NerkitError(f"{item}: folder holds no {', '.join(SUFFIXES)} files")
        elif glob.has_magic(item):
            matches = sorted(Path(q) for q in glob.glob(item, recursive=True))
            matches = [q for q in matches if q.is_file() and q.suffix in SUFFIXES]
            if not matches:
                raise NerkitError(f"{item}: matches no {', '.join(SUFFIXES)} files")
        elif p.is_file():
            if p.suffix not in SUFFIXES:
                raise NerkitError(f"{item}: unsupported input type {p.suffix!r}; expected {', '.join(SUFFIXES)}")
            matches = [p]
        else:
            raise NerkitError(f"{item}: no such file, folder or matching glob")
        for q in matches:
            r = q.resolve()
            if skip is not None and (r == skip or skip in r.parents):
                skipped.append(q)
                continue  # never read our own output back as input
            found.setdefault(r)
    if not found and skipped:  # `tag-corpus MODEL a.txt --output a.txt` said "no input files" of an existing file
        raise NerkitError(f"{skipped[0]} is --output {exclude} or lies in it, and nerkit never reads its own output "
                          "back: give --output a new folder")
    if not found:
        raise NerkitError("no input files")
    return list(found)


def plan_shards(files: Sequence[str | os.PathLike], rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> list[Shard]:
    """Cut input files into shards: one per text file, row-group ranges of about ``rows_per_shard`` per Parquet."""
    shards = []
    for f in files:
        path = Path(f).resolve()
        check_text(str(path), path, None, "the file name")  # names part files and fills the source column
        kind = path.suffix[1:]
        if kind != "parquet":
            shards.append(Shard(str(path), kind))
            continue
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(path, None, f"not a readable Parquet file ({exc})") from None
        start, rows = 0, 0
        for g in range(meta.num_row_groups):
            rows += meta.row_group(g).num_rows
            if rows >= rows_per_shard:
                shards.append(Shard(str(path), kind, start, g + 1))
                start, rows = g + 1, 0
        if start < meta.num_row_groups or meta.num_row_groups == 0:
            shards.append(Shard(str(path), kind, start, meta.num_row_groups))
    return shards


def _row_id(source: str, row: int) -> str:
    return hashlib.sha256(f"{source}\0{row}".encode()).hexdigest()[:16]


def _text_error(value: Any, text_column: str) -> str:
    if value is None:
        return f'"{text_column}" is missing or null'
    return f'"{text_column}" must be a string, got {type(value).__name__}'


def _extra_columns(records: list[dict], names: list[str]) -> dict:
    """Arrow arrays for carried-through fields; a field whose values mix types is kept as JSON text."""
    import pyarrow as pa

    out = {}
    for name in names:
        values = [r.get(name) for r in records]
        try:
            out[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            out[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
                                 pa.string())
    return out


def _out_name(name: str) -> str:
    """Input fields whose names nerkit's output uses are carried through as ``input_<name>``."""
    return f"input_{name}" if name in OUTPUT_COLUMNS or name.startswith("__nerkit") else name


def read_shard(shard: Shard, text_column: str = "text"):
    """The shard's rows as an Arrow table: source, row, id, text, carried-through fields. Bad rows raise DataError."""
    import pyarrow as pa

    src, rows, ids, texts, records = shard.source, [], [], [], []
    if shard.kind == "parquet":
        return _read_parquet_shard(shard, text_column)
    try:
        raw = Path(src).read_bytes()
    except OSError as exc:
        raise DataError(src, None, f"cannot read: {exc.strerror or exc}") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line does not start another
    for i, b in enumerate(lines):
        try:
            line = b.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataError(src, i + 1, f"invalid UTF-8 bytes {b[e.start:e.end]!r} (files must be UTF-8)") from None
        if i == 0:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue  # blank lines hold no text; ``row`` keeps the line number, so nothing shifts
        if shard.kind == "txt":
            rows.append(i)
            texts.append(line)
            ids.append(_row_id(src, i))
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(src, i + 1, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        check_json_text(rec, src, i + 1, line)  # Arrow would fail on a lone surrogate with a traceback
        if not isinstance(rec, dict):
            raise DataError(src, i + 1, f"expected a JSON object, got {type(rec).__name__}")
        text = rec.get(text_column)
        if not isinstance(text, str):
            raise DataError(src, i + 1, _text_error(text, text_column))
        rows.append(i)
        texts.append(text)
        rid = rec.get("id")
        ids.append(_row_id(src, i) if rid is None else str(rid))
        records.append(rec)
    cols = {"source": pa.array([src] * len(rows), pa.string()), "row": pa.array(rows, pa.int64()),
            "id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())}
    names = list(dict.fromkeys(k for r in records for k in r if k not in (text_column, "id")))
    for name, arr in _extra_columns(records, names).items():
        cols[_out_name(name)] = arr
    return pa.table(cols)


def _read_parquet_shard(shard: Shard, text_column: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = shard.source
    f = pq.ParquetFile(src)
    first = sum(f.metadata.row_group(g).num_rows for g in range(shard.rg_start))
    t = f.read_row_groups(list(range(shard.rg_start, shard.rg_stop))) if shard.rg_stop > shard.rg_start \
        else f.schema_arrow.empty_table()
    if text_column not in t.column_names:
        raise DataError(src, None, f'no "{text_column}" column (columns: {", ".join(t.column_names)}); '
                                   "choose one with --text-column")
    text = t[text_column]
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise DataError(src, None, f'column "{text_column}" is {text.type}, expected strings')
    if text.null_count:
        bad = pc.index(pc.is_null(text), True).as_py()
        raise DataError(f"{src} (row {first + bad})", None, f'"{text_column}" is null')
    rows = pa.array(range(first, first + t.num_rows), pa.int64())
    if "id" in t.column_names and t["id"].null_count == 0:
        ids = pc.cast(t["id"], pa.string())
    else:
        ids = pa.array([_row_id(src, r) for r in range(first, first + t.num_rows)], pa.string())
    cols = {"source": pa.array([src] * t.num_rows, pa.string()), "row": rows, "id": ids,
            "text": pc.cast(text, pa.string())}
    for name in t.column_names:
        if name not in (text_column, "id"):
            cols[_out_name(name)] = t[name]
    return pa.table(cols)


# ---------------------------------------------------------------- the one table function


def tag_table(tagger, table, text_column: str = "text"):
    """``table`` with an ``entities`` column added: the entities of each row's text (code-point offsets)."""
    import pyarrow as pa

    texts = table[text_column].to_pylist()
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise NerkitError(f"row {i} of the batch: {_text_error(t, text_column)}")
    ents = tagger.predict(texts) if texts else []
    arr = pa.array([[{"start": e.start, "end": e.end, "label": e.label, "score": e.score, "text": e.text}
                     for e in row] for row in ents], entity_type())
    if "entities" in table.column_names:
        table = table.drop_columns(["entities"])
    return table.append_column("entities", arr)


class TagBatch:
    """A callable class for Ray Data ``map_batches`` (batch_format="pyarrow"): loads the model once per actor.

    ``threads`` is what each actor's ONNX Runtime or torch may use (the engines otherwise take every core they
    see); give the actor the same ``num_cpus`` so that actors x threads stays within the cores.
    """

    def __init__(self, model_dir: str | os.PathLike, backend: str = "auto", threads: int = 1,
                 text_column: str = "text"):
        from nerkit.predict import Tagger

        self.tagger = Tagger.load(model_dir, backend=backend, threads=threads)
        self.text_column = text_column

    def __call__(self, batch):
        flag = os.environ.get(_KILL_ONCE_ENV)
        if flag:
            try:
                os.remove(flag)
            except FileNotFoundError:
                pass
            else:
                os._exit(1)  # simulate a worker crash, once per flag file
        return tag_table(self.tagger, batch, self.text_column)


# ---------------------------------------------------------------- model fingerprint


def model_fingerprint(model_dir: str | os.PathLike, backend: str) -> str:
    """SHA-256 (first 16 hex digits) of the backend's weight file, config.json, nerkit.json and a span head, and the
    backend."""
    path = Path(model_dir)
    h = hashlib.sha256(backend.encode() + b"\0")
    # A span model's biaffine weight decides its entities too (older fingerprints, without the file, unchanged).
    span = (SPAN_FILE,) if (path / SPAN_FILE).is_file() else ()
    for name in (BACKEND_FILES[backend], "config.json", META_FILE, *span):
        f = path / name
        h.update(name.encode() + b"\0")
        if f.is_file():
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- output: part files and manifest


@dataclass
class CorpusResult:
    """What a tag-corpus run did."""

    output: str
    model: str  # the model fingerprint written in every row
    runner: str  # local or ray
    shards: int  # shards in the input
    skipped: int  # already done by an earlier run
    tagged: int  # tagged in this run
    rows: int  # rows written in this run
    entities: int  # entities written in this run
    words: int  # whitespace-separated words tagged in this run
    seconds: float


@dataclass
class _Manifest:
    """The output folder's record: the job's settings, and per part file its shard, input stamp and row count."""

    path: Path
    job: dict
    parts: dict = field(default_factory=dict)
    _written: float = 0.0

    def save(self, force: bool = False) -> None:
        # Rewriting the whole manifest after every shard is quadratic in the shard count; at most every few
        # seconds, a part renamed but not yet recorded is simply redone on resume.
        if not force and time.monotonic() - self._written < MANIFEST_EVERY_S:
            return
        data = {"format": MANIFEST_FORMAT, "job": self.job, "parts": self.parts}
        atomic_write_bytes(self.path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode())
        self._written = time.monotonic()


def _stamp(source: str) -> dict:
    st = os.stat(source)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _open_output(output: Path, job: dict) -> _Manifest:
    """Create or reopen the output folder; refuse a folder nerkit did not write, or one written by another job."""
    mpath = output / MANIFEST_FILE
    if output.exists() and not output.is_dir():
        raise NerkitError(f"--output {output}: exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not mpath.is_file():
        raise NerkitError(f"--output {output}: is a non-empty folder without a tag-corpus manifest; nerkit writes "
                          "only into a new or empty folder, or one it wrote (to resume)")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NerkitError(f"--output {output}: cannot create the folder ({exc.strerror or exc})") from None
    probe_writable(output, f"--output {output}")  # before the model loads and the first shard is tagged
    if not mpath.is_file():
        return _Manifest(mpath, job)
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
        old_job, parts = data["job"], data["parts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NerkitError(f"{mpath}: unreadable manifest ({exc})") from None
    for k in ("model", "text_column", "keep_text"):
        if old_job.get(k) != job.get(k):
            raise NerkitError(f"--output {output}: was written with {k}={old_job.get(k)!r}, this run has "
                              f"{job.get(k)!r}; use a new --output folder (parts of two jobs must not mix)")
    return _Manifest(mpath, job, parts)


def _finish_table(table, shard: Shard, fingerprint: str, keep_text: bool):
    """Rows in source order, internal columns dropped, the model fingerprint added."""
    import pyarrow as pa

    drop = [c for c in INTERNAL_COLUMNS if c in table.column_names]
    if not keep_text:
        drop.append("text")
    table = table.drop_columns(drop).sort_by("row")
    return table.append_column("model", pa.array([fingerprint] * table.num_rows, pa.string()))


def _write_part(output: Path, shard: Shard, table, fingerprint: str) -> None:
    import pyarrow.parquet as pq

    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"nerkit.model": fingerprint.encode(), b"nerkit.shard": shard.key.encode()})
    try:
        with replacing(output / shard.part_name) as tmp:
            pq.write_table(table, tmp)
    except OSError as exc:  # disk full, folder gone read-only: one message, not a traceback
        raise NerkitError(f"{output / shard.part_name}: cannot write ({exc.strerror or exc}); run again to resume") from None


def _drop_stale_parts(output: Path, manifest: _Manifest, shards: Sequence[Shard]) -> None:
    """Delete the parts an earlier run wrote for these inputs under other shard ranges (an edited Parquet file, or
    another --rows-per-shard): their rows would otherwise be in the output twice. Only manifest-listed parts go."""
    current = {s.part_name for s in shards}
    sources = {s.source for s in shards}
    for name, rec in list(manifest.parts.items()):
        if rec.get("source") in sources and name not in current:
            (output / name).unlink(missing_ok=True)
            del manifest.parts[name]
    manifest.save(force=True)


def _count_words(texts: Iterable[str]) -> int:
    return sum(len(t.split()) for t in texts)


# ---------------------------------------------------------------- the run


RUNNERS = ("local", "ray")


def tag_corpus(model_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
               runner: str = "local", backend: str = "auto", workers: int | None = None,
               threads: int | None = None, text_column: str = "text", keep_text: bool = True,
               rows_per_shard: int = DEFAULT_ROWS_PER_SHARD, batch_rows: int = DEFAULT_BATCH_ROWS,
               progress: bool = False, engine: str | None = None) -> CorpusResult:
    """Tag every text of ``inputs`` into Parquet part files in ``output``; shards done by an earlier run are skipped.
    ``runner``: local (this process) or ray; ``engine`` is its deprecated former name."""
    t0 = time.perf_counter()
    if engine is not None:
        warnings.warn("tag_corpus(engine=...) is now runner=...", DeprecationWarning, stacklevel=2)
        runner = engine
    if runner not in RUNNERS:
        raise NerkitError(f"unknown runner {runner!r}; expected local or ray")
    if runner == "ray":
        import_ray()  # fail before any work when Ray is missing
    output = Path(output)
    files = find_inputs(inputs, exclude=output)
    shards = plan_shards(files, rows_per_shard)
    model = open_model_dir(model_dir)
    backend = resolve_backend(model, backend)  # the rule predict and serve follow
    fingerprint = model_fingerprint(model_dir, backend)
    job = {"model": fingerprint, "model_dir": str(Path(model_dir).resolve()), "backend": backend,
           "text_column": text_column, "keep_text": keep_text}
    manifest = _open_output(output, job)
    pending = []
    for s in shards:
        rec = manifest.parts.get(s.part_name)
        if rec and rec.get("shard") == s.key and rec.get("stamp") == _stamp(s.source) \
                and (output / s.part_name).is_file():
            continue
        pending.append(s)
    _drop_stale_parts(output, manifest, shards)
    stats = {"rows": 0, "entities": 0, "words": 0}

    def done(shard: Shard, table) -> None:
        stats["words"] += _count_words(table["text"].to_pylist())
        table = _finish_table(table, shard, fingerprint, keep_text)
        _write_part(output, shard, table, fingerprint)
        n_ent = sum(len(e) for e in table["entities"].to_pylist())
        manifest.parts[shard.part_name] = {"shard": shard.key, "source": shard.source, "stamp": _stamp(shard.source),
                                           "rows": table.num_rows, "entities": n_ent}
        stats["rows"] += table.num_rows
        stats["entities"] += n_ent
        manifest.save()

    try:
        if pending and runner == "local":
            _run_local(model, backend, threads, pending, text_column, batch_rows, done, progress)
        elif pending:
            run_ray(model_dir, backend, pending, read=read_shard, actor=TagBatch, tag_empty=_tag_empty, done=done,
                    workers=workers, threads=threads, text_column=text_column, batch_rows=batch_rows,
                    progress=progress)
    finally:
        manifest.job.update({"shards": len(shards), "complete": all(
            (output / s.part_name).is_file() and s.part_name in manifest.parts for s in shards)})
        manifest.save(force=True)
    return CorpusResult(str(output), fingerprint, runner, len(shards), len(shards) - len(pending), len(pending),
                        stats["rows"], stats["entities"], stats["words"], round(time.perf_counter() - t0, 3))


def _tag_empty(table):
    """An empty shard's table with its (empty) entities column."""
    return tag_table(None, table)


def _run_local(model, backend, threads, pending, text_column, batch_rows, done, progress) -> None:
    import pyarrow as pa

    from nerkit.predict import Tagger

    tagger = Tagger.load(model, backend=backend, threads=threads)
    it = pending
    if progress:
        from tqdm import tqdm

        it = tqdm(pending, desc="tag-corpus", unit="shard")
    for shard in it:
        table = read_shard(shard, text_column)
        parts = [tag_table(tagger, table.slice(i, batch_rows)) for i in range(0, table.num_rows, batch_rows)]
        done(shard, pa.concat_tables(parts) if parts else tag_table(tagger, table))


def result_dict(result: CorpusResult) -> dict:
    """The result as a JSON-ready dict."""
    return asdict(result)
