"""Reading and writing NER data (CoNLL columns, JSON Lines), tokenization, span/tag conversion, statistics.

Everything read here comes out as IOB2-tagged ``Document``s; problems in the input are reported as
``DataError`` naming the file and line, or as ``DataWarning`` when nerkit can repair them.
"""
# size: every reader and writer of nerkit's own formats (CoNLL columns, layered columns, JSONL) with its checks and
# messages, and their statistics: one place where a file's lines become documents.
from __future__ import annotations

import json
import warnings
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from nerkit import files, words
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_text
from nerkit.scheme import LabelScheme, chunks, convert, detect_scheme, split_tag, validate
from nerkit.layers import inner_occurrences, nesting, spans_to_layers
from nerkit.types import Document, Sentence, Span

DOCSTART = "-DOCSTART-"
Offsets = list[tuple[int, int]]  # character range [start, end) of each word
SCHEME_ALIASES = {"IOBES": "BIOES", "BILOU": "BIOES", "BIO": "IOB2", "IOB": "IOB2"}


class DataWarning(UserWarning):
    """Input data had problems that nerkit repaired (invalid tag transitions, spans inside words)."""


@dataclass
class ConllReadReport:
    """What reading a CoNLL file found: the tag scheme, invalid transitions repaired, lines read."""

    scheme: LabelScheme
    violations: dict[str, int] = field(default_factory=dict)  # kind (e.g. "O -> I-PER") -> count
    first_lines: dict[str, int] = field(default_factory=dict)  # kind -> line of its first occurrence
    n_lines: int = 0


@dataclass
class JsonlReadReport:
    """What reading a JSONL file found: records read and spans whose edges fell inside words."""

    n_records: int = 0
    split_spans: int = 0
    first_split: str | None = None  # "file:line [start, end) LABEL" of the first such span
    duplicates: int = 0  # entities listed twice (same range and label): read once


def _scheme(scheme: LabelScheme | str | None) -> LabelScheme | None:
    if scheme is None or isinstance(scheme, LabelScheme):
        return scheme
    name = SCHEME_ALIASES.get(scheme.upper(), scheme.upper())
    if name not in LabelScheme.__members__:
        raise NerkitError(f"unknown tag scheme {scheme!r}; expected IOB1, IOB2 or BIOES")
    return LabelScheme(name)


# ---------------------------------------------------------------- CoNLL


