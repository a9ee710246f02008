"""The model directory contract: what nerkit writes next to a Hugging Face model, and the one place that reads it.

A nerkit model directory is a transformers token-classification directory (config.json, model.safetensors,
tokenizer files) plus ``nerkit.json`` (``ModelMeta``: labels, window settings, casing signal, training record,
metrics, ONNX export record) and a README.md model card. ``export`` adds ONNX graphs and a torch-free tokenizer.
Every reader of nerkit.json goes through ``read_meta``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nerkit.errors import NerkitError
from nerkit.files import atomic_write_text

META_FILE = "nerkit.json"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WORD_TOKENIZER_FILE = "nerkit.tokenizer.json"  # the backend tokenizer transformers builds; see align.WordTokenizer


@dataclass
class ModelMeta:
    """The contents of nerkit.json. ``None`` means the key is absent (it is then not written); keys this version
    does not know are kept in ``extra`` and written back unchanged."""

    windows: dict[str, Any] | None = None  # max_tokens, train_target_tokens, predict_target_tokens, sentence_level
    case_signal: bool | None = None  # word casing carried in token_type_ids
    labels: list[str] | None = None  # IOB2 tags in id order
    nerkit_version: str | None = None  # present only in directories nerkit trained
    base_model: str | None = None
    tag_scheme: str | None = None  # always "IOB2" today
    train_args: dict[str, Any] | None = None  # the resolved TrainConfig
    data: dict[str, Any] | None = None  # per split: documents, sentences, path, sha256_16
    metrics: dict[str, Any] | None = None  # per split (dev, test): the evaluation summary
    history: list[dict[str, Any]] | None = None  # dev evaluations during training
    best_step: int | None = None
    steps: int | None = None
    train_seconds: float | None = None
    total_seconds: float | None = None
    bf16: bool | None = None
    device: str | None = None
    platform: str | None = None
    onnx: dict[str, Any] | None = None  # written by ``nerkit export``
    budget: dict[str, Any] | None = None  # the training budget derived from the data's size (nerkit.budget)
    transfer: dict[str, Any] | None = None  # head transfer from an existing model: source, reused rows, fresh rows
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelMeta":
        """A ModelMeta from nerkit.json's object; missing keys are None, unknown keys go to ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to nerkit.json (absent keys left out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}


def read_meta(model_dir: str | os.PathLike) -> ModelMeta:
    """The nerkit.json of a model directory (an empty ModelMeta where there is none, e.g. a plain HF directory)."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return ModelMeta()
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NerkitError(f"{path}: unreadable model metadata ({exc})") from None
    if not isinstance(d, dict):
        raise NerkitError(f"{path}: model metadata is not a JSON object")
    return ModelMeta.from_dict(d)


def write_meta(model_dir: str | os.PathLike, meta: ModelMeta) -> None:
    """Write nerkit.json into a model directory atomically."""
    atomic_write_text(Path(model_dir) / META_FILE,
                      json.dumps(meta.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")


def is_nerkit_model_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a model directory that nerkit wrote (config.json and a nerkit.json naming its version)."""
    path = Path(path)
    try:
        meta = read_meta(path)
    except NerkitError:
        return False
    return meta.nerkit_version is not None and (path / "config.json").is_file()


def check_output(output: str | os.PathLike) -> Path:
    """Refuse, before any work, an output path that nerkit may not replace: only a new or empty directory, or a
    model directory nerkit wrote, is ever replaced (never a user's folder, a file, or the working directory)."""
    out = Path(output)
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise NerkitError(f"--output {output}: is the working directory (or holds it); give a new directory")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NerkitError(f"--output {output}: exists and is not a directory; nerkit will not replace it")
    if out.is_dir() and any(out.iterdir()) and not is_nerkit_model_dir(out):
        raise NerkitError(f"--output {output}: is a directory that is not a nerkit model; nerkit replaces only "
                          "model directories it wrote. Give a new or empty directory")
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise NerkitError(f"--output {output}: cannot write in {parent} (permission denied)")
    return out


def save_model_dir(model, tokenizer, meta: ModelMeta, output: str | os.PathLike) -> Path:
    """Write the model directory atomically: built in a temporary sibling folder, then moved into place.

    Only an empty directory or a model directory nerkit wrote is replaced (``check_output``, checked again here).
    """
    out = check_output(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_meta(tmp, meta)
        atomic_write_text(tmp / CARD_FILE, model_card(meta))
        old = None
        if out.is_dir():
            if any(out.iterdir()):
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.replace(out, old)  # a nerkit model directory (checked above): replaced whole
            else:
                out.rmdir()
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------- model card


def _table(report: dict) -> list[str]:
    rows = ["| type | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for t, v in report["per_type"].items():
        rows.append(f"| {t} | {v['precision'] * 100:.2f} | {v['recall'] * 100:.2f} | {v['f1'] * 100:.2f} | {v['support']} |")
    rows.append(f"| **micro avg** | {report['precision'] * 100:.2f} | {report['recall'] * 100:.2f} | "
                f"**{report['f1'] * 100:.2f}** | {report['support']} |")
    return rows


def model_card(meta: ModelMeta) -> str:
    """Markdown model card (README.md): base model, labels, data, training settings, per-type metrics."""
    types = sorted({t[2:] for t in meta.labels or [] if t != "O"})
    lines = [
        "---", "library_name: transformers", "pipeline_tag: token-classification", "tags: [ner, nerkit]", "---", "",
        "# Named-entity recognizer fine-tuned with nerkit", "",
        f"- Base model: `{meta.base_model}`",
        f"- Entity types: {', '.join(types)}",
        f"- Tag scheme: {meta.tag_scheme or 'IOB2'}; constrained (valid-sequence) decoding in nerkit",
        f"- Document context windows: {meta.windows}",
        f"- Casing signal through token_type_ids: {meta.case_signal}",
        f"- Trained in {meta.train_seconds} s on {meta.device} (bf16 autocast: {meta.bf16}), "
        f"{meta.steps} steps, best at step {meta.best_step}",
        "",
    ]
    for split in ("dev", "test"):
        rep = (meta.metrics or {}).get(split)
        if rep:
            lines += [f"## {split} set (entity-level, seqeval)", ""] + _table(rep) + [""]
    lines += ["## Data", ""] + [f"- {k}: {v}" for k, v in (meta.data or {}).items()] + [""]
    lines += ["## Training arguments", "", "```json"]
    lines += [json.dumps(meta.train_args or {}, indent=2, default=str), "```", "", "## Use", "", "```python",
              "import nerkit", "tagger = nerkit.Tagger.load('THIS_DIR')", "tagger(['Some text to tag.'])",
              "# or, unchanged, with transformers:",
              "from transformers import pipeline",
              "pipeline('token-classification', model='THIS_DIR', aggregation_strategy='simple')", "```", ""]
    if meta.case_signal:
        lines += ["Note: this model reads word casing from `token_type_ids` (0 lower, 1 Title, 2 UPPER, 3 mixed), "
                  "which nerkit's Tagger supplies. The plain transformers pipeline passes zeros there, so it runs "
                  "but loses the casing signal; use nerkit for the reported accuracy.", ""]
    return "\n".join(lines)
