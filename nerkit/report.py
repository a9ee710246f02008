"""An evaluation as people read it: every error in its sentence (``--errors``, JSONL) and a self-contained HTML page
(``--html``) with the scores drawn as bars, the errors counted by kind and type, and each sentence with an error
shown with its gold and predicted entities marked (nested ones inside their containers), filterable by kind and
type. Built from ``evaluation.evaluate``'s report and its ``Compared`` sentences."""
from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence

from nerkit.evaluation import ERROR_KINDS, Compared, error_items, overlap_by_type
from nerkit.files import atomic_write_text
from nerkit.scheme import Chunk

_PALETTE = ("#ffd54f", "#81d4fa", "#a5d6a7", "#f48fb1", "#ce93d8", "#ffab91", "#80cbc4", "#e6ee9c", "#b0bec5",
            "#bcaaa4")


def _entity(text: str, c: Chunk) -> dict:
    return {"start": c[1], "end": c[2], "label": c[0], "text": text[c[1]:c[2]]}


def _order(cs) -> list[Chunk]:
    return sorted(cs, key=lambda c: (c[1], -c[2], c[0]))


def error_records(compared: Sequence[Compared]) -> list[dict]:
    """One record per sentence with an error: its document and number there (from 1), text, gold ``entities`` (so the
    file reads back as nerkit JSONL, to correct the annotation), ``predicted`` entities and the ``errors`` (kind, gold
    entity, predictions)."""
    return [r for _, r, _ in _with_errors(compared)]


def _with_errors(compared: Sequence[Compared]) -> list[tuple[Compared, dict, list]]:
    """Each sentence with an error, its record (``error_records``) and its ``error_items``."""
    out, seen = [], {}
    for c in compared:
        n = seen[c.doc] = seen.get(c.doc, 0) + 1  # the sentence's number in its document
        items = error_items(c.gold, c.pred)
        if not items:
            continue
        out.append((c, {"doc": c.doc, "sentence": n, "text": c.text,
                    "entities": [_entity(c.text, g) for g in _order(c.gold)],
                    "predicted": [_entity(c.text, p) for p in _order(c.pred)],
                    "errors": [{"kind": k, "gold": _entity(c.text, g) if g else None,
                                "predicted": [_entity(c.text, p) for p in ps]} for k, g, ps in items]}, items))
    return out


def _marked(text: str, spans: Sequence[Chunk], color: dict[str, str], wrong: set[Chunk]) -> str:
    """``text`` with ``spans`` as <mark>s, an entity inside another as a mark inside its container's; a span that
    crosses one opened before (neither inside the other) is left unmarked (the error list names it)."""
    out, pos, stack = [], 0, []
    for c in _order(spans):
        while stack and stack[-1][2] <= c[1]:
            top = stack.pop()
            out.append(html.escape(text[pos:top[2]]) + f"<sub>{html.escape(top[0])}</sub></mark>")
            pos = top[2]
        if stack and c[2] > stack[-1][2]:
            continue  # crosses the open mark
        out.append(html.escape(text[pos:c[1]]))
        cls = ' class="x"' if c in wrong else ""
        out.append(f'<mark{cls} style="background:{color.get(c[0], "#eee")}" title="{html.escape(c[0])}">')
        pos = c[1]
        stack.append(c)
    while stack:
        top = stack.pop()
        out.append(html.escape(text[pos:top[2]]) + f"<sub>{html.escape(top[0])}</sub></mark>")
        pos = top[2]
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _bar_rows(report: dict) -> list[str]:
    def row(name: str, v: dict, cls: str = "") -> str:
        has = v["support"] > 0
        f1 = v["f1"] * 100
        bar = f'<div class="bar" style="width:{f1:.1f}%"></div>' if has else ""
        cell = (lambda x: f"{x * 100:.1f}")
        return (f'<tr class="{cls}"><td>{html.escape(name)}</td><td class="n">{cell(v["precision"])}</td>'
                f'<td class="n">{cell(v["recall"]) if has else "-"}</td><td class="n">{f"{f1:.1f}" if has else "-"}'
                f'</td><td class="n">{v["support"]}</td><td class="b">{bar}</td></tr>')

    rows = [row(t, v) for t, v in report["per_type"].items()]
    rows.append(row("micro avg", report, "sum"))
    rows += [row(part, v, "sum") for part, v in report.get("nested", {}).items()]
    if "overlap" in report:
        rows.append(row(f"overlap >= {round(report['overlap']['threshold'] * 100)} %", report["overlap"], "sum"))
        rows += [row(f"{t} (overlap)", v) for t, v in overlap_by_type(report).items()]
    return rows


