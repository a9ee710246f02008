"""Transfer from an existing token classifier: keep its encoder, reuse the classifier rows of labels with the
same name (or renamed through a label map), start the others fresh.

A CoNLL-2003 model trained further on 100 financial-news sentences of the same types starts from what it
knows about PER/ORG/LOC instead of from a random head (docs/domains.md has the measured effect).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nerkit.errors import NerkitError
from nerkit.iob import unlayered_labels
from nerkit.scheme import split_tag


@dataclass(frozen=True)
class HeadTransfer:
    """Which classifier rows came from the source model (new label -> source label) and which start fresh."""

    source: str
    reused: dict[str, str] = field(default_factory=dict)
    fresh: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the log."""
        if not self.reused:
            return f"transfer from {self.source}: encoder kept; no label in common, the classifier starts fresh"
        renamed = [f"{s}->{n}" for n, s in self.reused.items() if s != n]
        same = [n for n, s in self.reused.items() if s == n]
        parts = [f"encoder kept; classifier rows reused for {len(self.reused)} of "
                 f"{len(self.reused) + len(self.fresh)} labels ({', '.join(same + renamed)})"]
        if self.fresh:
            parts.append(f"new: {', '.join(self.fresh)}")
        return f"transfer from {self.source}: " + "; ".join(parts)


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"PER=PESSOA,ORG=ORGANIZACAO"`` as {source type: new type}."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        old, sep, new = item.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new or any(c.isspace() for c in old + new):
            raise NerkitError(f"--label-map: {item.strip()!r} is not OLD=NEW (entity types, e.g. PER=PERSON)")
        if old in out:
            raise NerkitError(f"--label-map: {old!r} is mapped twice")
        out[old] = new
    return out


def source_labels(model_dir: str) -> list[str] | None:
    """The tag labels of a local token-classification model directory, in id order; None for a plain encoder."""
    cfg_file = Path(model_dir) / "config.json"
    if not cfg_file.is_file():
        return None  # a hub id or a missing folder: loading reports it
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not any(str(a).endswith("ForTokenClassification") for a in cfg.get("architectures") or []):
        return None
    id2label = cfg.get("id2label") or {}
    labels = [id2label.get(str(i)) for i in range(len(id2label))]
    try:
        for t in unlayered_labels(labels)[0]:
            split_tag(t)
    except (TypeError, ValueError):
        return None  # LABEL_0-style names: not a tagger whose rows mean anything by name
    return labels


def _head_tensors(model_dir: str):
    """The source model's classifier weight and bias, read from its safetensors file(s)."""
    from safetensors import safe_open

    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            keys = list(st.keys())
            w = [k for k in keys if k.endswith("classifier.weight")]
            b = [k for k in keys if k.endswith("classifier.bias")]
            if w:
                return st.get_tensor(w[0]), (st.get_tensor(b[0]) if b else None)
    raise NerkitError(f"{model_dir}: no classifier weights found in its safetensors files")


def _check_no_merge(label_map: dict[str, str], src_labels: list[str], model_dir: str) -> None:
    """Refuse a map that gives two source types one name (PER=LOC onto a model that has LOC): only one of their
    classifier rows could be reused, and the other was dropped without a word."""
    by_new: dict[str, list[str]] = {}
    for typ in sorted({split_tag(t)[1] for t in src_labels} - {""}):
        by_new.setdefault(label_map.get(typ, typ), []).append(typ)
    merged = {new: olds for new, olds in by_new.items() if len(olds) > 1}
    if merged:
        new, olds = next(iter(merged.items()))
        own = f" ({new} keeps its name unless the map renames it too)" if new in olds else ""
        raise NerkitError(f"--label-map: {' and '.join(olds)} of {model_dir} would all become {new}{own}, and the "
                          f"classifier rows of only one can start {new}; map just one type to {new}")


def transfer_head(model, model_dir: str, src_labels: list[str], labels: list[str],
                  label_map: dict[str, str] | None = None) -> HeadTransfer:
    """Copy the rows of ``src_labels`` into ``model``'s classifier for ``labels`` with the same (or mapped) name."""
    import torch

    label_map = label_map or {}
    # Nested heads (``scheme.layered_labels``): rows are matched by tag within a layer; a layer the source lacks
    # starts from the source's deepest one (a flat source's rows seed every layer of a nested model).
    src_layer_labels, src_layers = unlayered_labels(src_labels)
    base_labels, layers = unlayered_labels(labels)
    src_labels = src_layer_labels
    unknown = sorted(set(label_map) - {split_tag(t)[1] for t in src_labels} - {""})
    if unknown:
        raise NerkitError(f"--label-map names {', '.join(unknown)}, which {model_dir} does not have "
                          f"(its types: {', '.join(sorted({split_tag(t)[1] for t in src_labels} - {''}))})")
    _check_no_merge(label_map, src_labels, str(model_dir))
    new_types = {split_tag(t)[1] for t in base_labels} - {""}
    bad = sorted(set(label_map.values()) - new_types)
    if bad:
        raise NerkitError(f"--label-map maps to {', '.join(bad)}, which the training data does not have")
    # The new name of each source tag: B-PER -> B-PESSOA under PER=PESSOA; unmapped types keep their name.
    renamed = {}
    for t in src_labels:
        p, typ = split_tag(t)
        renamed[t if p != "O" else "O"] = "O" if p == "O" else f"{p}-{label_map.get(typ, typ)}"
    by_new = {}
    for src, new in renamed.items():
        by_new.setdefault(new, src)
    weight, bias = _head_tensors(model_dir)
    head = model.classifier
    reused, fresh = {}, []
    std = getattr(model.config, "initializer_range", 0.02)
    width = len(base_labels)
    with torch.no_grad():
        for i, named in enumerate(labels):
            t = base_labels[i % width]
            src = by_new.get(t)
            if src is not None:
                j = src_labels.index(src) + min(i // width, src_layers - 1) * len(src_labels)
                head.weight[i] = weight[j].to(head.weight.dtype)
                if head.bias is not None:
                    head.bias[i] = bias[j].to(head.bias.dtype) if bias is not None else 0.0
                reused[named] = src
            else:
                # A fresh row as the model's own initialisation would make it (the loaded row, if sizes matched,
                # belongs to another label and must not be kept).
                head.weight[i].normal_(0.0, std)
                if head.bias is not None:
                    head.bias[i] = 0.0
                fresh.append(named)
    return HeadTransfer(str(model_dir), reused, tuple(fresh))