def read_conll_with_report(path: str | Path, scheme: LabelScheme | str | None = None,
                           tag_columns: int = 1) -> tuple[list[Document], ConllReadReport]:
    """Read a CoNLL column file (token first, tag last) into IOB2 documents, with a report of what was found.

    ``tag_columns`` > 1 reads a layered file: the last N columns are tag layers, outermost first, the token the
    column before them (GENIA's ``.iob2``; GermEval-2014's ``index token outer inner`` with ``#`` comment lines)."""
    # One pass over the lines, then one scheme conversion: a straight sequence that reads best in one function.
    scheme = _scheme(scheme)
    name = Path(path).name
    docs: list[Document] = []
    sents: list[Sentence] = []  # all sentences in file order, tagged as in the file until converted below
    word_lines: list[list[int]] = []  # line of each word of each sentence, to place violations
    words: list[str] = []
    tags: list[str] = []
    inner: list[list[str]] = []  # the further tag columns of each word (layered files)
    lines: list[int] = []
    new_doc = True
    saw_docstart = False
    n_lines = 0

    def end_sentence() -> None:
        nonlocal words, tags, inner, lines, new_doc
        if words:
            if new_doc:  # created lazily, so -DOCSTART- blocks without sentences leave no empty document
                docs.append(Document(f"{name}#{len(docs) + 1}"))
                new_doc = False
            layers = [list(col) for col in zip(*inner)] if tag_columns > 1 else []
            sents.append(Sentence(words, tags, doc_id=docs[-1].id, source=f"{path}:{lines[0]}", layers=layers))
            docs[-1].sentences.append(sents[-1])
            word_lines.append(lines)
        words, tags, inner, lines = [], [], [], []

    for n, line in files.lines(path):
        n_lines = n
        # Tab-separated files may have spaces inside tokens; otherwise ASCII spaces separate columns. Only ASCII
        # space and tab ever do: a no-break space (U+00A0) or other Unicode space is part of the token.
        parts = line.split("\t") if "\t" in line else line.split(" ")
        cols = [c for c in (c.strip(" ") for c in parts) if c]
        if not cols:
            end_sentence()
        elif cols[0] == DOCSTART:
            end_sentence()
            new_doc = saw_docstart = True
        elif tag_columns > 1 and cols[0] == "#" and (len(cols) < 1 + tag_columns or not _is_tag(cols[-1])):
            continue  # a GermEval-2014 comment line ("#\tsource [date]")
        elif len(cols) < 1 + tag_columns:
            if tag_columns == 1:
                raise DataError(path, n, f"line has 1 column ({cols[0]!r}); expected token and tag columns")
            raise DataError(path, n, f"line has {len(cols)} columns ({' '.join(cols)!r}); expected a token and "
                            f"{tag_columns} tag columns")
        else:
            for tag in cols[-tag_columns:]:
                if not _is_tag(tag):
                    problem = (f"tag {tag!r} is not O or B-/I-/E-/S- followed by a type without spaces (e.g. B-PER); "
                               "columns are separated by tabs, or by ASCII spaces when the line has no tab")
                    raise DataError(path, n, problem)
            words.append(cols[0] if tag_columns == 1 else cols[-tag_columns - 1])
            tags.append(cols[-tag_columns])
            inner.append(cols[len(cols) - tag_columns + 1:])
            lines.append(n)
    end_sentence()
    if not sents:
        raise DataError(path, None, "no sentences found (the file is empty or has only blank and -DOCSTART- lines)")
    if not saw_docstart:
        # Without -DOCSTART- markers nothing says which sentences belong together (WNUT-17 is unrelated posts),
        # so each sentence is its own document and never borrows context from its neighbours.
        docs = [Document(f"{name}#{i + 1}", [s]) for i, s in enumerate(sents)]
        for d in docs:
            d.sentences[0].doc_id = d.id

    return docs, _convert_scheme(path, sents, word_lines, scheme, n_lines)


def _convert_scheme(path, sents: list[Sentence], word_lines: list[list[int]], scheme: LabelScheme | None,
                    n_lines: int) -> ConllReadReport:
    """Detect (unless given) and validate the tag scheme of every tag layer read, warn about invalid transitions
    with counts and first lines, convert every layer to IOB2 in place (repairing them), check layered columns nest."""
    sequences = [tags for s in sents for tags in s.all_tags()]
    line_of = [word_lines[i] for i, s in enumerate(sents) for _ in s.all_tags()]
    scheme = scheme or detect_scheme(sequences)
    found = validate(sequences, scheme)
    report = ConllReadReport(scheme, dict(found.counts), n_lines=n_lines)
    for kind, (si, pos) in found.first.items():
        report.first_lines[kind] = line_of[si][min(pos, len(line_of[si]) - 1)]  # pos == len: at sentence end
    if found:
        detail = "; ".join(f"'{k}' x{c} (first at line {report.first_lines[k]})" for k, c in found.counts.most_common())
        warnings.warn(
            f"{path}: {found.total()} invalid {scheme.value} tag transitions, "
            f"repaired by reading entities leniently: {detail}",
            DataWarning,
            stacklevel=3,
        )
    for s, lines_of_s in zip(sents, word_lines):
        s.tags = convert(s.tags, scheme)  # through chunks(), which is lenient: this also repairs the violations
        if s.layers:
            s.layers = _nested_columns(path, lines_of_s, [s.tags, *(convert(x, scheme) for x in s.layers)])
            s.tags = s.layers.pop(0)
    return report


