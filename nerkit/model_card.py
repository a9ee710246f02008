"""The README.md model card written next to every trained model."""
from __future__ import annotations


def _table(report: dict) -> list[str]:
    rows = ["| type | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for t, v in report["per_type"].items():
        rows.append(f"| {t} | {v['precision'] * 100:.2f} | {v['recall'] * 100:.2f} | {v['f1'] * 100:.2f} | {v['support']} |")
    rows.append(f"| **micro avg** | {report['precision'] * 100:.2f} | {report['recall'] * 100:.2f} | "
                f"**{report['f1'] * 100:.2f}** | {report['support']} |")
    return rows


def model_card(meta: dict) -> str:
    """Markdown model card: base model, labels, data, training settings, per-type metrics."""
    types = sorted({t[2:] for t in meta.get("labels", []) if t != "O"})
    lines = [
        "---", "library_name: transformers", "pipeline_tag: token-classification", "tags: [ner, nerkit]", "---", "",
        "# Named-entity recognizer fine-tuned with nerkit", "",
        f"- Base model: `{meta.get('base_model')}`",
        f"- Entity types: {', '.join(types)}",
        f"- Tag scheme: {meta.get('tag_scheme', 'IOB2')}; constrained (valid-sequence) decoding in nerkit",
        f"- Document context windows: {meta.get('windows')}",
        f"- Casing signal through token_type_ids: {meta.get('case_signal')}",
        f"- Trained in {meta.get('train_seconds')} s on {meta.get('device')} (bf16 autocast: {meta.get('bf16')}), "
        f"{meta.get('steps')} steps, best at step {meta.get('best_step')}",
        "",
    ]
    if meta.get("schema"):
        lines += ["## Label schema", ""] + [f"- **{k}**: {v}" for k, v in meta["schema"].items()] + [""]
    for split in ("dev", "test"):
        rep = meta.get("metrics", {}).get(split)
        if rep:
            lines += [f"## {split} set (entity-level, seqeval)", ""] + _table(rep) + [""]
    lines += ["## Data", ""] + [f"- {k}: {v}" for k, v in meta.get("data", {}).items()] + [""]
    lines += ["## Training arguments", "", "```json"]
    import json

    lines += [json.dumps(meta.get("train_args", {}), indent=2, default=str), "```", "", "## Use", "", "```python",
              "import nerkit", "tagger = nerkit.Tagger.load('THIS_DIR')", "tagger(['Some text to tag.'])",
              "# or, unchanged, with transformers:",
              "from transformers import pipeline",
              "pipeline('token-classification', model='THIS_DIR', aggregation_strategy='simple')", "```", ""]
    if meta.get("case_signal"):
        lines += ["Note: this model reads word casing from `token_type_ids` (0 lower, 1 Title, 2 UPPER, 3 mixed), "
                  "which nerkit's Tagger supplies. The plain transformers pipeline passes zeros there, so it runs "
                  "but loses the casing signal; use nerkit for the reported accuracy.", ""]
    return "\n".join(lines)