def confusions(compared: Sequence[Compared]) -> dict[tuple[str, str], int]:
    """(gold type, predicted type) -> how many gold entities a prediction of the other type overlaps (the wrong
    type errors, with or without the right boundary)."""
    out: dict[tuple[str, str], int] = {}
    for c in compared:
        for kind, g, ps in error_items(c.gold, c.pred):
            if g and kind in ("wrong_type", "wrong_type_and_boundary"):
                for t in sorted({p[0] for p in ps if p[0] != g[0]}):
                    out[g[0], t] = out.get((g[0], t), 0) + 1
    return out


def _confusion_table(compared: Sequence[Compared]) -> list[str]:
    pairs = confusions(compared)
    if not pairs:
        return []
    rows, cols = sorted({g for g, _ in pairs}), sorted({p for _, p in pairs})
    out = ["<h2>Types confused</h2><p>Gold entities (rows) overlapped by a prediction of another type (columns).</p>",
           "<table><tr><th>gold \\ predicted</th>", *(f'<th class="n">{html.escape(t)}</th>' for t in cols), "</tr>"]
    for g in rows:
        out.append(f"<tr><td>{html.escape(g)}</td>"
                   + "".join(f'<td class="n">{pairs.get((g, t), "")}</td>' for t in cols) + "</tr>")
    return [*out, "</table>"]


def _seen_table(report: dict) -> list[str]:
    """Recall by whether training annotates the entity's text (``evaluation.seen_recall``), where measured."""
    if not report.get("seen"):
        return []
    rows = [f'<tr><td>{html.escape(r)}</td><td class="n">{v["found"]}</td><td class="n">{v["support"]}</td>'
            f'<td class="n">{v["recall"] * 100:.1f}</td><td class="b"><div class="bar" style="width:'
            f'{v["recall"] * 100:.1f}%"></div></td></tr>' for r, v in report["seen"].items()]
    return ["<h2>Seen in training</h2><p>Recall of the gold entities whose text (and type) the training data annotates,"
            " and of the others.</p>", '<table><tr><th></th><th class="n">found</th><th class="n">of</th>'
            '<th class="n">recall</th><th>recall</th></tr>', *rows, "</table>"]