def _is_tag(tag: str) -> bool:
    try:
        split_tag(tag)
    except ValueError:
        return False
    return not any(ch.isspace() for ch in tag)  # e.g. "B-NP B-ORG" from a tab/space mix


def _nested_columns(path, lines: Sequence[int], columns: Sequence[Sequence[str]]) -> list[list[str]]:
    """The tag layers of one sentence of a layered file (outermost column first), checked to nest: every entity of
    a column lies inside one of the column before it, else ``DataError`` at its first word's line."""
    levels = [[Span(s, e, label) for label, s, e in chunks(col)] for col in columns]
    for k in range(1, len(levels)):
        for sp in levels[k]:
            if not any(o.start <= sp.start and sp.end <= o.end for o in levels[k - 1]):
                raise DataError(path, lines[sp.start], f"tag column {k + 1} has {sp.label} over words {sp.start + 1}-"
                                f"{sp.end} that lie inside no entity of column {k}: the columns of a layered file "
                                "must nest, outermost first")
    return spans_to_layers([(i, i + 1) for i in range(len(lines))], [sp for level in levels for sp in level])


def read_conll(path: str | Path, scheme: LabelScheme | str | None = None, tag_columns: int = 1) -> list[Document]:
    """Read a CoNLL column file into IOB2 documents (scheme auto-detected when None; ``tag_columns`` > 1: layered)."""
    return read_conll_with_report(path, scheme, tag_columns)[0]


def write_conll(docs: Iterable[Document], path: str | Path, columns: int | None = None) -> None:
    """Write documents as two-column CoNLL (``word tag``), each document opened by a ``-DOCSTART- O`` line; nested
    entities as further tag columns, one per layer, outermost first (read back with ``tag_columns``): ``columns``
    of them (at least as many as the deepest sentence needs), else as many as that."""
    docs = list(docs)
    width = max(columns or 1, 1 + max((len(s.layers) for d in docs for s in d.sentences), default=0))

    def out_lines() -> Iterator[str]:
        for doc in docs:
            yield f"{DOCSTART} O\n\n"
            for s in doc.sentences:
                if not s.words:
                    continue
                if s.tags is None:
                    raise ValueError(f"{s.source or doc.id}: cannot write an unlabelled sentence as CoNLL")
                cols = s.all_tags() + [["O"] * len(s.words)] * (width - 1 - len(s.layers))
                yield "".join(f"{w} {' '.join(t)}\n" for w, *t in zip(s.words, *cols)) + "\n"

    atomic_write_text(path, "".join(out_lines()))


# ---------------------------------------------------------------- tokenization and spans


def tokenize(text: str) -> tuple[list[str], Offsets]:
    """Split text into words with exact offsets (see ``nerkit.words.tokenize``: one splitter for data and models)."""
    return words.tokenize(text)


def spans_to_tags(offsets: Offsets, spans: Iterable[Span]) -> list[str]:
    """IOB2 tags for words at ``offsets``: a word belongs to the span it overlaps. Raises ValueError on a shared word."""
    tags = ["O"] * len(offsets)
    owner: list[Span | None] = [None] * len(offsets)
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    for span in sorted(spans):
        # Words are sorted and disjoint, so the words a span overlaps form one run, found by bisection.
        lo, hi = bisect_right(ends, span.start), bisect_left(starts, span.end)
        for i in range(lo, hi):
            if owner[i] is not None:
                raise ValueError(f"spans {owner[i]} and {span} both cover word {i} at {offsets[i]}")
            owner[i] = span
            tags[i] = f"{'B' if i == lo else 'I'}-{span.label}"
    return tags


def tag_spans(tags: Sequence[str], offsets: Offsets) -> list[Span]:
    """The entities of one tag layer as character spans."""
    return [Span(offsets[s][0], offsets[e - 1][1], label) for label, s, e in chunks(tags)]


