"""Hugging Face datasets: word columns (``tokens`` + ``ner_tags``, as in ``load_dataset("conll2003")``) in and out.

Reads a dataset saved with ``save_to_disk`` (one split), Parquet, Arrow or JSON Lines files with those columns, or
a hub id ``hf:NAME[:CONFIG]:SPLIT``; tags are integer ids named by the ``ClassLabel`` feature, or strings.
Writes a dataset with ``ClassLabel`` features that ``datasets.load_from_disk`` reads. All the work goes through
the ``datasets`` library (imported only when one of these functions runs: it takes about a second to import).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from nerkit.formats.documents import from_documents, to_documents
from nerkit.formats.records import ChangeLog, Record, write_scheme
from nerkit.errors import DataError, NerkitError
from nerkit.files import replacing
from nerkit.scheme import LabelScheme, chunks, convert as convert_tags, detect_scheme, split_tag, validate
from nerkit.types import Document, Sentence

HUB_PREFIX = "hf:"
TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "ner", "labels")
SUFFIXES = (".parquet", ".arrow")
META = "hf"  # Record.meta key: what the writer needs to give back the dataset it came from


@dataclass
class HfInfo:
    """What reading a dataset found: its columns, the tag names and scheme, and the other columns' features."""

    token_column: str
    tag_column: str
    names: list[str] | None  # ClassLabel names of the tag ids (None: string tags)
    scheme: LabelScheme
    features: dict = field(default_factory=dict)  # Features.to_dict() of the whole dataset
    repaired: int = 0  # invalid tag transitions read leniently


def is_dataset_path(path: str | os.PathLike) -> bool:
    """True for a hub id, a ``save_to_disk`` directory, or a Parquet/Arrow file (JSON Lines is told by content)."""
    s = str(path)
    if s.startswith(HUB_PREFIX):
        return True
    p = Path(path)
    if p.is_dir():
        return any((p / f).is_file() for f in ("state.json", "dataset_info.json", "dataset_dict.json"))
    return p.suffix.lower() in SUFFIXES


@contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars from ``datasets`` while nerkit reads or writes (restored afterwards)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def _load_hub(spec: str):
    import datasets

    parts = spec[len(HUB_PREFIX):].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise NerkitError(f"{spec}: a hub dataset is hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT (e.g. hf:conll2003:train)")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        return datasets.load_dataset(name, config, split=split)
    except ConnectionError as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else f"no connection: {e}"
        raise DataError(spec, None, f"the Hugging Face Hub is unreachable ({why}) and the dataset is not in the "
                        "local cache; where you are online, save it with Dataset.save_to_disk and give that directory") from None
    except (FileNotFoundError, ValueError) as e:  # unknown dataset, config or split
        raise DataError(spec, None, f"cannot load from the hub: {e}") from None


def load(path: str | os.PathLike):
    """The ``datasets.Dataset`` at ``path`` (hub id, saved directory, Parquet, Arrow or JSON Lines)."""
    import datasets

    if str(path).startswith(HUB_PREFIX):
        return _load_hub(str(path))
    p = Path(path)
    if not p.exists():
        raise DataError(p, None, "no such file or directory")
    with _quiet():
        if p.is_dir():
            if (p / "dataset_dict.json").is_file():
                splits = sorted(d.name for d in p.iterdir() if (d / "state.json").is_file())
                raise DataError(p, None, f"holds the splits {', '.join(splits)}; give one of them, e.g. {p / splits[0]}"
                                if splits else "holds a DatasetDict without splits")
            try:
                return datasets.load_from_disk(str(p))
            except (FileNotFoundError, ValueError) as e:
                raise DataError(p, None, f"is not a dataset saved with save_to_disk: {e}") from None
        suffix = p.suffix.lower()
        try:
            if suffix == ".arrow":
                return datasets.Dataset.from_file(str(p), in_memory=True)
            # The builders behind from_parquet/from_json write a cache; a private one is removed afterwards.
            with tempfile.TemporaryDirectory(prefix="nerkit-hf-") as cache:
                if suffix == ".parquet":
                    return datasets.Dataset.from_parquet(str(p), cache_dir=cache, keep_in_memory=True)
                return datasets.Dataset.from_json(str(p), cache_dir=cache, keep_in_memory=True)
        except DataError:
            raise
        except Exception as e:  # pyarrow and datasets raise many kinds for a damaged or foreign file
            raise DataError(p, None, f"cannot read as a {suffix.lstrip('.') or 'JSON Lines'} dataset: {e}") from None