def report_html(report: dict, compared: Sequence[Compared], title: str = "Evaluation") -> str:
    """The self-contained HTML page of an evaluation (scores, error counts, every sentence with an error)."""
    types = sorted({c[0] for x in compared for c in x.gold | x.pred} | set(report["per_type"]))
    color = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(types)}
    errors = report["errors"]
    kinds = [k for k in ERROR_KINDS if errors["total"].get(k)]
    parts = ["<!DOCTYPE html>", f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>',
             "body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}table{border-collapse:collapse}",
             "td,th{padding:.15em .6em;text-align:left}td.n,th.n{text-align:right}tr.sum td{border-top:1px solid #ccc}",
             "td.b{width:16em}.bar{background:#5c8dd6;height:.9em}.s{border-top:1px solid #ddd;padding:.6em 0}",
             ".who{display:inline-block;width:6em;color:#555}mark{padding:0 .15em;border-radius:3px}",
             "mark mark{border:1px solid #555}mark.x{outline:2px solid #d32f2f}sub{font-size:.65em}",
             ".k{font-size:.85em;color:#333}.doc{color:#777;font-size:.85em}select{margin-right:1em}",
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>{report.get('sentences', len(compared))} sentences, {report.get('words', '?')} words; entity "
             f"precision, recall and F1 over exact (type, start, end) matches.</p>",
             '<table><tr><th>type</th><th class="n">precision</th><th class="n">recall</th><th class="n">f1</th>'
             '<th class="n">support</th><th>f1</th></tr>', *_bar_rows(report), "</table>",
             "<h2>Errors by kind</h2>", "<table><tr><th>type</th>",
             *(f'<th class="n">{k.replace("_", " ")}</th>' for k in kinds), "</tr>"]
    for t, c in errors["per_type"].items():
        parts.append(f"<tr><td>{html.escape(t)}</td>" + "".join(f'<td class="n">{c[k]}</td>' for k in kinds) + "</tr>")
    parts.append('<tr class="sum"><td>all</td>' + "".join(f'<td class="n">{errors["total"][k]}</td>' for k in kinds)
                 + "</tr></table>")
    parts += _confusion_table(compared)
    parts += _seen_table(report)
    records = _with_errors(compared)
    parts += [f"<h2>{len(records)} sentences with an error</h2>",
              '<p>Show <select id="kind"><option value="">every kind</option>',
              *(f'<option value="{k}">{k.replace("_", " ")}</option>' for k in kinds),
              '</select><select id="type"><option value="">every type</option>',
              *(f'<option value="{html.escape(t)}">{html.escape(t)}</option>' for t in types),
              '</select> <span id="shown"></span></p>']
    for c, r, items in records:
        wrong = {g for _, g, _ in items if g} | {p for _, _, ps in items for p in ps}
        ks = json.dumps(sorted({k for k, _, _ in items}))
        ts = json.dumps(sorted({x[0] for _, g, ps in items for x in ([g] if g else []) + ps}), ensure_ascii=False)
        lines = []
        for kind, g, ps in items:
            gold = f"{html.escape(g[0])} “{html.escape(c.text[g[1]:g[2]])}”" if g else ""
            pred = ", ".join(f"{html.escape(p[0])} “{html.escape(c.text[p[1]:p[2]])}”" for p in ps)
            lines.append(f'<li><b>{kind.replace("_", " ")}</b>: {gold}{" → " if g and ps else ""}{pred}</li>')
        parts.append(f'<div class="s" data-kinds="{html.escape(ks)}" data-types="{html.escape(ts)}">'
                     f'<div class="doc">{html.escape(r["doc"])}, sentence {r["sentence"]}</div>'
                     f'<div><span class="who">gold</span>{_marked(c.text, list(c.gold), color, wrong)}</div>'
                     f'<div><span class="who">predicted</span>{_marked(c.text, list(c.pred), color, wrong)}</div>'
                     f'<ul class="k">{"".join(lines)}</ul></div>')
    parts.append("""<script>
function show(){const k=document.getElementById('kind').value,t=document.getElementById('type').value;let n=0;
for(const d of document.querySelectorAll('div.s')){const ok=(!k||JSON.parse(d.dataset.kinds).includes(k))&&
(!t||JSON.parse(d.dataset.types).includes(t));d.style.display=ok?'':'none';n+=ok;}
document.getElementById('shown').textContent=n+' shown';}
document.getElementById('kind').onchange=show;document.getElementById('type').onchange=show;show();
</script></body></html>
""")
    return "\n".join(parts)


def write_reports(report: dict, compared: Sequence[Compared], html_path: str | os.PathLike | None = None,
                  errors_path: str | os.PathLike | None = None, title: str = "Evaluation") -> None:
    """Write the HTML page and/or the errors JSONL (atomically)."""
    if errors_path:
        atomic_write_text(errors_path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                               for r in error_records(compared)))
    if html_path:
        atomic_write_text(html_path, report_html(report, compared, title))