def sentence_spans(sentence: Sentence) -> list[Span]:
    """The sentence's entities (every layer) as sorted character spans of its text (``Sentence.surface()``)."""
    if sentence.tags is None:
        return []
    _, offsets = sentence.surface()
    return sorted({sp for tags in sentence.all_tags() for sp in tag_spans(tags, offsets)})


def split_words(words: list[str], offsets: Offsets, cuts: Iterable[int]) -> tuple[list[str], Offsets, set[int]]:
    """Split words at the character positions ``cuts`` that fall strictly inside them; also return those positions."""
    starts = [s for s, _ in offsets]
    inner: dict[int, set[int]] = {}
    for c in cuts:
        i = bisect_right(starts, c) - 1
        if i >= 0 and offsets[i][0] < c < offsets[i][1]:
            inner.setdefault(i, set()).add(c)
    if not inner:
        return words, offsets, set()
    out_w, out_o = [], []
    for i, (w, (s, e)) in enumerate(zip(words, offsets)):
        edges = [s, *sorted(inner.get(i, ())), e]
        for a, b in zip(edges, edges[1:]):
            out_w.append(w[a - s : b - s])
            out_o.append((a, b))
    return out_w, out_o, {c for cs in inner.values() for c in cs}


# ---------------------------------------------------------------- JSON Lines