def _tag_names(feature) -> list[str] | None:
    """ClassLabel names of a sequence-of-ids feature, None for a sequence of strings; raises ValueError otherwise."""
    import datasets

    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    if isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string"):
        return None
    if isinstance(inner, datasets.Value) and inner.dtype.startswith(("int", "uint")):
        raise ValueError("holds integer tag ids but no ClassLabel names (cast the column to "
                         "Sequence(ClassLabel(names=[...])), or store the tags as strings)")
    raise ValueError(f"must be a sequence of ClassLabel ids or of strings, got {feature}")


def _column(ds, wanted: Sequence[str], what: str, where: str) -> str:
    col = next((c for c in wanted if c in ds.column_names), None)
    if col is None:
        raise DataError(where, None, f"has columns {', '.join(ds.column_names)}; expected a {what} column "
                        f"({' or '.join(wanted)})")
    return col


def read_documents(path: str | os.PathLike) -> tuple[list[Document], HfInfo]:
    """One single-sentence IOB2 document per row (document id from an ``id`` column when there is one)."""
    return _read(path)[:2]


def _read(path: str | os.PathLike):
    ds = load(path)
    where = str(path)
    tok_col = _column(ds, TOKEN_COLUMNS, "word", where)
    tag_col = _column(ds, TAG_COLUMNS, "tag", where)
    try:
        names = _tag_names(ds.features[tag_col])
    except ValueError as e:
        raise DataError(where, None, f"column {tag_col!r} {e}") from None
    if len(ds) == 0:
        raise DataError(where, None, "the dataset has no rows")
    ids = ds["id"] if "id" in ds.column_names else None
    rows_tokens, rows_tags = ds[tok_col], ds[tag_col]
    sequences: list[list[str]] = []
    docs: list[Document] = []
    for i, (words, tags) in enumerate(zip(rows_tokens, rows_tags)):
        at = f"{where} row {i}"
        if len(words) != len(tags):
            raise DataError(at, None, f"{len(words)} words but {len(tags)} tags")
        for k, w in enumerate(words):
            if not isinstance(w, str) or not w or any(c.isspace() for c in w):
                raise DataError(at, None, f"word {k} ({w!r}) is empty or contains whitespace")
        if names is not None:
            bad = next((t for t in tags if not 0 <= t < len(names)), None)
            if bad is not None:
                raise DataError(at, None, f"tag id {bad} is not one of the {len(names)} ClassLabel names")
            tags = [names[t] for t in tags]
        for t in tags:
            try:
                split_tag(t)
            except ValueError:
                raise DataError(at, None, f"tag {t!r} is not O or B-/I-/E-/S- followed by a type (e.g. B-PER)") from None
        sequences.append(list(tags))
        doc_id = str(ids[i]) if ids is not None and ids[i] is not None else f"{Path(where).name}#{i + 1}"
        docs.append(Document(doc_id, [Sentence(list(words), None, doc_id, at)]))
    scheme = detect_scheme(sequences)
    found = validate(sequences, scheme)
    if found:
        detail = "; ".join(f"'{k}' x{c}" for k, c in found.counts.most_common())
        from nerkit.data import DataWarning

        warnings.warn(f"{where}: {found.total()} invalid {scheme.value} tag transitions, repaired by reading "
                      f"entities leniently: {detail}", DataWarning, stacklevel=2)
    for doc, tags in zip(docs, sequences):
        doc.sentences[0].tags = convert_tags(tags, scheme)
    info = HfInfo(tok_col, tag_col, names, scheme, ds.features.to_dict(), found.total() if found else 0)
    return docs, info, ds


def tag_names(tags: Sequence[str], keep: Sequence[str] | None = None) -> list[str]:
    """ClassLabel names: ``keep`` when it holds every tag, else "O" then B-/I- by type (the classic recipe's order)."""
    used = set(tags) | {"O"}
    if keep is not None and used <= set(keep):
        return list(keep)
    return sorted(used, key=lambda t: (t != "O", t[2:], t))


