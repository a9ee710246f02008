"""How consistently a nested data set annotates a text inside another entity, and what a decoding that keeps one
abstract's readings consistent would buy (issue 23: inner-entity recall). No training; one network run per file.

    python bench/nested_consistency.py MODEL_DIR DATA_DIR   # DATA_DIR holds train/valid/test.jsonl with "doc" keys

Part 1, the annotation alone: where an outermost gold entity's text (type T) occurs again inside another gold entity
of the same document (the records sharing a ``"doc"``: an abstract), how often that occurrence is annotated as an
inner entity of T (the precision a rule "annotate every such occurrence" would have against the file), and how
many of the file's inner entities such occurrences are (the rule's recall).

Part 2, the model: the saved decoder's entities of each sentence, then, within each document, every text the model
found as an entity of type T added as an inner entity of T where it occurs inside another entity the model found,
if the span head gives that exact span and type at least a floor probability. Scored on words, per record: exact
``(type, first word, last word)`` sets (``nerkit.evaluation.score_sets``: nerkit's score wherever no span edge
splits a word, as in GENIA), with outermost / inner recall.
"""
from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

FLOORS = (0.05, 0.01, 0.001, 0.0)


def _records(path: Path) -> list[tuple[str, list[tuple[int, int, str]], str | None]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append((rec["text"], [(e["start"], e["end"], e["label"]) for e in rec.get("entities") or []],
                        rec.get("doc")))
    return out


def _inside(a: int, b: int, c: int, d: int) -> bool:
    return c <= a and b <= d and (a, b) != (c, d)


def annotation_consistency(path: Path) -> str:
    """Part 1 for one file: annotated / occurrences of outermost texts inside other entities of their document."""
    recs = _records(path)
    outer = defaultdict(set)  # doc -> {(text, type)} of outermost gold entities
    for text, ents, doc in recs:
        for a, b, t in ents:
            if not any(_inside(a, b, c, d) for c, d, _ in ents):
                outer[doc].add((text[a:b], t))
    rule, inner = set(), set()
    for k, (text, ents, doc) in enumerate(recs):
        inner |= {(k, a, b, t) for a, b, t in ents if any(_inside(a, b, c, d) for c, d, _ in ents)}
        for c, d, _ in ents:
            for x, t in outer[doc]:
                start = text.find(x, c, d)
                while start >= 0 and start + len(x) <= d:
                    end = start + len(x)
                    if (start, end) != (c, d) and (start == 0 or text[start - 1] == " ") and \
                            (end == len(text) or text[end] == " "):
                        rule.add((k, start, end, t))
                    start = text.find(x, start + 1, d)
    hit = len(rule & inner)
    return (f"{path.name}: {len(rule)} occurrences of an outermost entity's text inside another entity of its "
            f"document, {hit} annotated ({100 * hit / max(1, len(rule)):.1f} %); they are {hit} of {len(inner)} "
            f"inner entities ({100 * hit / max(1, len(inner)):.1f} %)")


def _sentences(tagger, docs, doc_keys):
    """(document key, words, gold set, predicted set, span probabilities) of each sentence, one network run
    (``nested_decoders._sentence_rows``)."""
    from nested_decoders import _sentence_rows

    from nerkit.scheme import chunks

    head, tags = tagger.span_head, tagger.layers * len(tagger.labels)
    keys = [key for doc, key in zip(docs, doc_keys) for _ in doc.sentences]
    rows = []
    for key, (s, part) in zip(keys, _sentence_rows(tagger, docs)):
        gold = {c for layer in s.all_tags() for c in chunks(layer)}
        pred = {(t, a, b) for t, a, b, _ in tagger.span_entities(part)}
        prob = {(head.types[c], a, b): p for a, b, c, p in head.candidates(part[:, tags:], 1e-4)}
        rows.append((key, s.words, gold, pred, prob))
    return rows


def propagated(rows, floor: float | None) -> dict:
    """Part 2's scores with the within-document rule at ``floor`` (None: the saved decoder alone)."""
    from nerkit.evaluation import _outermost, score_sets

    found = defaultdict(set)
    for key, words, _, pred, _ in rows:
        found[key] |= {(tuple(words[a:b]), t) for t, a, b in pred}
    golds, preds, inner_gold, inner_hit, added = [], [], 0, 0, 0
    for key, words, gold, pred, prob in rows:
        new = set(pred)
        if floor is not None:
            for _, c, d in pred:
                for x, t in found[key]:
                    for i in range(c, d - len(x) + 1):
                        span = (t, i, i + len(x))
                        if len(x) < d - c and tuple(words[i:i + len(x)]) == x and span not in new \
                                and prob.get(span, 0.0) >= floor:
                            new.add(span)
                            added += 1
        golds.append(gold)
        preds.append(new)
        inner = gold - _outermost(gold)
        inner_gold += len(inner)
        inner_hit += len(inner & new)
    report = score_sets(golds, preds)
    return {"f1": report["f1"], "precision": report["precision"], "recall": report["recall"],
            "inner_recall": inner_hit / max(1, inner_gold), "added": added}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", type=Path)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")  # the reader's notes on the data: said by train

    from machine import describe

    from nerkit.formats import load
    from nerkit.predict import Tagger

    for split in ("train", "valid", "test"):
        print(annotation_consistency(a.data / f"{split}.jsonl"), flush=True)
    tagger = Tagger.load(a.model, backend="torch")
    if tagger.span_head is None:
        raise SystemExit(f"{a.model}: no span head (a flat model, or --nested-head layers)")
    print(f"{a.model}: decoder {tagger.span_head.decoder}; {describe()}")
    for split in ("valid", "test"):
        path = a.data / f"{split}.jsonl"
        docs = load(path)  # one document a record (nerkit JSONL): the "doc" key groups them here only
        keys = [doc for _, _, doc in _records(path)]
        if len(keys) != len(docs):
            raise SystemExit(f"{path}: {len(docs)} documents read, {len(keys)} records")
        rows = _sentences(tagger, docs, [k if k is not None else f"#{n}" for n, k in enumerate(keys)])
        for floor in (None, *FLOORS):
            r = propagated(rows, floor)
            name = "saved decoder" if floor is None else f"+ within-document, floor {floor:g}"
            print(f"{split:5} {name:34} F1 {100 * r['f1']:.2f} (P {100 * r['precision']:.1f} / R "
                  f"{100 * r['recall']:.1f})  inner R {100 * r['inner_recall']:.1f} %  added {r['added']}", flush=True)


if __name__ == "__main__":
    main()