def _entities(path: str | Path, n: int, text: str, items: object) -> list[Span]:
    """Check a record's ``entities`` list and return it as sorted spans (they may nest or overlap)."""
    if not isinstance(items, list):
        raise DataError(path, n, f'"entities" must be a list, got {type(items).__name__}')
    spans = []
    for k, ent in enumerate(items):
        what = f"entity {k}"
        if not isinstance(ent, dict):
            raise DataError(path, n, f"{what} must be an object with start, end and label, got {type(ent).__name__}")
        missing = [key for key in ("start", "end", "label") if key not in ent]
        if missing:
            raise DataError(path, n, f"{what} is missing {', '.join(missing)}")
        start, end, label = ent["start"], ent["end"], ent["label"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
            raise DataError(path, n, f"{what}: start and end must be integers, got {start!r} and {end!r}")
        if not isinstance(label, str) or not label or any(ch.isspace() for ch in label):
            raise DataError(path, n, f"{what}: label must be a non-empty string without spaces, got {label!r}")
        if not 0 <= start < end <= len(text):
            raise DataError(path, n, f"{what}: range [{start}, {end}) is empty or outside the text (length {len(text)})")
        if not text[start:end].strip():
            raise DataError(path, n, f"{what}: range [{start}, {end}) covers only whitespace")
        spans.append(Span(start, end, label))
    spans.sort()
    return spans


def read_jsonl_with_report(path: str | Path) -> tuple[list[Document], JsonlReadReport]:
    """Read JSON Lines records ``{"text", "entities": [{start, end, label}], "id"?}``, one document each."""
    name = Path(path).name
    docs: list[Document] = []
    report = JsonlReadReport()
    for n, line in files.lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            hint = " (one JSON object per line, not a JSON array)" if n == 1 and line.lstrip().startswith("[") else ""
            raise DataError(path, n, f"invalid JSON: {e.msg} at column {e.colno}{hint}") from None
        files.check_json_text(rec, path, n, line)
        if not isinstance(rec, dict):
            hint = " (one JSON object per line, not a JSON array)" if isinstance(rec, list) else ""
            raise DataError(path, n, f"expected a JSON object, got {type(rec).__name__}{hint}")
        if "text" not in rec:
            raise DataError(path, n, 'record has no "text"')
        text = rec["text"]
        if not isinstance(text, str):
            raise DataError(path, n, f'"text" must be a string, got {type(text).__name__}')
        words, offsets = tokenize(text)
        if not words:
            raise DataError(path, n, '"text" has no words')
        other = next((k for k in ("spans", "ents", "labels", "annotations") if k in rec), None)
        if "entities" not in rec and other:  # silently reading such a record as unlabelled would lose its entities
            raise DataError(path, n, f'entities must be given as "entities" (found "{other}")')
        # A missing "entities" key means unlabelled text (tags None); an empty list means "labelled, no entities".
        tags, layers = None, []
        if rec.get("entities") is not None:
            spans = _entities(path, n, text, rec["entities"])
            # Edges inside a word would make the entity unrepresentable in word tags; split the word there instead.
            for sp in spans:
                words, offsets, cut = split_words(words, offsets, (sp.start, sp.end))
                if cut:
                    report.split_spans += 1
                    if report.first_split is None:
                        report.first_split = f"{path}:{n} [{sp.start}, {sp.end}) {sp.label} {text[sp.start:sp.end]!r}"
            if len(set(spans)) < len(spans):
                report.duplicates += len(spans) - len(set(spans))
            tags, *layers = spans_to_layers(offsets, spans)
        report.n_records += 1
        doc_id = str(rec["id"]) if rec.get("id") is not None else f"{name}#{report.n_records}"
        sentence = Sentence(words, tags, doc_id=doc_id, source=f"{path}:{n}", text=text, offsets=offsets, layers=layers)
        docs.append(Document(doc_id, [sentence]))
    if not docs:
        raise DataError(path, None, "no records found (the file is empty)")
    if report.split_spans:
        warnings.warn(
            f"{path}: {report.split_spans} spans did not fall on word boundaries; words were split at span edges "
            f"(first: {report.first_split})",
            DataWarning,
            stacklevel=2,
        )
    if report.duplicates:
        warnings.warn(f"{path}: {report.duplicates} entities were listed twice (same range and label); each read once",
                      DataWarning, stacklevel=2)
    return docs, report


def read_jsonl(path: str | Path) -> list[Document]:
    """Read a JSON Lines file of ``{"text", "entities"}`` records into one single-sentence document per record."""
    return read_jsonl_with_report(path)[0]


def write_jsonl(docs: Iterable[Document], path: str | Path) -> None:
    """Write one JSON record per sentence with character-offset entities (words joined by spaces if no text)."""

    def out_lines() -> Iterator[str]:
        for doc in docs:
            for k, s in enumerate(doc.sentences, 1):
                text, _ = s.surface()
                rec: dict = {"id": doc.id if len(doc.sentences) == 1 else f"{doc.id}/{k}", "text": text}
                if s.tags is not None:
                    rec["entities"] = [{"start": sp.start, "end": sp.end, "label": sp.label} for sp in sentence_spans(s)]
                yield json.dumps(rec, ensure_ascii=False) + "\n"

    atomic_write_text(path, "".join(out_lines()))


def load(path: str | Path, scheme: LabelScheme | str | None = None) -> list[Document]:
    """Read ``.jsonl``/``.json`` files as JSON Lines, anything else as CoNLL (``formats.load`` reads every format)."""
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        return read_jsonl(path)
    return read_conll(path, scheme)


def check_labelled(docs: Iterable[Document], role: str) -> None:
    """Raise ``DataError`` at the first sentence without tags: ``role`` data (dev, test, evaluation) must be labelled."""
    for doc in docs:
        for s in doc.sentences:
            if s.tags is None:
                raise DataError(s.source or doc.id, None, f"unlabelled text, but {role} data must be labelled "
                                '(give each record an "entities" list; an empty list means no entities)')


# ---------------------------------------------------------------- statistics


def stats(docs: list[Document]) -> dict:
    """Counts of documents, sentences, tokens and entities (per type), O share, the longest sentence, and for
    nested data the nesting depth, inner entities per type and crossing pairs."""
    per_type: Counter = Counter()
    inner: Counter = Counter()
    n_sent = n_tok = n_labelled = n_o = crossing = max_depth = 0
    longest, where = 0, ""
    for doc in docs:
        for s in doc.sentences:
            n_sent += 1
            n_tok += len(s)
            if len(s) > longest:
                longest, where = len(s), s.source
            if s.tags is not None:
                n_labelled += len(s)
                n_o += sum(all(tags[i] == "O" for tags in s.all_tags()) for i in range(len(s)))
                spans = sentence_spans(s)
                per_type.update(sp.label for sp in spans)
                depths, c = nesting(spans)
                crossing += c
                inner.update(sp.label for sp, d in zip(spans, depths) if d)
                max_depth = max([max_depth, *(d + 1 for d in depths)])
    out = {
        "documents": len(docs),
        "sentences": n_sent,
        "tokens": n_tok,
        "entities": sum(per_type.values()),
        "entities_per_type": dict(sorted(per_type.items(), key=lambda kv: (-kv[1], kv[0]))),
        "o_share": n_o / n_labelled if n_labelled else None,  # over labelled tokens only
        "longest_sentence": longest,
        "longest_source": where,
    }
    if inner or crossing:
        out["nesting_depth"] = max_depth  # 1: flat; 2: entities inside entities; ...
        out["inner_entities"] = sum(inner.values())
        out["inner_per_type"] = dict(sorted(inner.items(), key=lambda kv: (-kv[1], kv[0])))
        out["crossing_pairs"] = crossing
        mixed = inner_consistency(docs)
        out["inner_left_out"] = sum(n for _, _, n in mixed)  # where such a text lies inside an entity unannotated
        out["inner_inconsistent"] = [list(t) for t in mixed[:5]]
    return out


def inner_consistency(docs: Iterable[Document]) -> list[tuple[str, int, int]]:
    """Texts annotated as an entity inside another entity somewhere in ``docs`` that, where they lie inside an entity
    elsewhere, are left unannotated there too: (words joined by spaces, times annotated inside an entity, times
    not), the most frequent first. A model learns such a text as inner only as often as it was annotated: on
    genia-small's training split "NF-kappa B" was annotated 46 times inside an entity and left out 34."""
    sents = [s for d in docs for s in d.sentences if s.tags is not None]
    found = inner_occurrences((s.words, {(a, b) for layer in s.all_tags() for _, a, b in chunks(layer)})
                              for s in sents)
    mixed = [(" ".join(w), len(yes), len(no)) for w, (yes, no) in found.items() if yes and no]
    return sorted(mixed, key=lambda t: (-(t[1] + t[2]), t[0]))


def format_stats(d: dict) -> str:
    """A readable two-column table of ``stats()`` output."""
    rows = [(k, f"{d[k]:,}", "") for k in ("documents", "sentences", "tokens", "entities")]
    rows += [(f"  {label}", f"{c:,}", "") for label, c in d["entities_per_type"].items()]
    if "nesting_depth" in d:
        rows.append(("inner entities", f"{d['inner_entities']:,}", " (inside another entity)"))
        rows += [(f"  {label}", f"{c:,}", "") for label, c in d["inner_per_type"].items()]
        rows.append(("nesting depth", f"{d['nesting_depth']:,}", ""))
        rows.append(("crossing pairs", f"{d['crossing_pairs']:,}", " (partly overlapping)"))
        if d.get("inner_left_out"):
            eg = ", ".join(f"'{t}' {y} of {y + n}" for t, y, n in d["inner_inconsistent"][:3])
            rows.append(("inner left unannotated", f"{d['inner_left_out']:,}",
                         f" (inside an entity, text annotated as an inner entity elsewhere: {eg} times)"))
    rows.append(("O share", "n/a" if d["o_share"] is None else f"{d['o_share']:.1%}", ""))
    where = f" ({d['longest_source']})" if d["longest_source"] else ""
    rows.append(("longest sentence", f"{d['longest_sentence']:,}", f" words{where}"))
    kw, vw = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{k:<{kw}}  {v:>{vw}}{note}" for k, v, note in rows)