def write_documents(docs: Sequence[Document], path: str | os.PathLike, names: Sequence[str] | None = None,
                    extra: dict[str, list] | None = None, extra_features: dict | None = None) -> None:
    """Write IOB2 documents as a dataset (``id``, ``tokens``, ``ner_tags`` with ClassLabel names), one row per
    sentence: a directory (``save_to_disk``, written whole or not at all) or a ``.parquet`` file."""
    import datasets

    rows_id, rows_tokens, rows_tags = [], [], []
    for doc in docs:
        for k, s in enumerate(doc.sentences, 1):
            if not s.words:
                continue
            if s.tags is None:
                raise NerkitError(f"{s.source or doc.id}: cannot write an unlabelled sentence as a tagged dataset")
            rows_id.append(doc.id if len(doc.sentences) == 1 else f"{doc.id}/{k}")
            rows_tokens.append(list(s.words))
            rows_tags.append(list(s.tags))
    names = tag_names([t for tags in rows_tags for t in tags], names)
    index = {t: i for i, t in enumerate(names)}
    columns = {"id": rows_id, "tokens": rows_tokens, "ner_tags": [[index[t] for t in tags] for tags in rows_tags]}
    features = {"id": datasets.Value("string"), "tokens": datasets.List(datasets.Value("string")),
                "ner_tags": datasets.List(datasets.ClassLabel(names=names))}
    if extra_features:  # the source dataset's own features (id type, other columns, column order) when known
        source = datasets.Features.from_dict(extra_features)
        for name, feat in source.items():
            if name in ("tokens", "ner_tags"):
                continue
            if name == "id" or (extra and name in extra):
                features[name] = feat
                if name != "id":
                    columns[name] = extra[name]
        if source.get("id") is not None and getattr(source["id"], "dtype", "string") != "string":
            columns["id"] = [_cast_id(v) for v in rows_id]
        if "id" not in source:  # the source had no id column: none is added
            del features["id"], columns["id"]
        order = [c for c in source if c in features] + [c for c in features if c not in source]
        features = {c: features[c] for c in order}
        columns = {c: columns[c] for c in order}
    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    out = Path(path)
    with _quiet():
        if out.suffix.lower() == ".parquet":
            with replacing(out) as tmp:
                ds.to_parquet(str(tmp))
            return
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise NerkitError(f"{out}: already exists; give a new or empty directory for the dataset")
        with replacing(out) as tmp:
            ds.save_to_disk(str(tmp))
            if out.exists():
                out.rmdir()  # empty, checked above


def _cast_id(v: str):
    try:
        return int(v)
    except ValueError:
        return v


# ---------------------------------------------------------------- records (convert, agree, ...)


def read(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """Records of a dataset: words joined by spaces, with the words kept (``meta["words"]``) for an exact way back."""
    docs, info, ds = _read(path)
    records = from_documents(docs)
    for _ in range(info.repaired):
        log.add("tags-repaired", str(path), "invalid tag transition")
    # Columns other than id, words and tags (e.g. pos_tags), kept to write the same dataset back.
    ds_extra = {c: ds[c] for c in info.features if c not in ("id", info.token_column, info.tag_column)}
    for i, (r, d) in enumerate(zip(records, docs)):
        s = d.sentences[0]
        r.meta[META] = {"names": info.names, "features": info.features,
                        "extra": {c: v[i] for c, v in ds_extra.items()}, "n_words": len(s.words)}
        r.meta["scheme"] = info.scheme.value  # written back in it
        log.records_in += 1
        log.spans_in += len(r.spans)
    return records


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog, misaligned: str = "split") -> None:
    """A dataset with ClassLabel tags, one row per sentence; a dataset read by ``read`` comes back unchanged."""
    docs = to_documents(records, log, misaligned=misaligned)
    metas = [r.meta.get(META) for r in records]
    names = extra_features = extra = None
    same = bool(metas) and all(m is not None for m in metas) and all(m["features"] == metas[0]["features"] for m in metas)
    # A dataset written back keeps its tag scheme; anything else is written in IOB2, what the classic recipe reads.
    scheme = LabelScheme(write_scheme(records, None if same else "IOB2", log))
    if same:
        names, extra_features = metas[0]["names"], metas[0]["features"]
        sents = [s for d in docs for s in d.sentences]
        # Other columns are per row (and often per word): kept only when every row came back with its own words.
        if len(sents) == len(records) and all(len(s.words) == m["n_words"] for s, m in zip(sents, metas)):
            extra = {c: [m["extra"][c] for m in metas] for c in metas[0]["extra"]}
        else:
            extra = {}
    out = docs if scheme is LabelScheme.IOB2 else [
        Document(d.id, [Sentence(s.words, convert_tags(s.tags, LabelScheme.IOB2, scheme), s.doc_id, s.source, s.text,
                                 s.offsets) for s in d.sentences]) for d in docs]
    write_documents(out, path, names, extra, extra_features)
    written = [s for d in docs for s in d.sentences if s.words]
    log.records_out += len(written)
    log.spans_out += sum(len(chunks(s.tags)) for s in written)
