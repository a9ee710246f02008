"""The model directory contract: what nerkit writes next to a Hugging Face model, and the one place that reads it.

A nerkit model directory is a transformers token-classification directory (config.json, model.safetensors,
tokenizer files) plus ``nerkit.json`` (``ModelMeta``: labels, window settings, casing signal, training record,
metrics, ONNX export record) and a README.md model card. ``export`` adds ONNX graphs and a torch-free tokenizer.
Every reader of nerkit.json goes through ``read_meta``; whatever runs a model opens its directory once with
``open_model_dir`` (config.json and nerkit.json read once, the labels from one place).
"""
# size: the model directory contract in one place: what it holds, reading and writing it, and its model card (how the
# model finds entities, its training and scores, as nerkit.json records them).
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nerkit.errors import NerkitError
from nerkit.iob import unlayered_labels
from nerkit.files import atomic_write_text, follow_umask
from nerkit.hf_pipeline import PIPELINE_FILES, add_hf_pipeline
from nerkit.spans import SPAN_ATTR, SPAN_FILE, entity_types, span_layout

log = logging.getLogger("nerkit.modeldir")

META_FILE = "nerkit.json"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WORD_TOKENIZER_FILE = "nerkit.tokenizer.json"  # the backend tokenizer transformers builds; see align.WordTokenizer
# Files any of which lets a tokenizer load (fast tokenizer, WordPiece, BPE, SentencePiece; nerkit export's own).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", WORD_TOKENIZER_FILE)


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


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (library errors can span a page)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def check_model_dir(model_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a model directory, after checking what loading needs; else one ``NerkitError`` naming the
    directory and the problem (missing or unreadable config, no usable labels, no tokenizer files). A directory
    without tokenizer files once loaded with a 5-token fallback tokenizer and tagged every word as one entity."""
    path = Path(model_dir)
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise NerkitError(f"{path}: no such model directory")
    if not cfg_path.is_file():
        raise NerkitError(f"{path}: not a model directory (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NerkitError(f"{cfg_path}: not a readable JSON config ({first_line(exc)})") from None
    if not isinstance(cfg, dict) or not cfg:
        raise NerkitError(f"{cfg_path}: empty, or not a JSON object")
    id2label = cfg.get("id2label")
    if not isinstance(id2label, dict) or sorted(id2label) != sorted(str(i) for i in range(len(id2label))) or not id2label:
        raise NerkitError(f"{cfg_path}: no usable id2label (labels numbered 0..n-1)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise NerkitError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...); copy them from the "
                          "base model into the directory")
    return cfg


@dataclass(frozen=True)
class ModelDir:
    """A model directory opened once: its config.json, its nerkit.json and its labels (from config.json's id2label,
    the order the classifier's rows are in)."""

    path: Path
    config: dict[str, Any]
    meta: ModelMeta
    labels: list[str]

    def has(self, name: str) -> bool:
        """Whether the directory holds the file ``name``."""
        return (self.path / name).is_file()


def open_model_dir(model_dir: str | os.PathLike) -> ModelDir:
    """Check a model directory (``check_model_dir``) and read config.json and nerkit.json, once each."""
    path = Path(model_dir)
    cfg = check_model_dir(path)
    id2label = cfg["id2label"]
    labels = [id2label[str(i)] for i in range(len(id2label))]
    if not all(isinstance(t, str) and t for t in labels):
        raise NerkitError(f"{path / 'config.json'}: id2label holds a label that is not a non-empty string")
    try:
        span_dim = span_layout(labels).dim
    except ValueError as exc:
        raise NerkitError(f"{path / 'config.json'}: {exc}") from None
    if span_dim and not (path / SPAN_FILE).is_file():
        raise NerkitError(f"{path}: the head has span-feature columns but the directory has no {SPAN_FILE}")
    return ModelDir(path, cfg, read_meta(path), labels)


def check_torch_weights(model_dir: str | os.PathLike) -> None:
    """Refuse a directory whose weights are not safetensors: unpickling a file can run any code in it."""
    path = Path(model_dir)
    if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for ext in ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl") for p in path.glob(ext))
    if pickles:
        raise NerkitError(f"{path}: weights only in pickle files ({', '.join(pickles)}); nerkit loads safetensors "
                          "only (unpickling can run code). Convert them where you trust the file, e.g. "
                          "model.save_pretrained(DIR) after loading it in transformers")
    raise NerkitError(f"{path}: no model weights (model.safetensors)")


def load_token_classifier(source: str | os.PathLike, **kwargs) -> tuple[Any, dict]:
    """``AutoModelForTokenClassification.from_pretrained(source, use_safetensors=True, **kwargs)`` and its loading
    info (missing, unexpected, mismatched keys), without transformers' console output for it: its load report (every
    base encoder "misses" the classifier nerkit is about to train, and printed it with colour codes in `nerkit demo`)
    and, for a local directory, its weight-loading bar. Callers judge the keys themselves."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    # A filter, not a raised level: transformers 5 checks a tensor-parallel plan, and warns about it, exactly when
    # this logger's own level is WARNING or above.
    report, quiet = logging.getLogger("transformers.modeling_utils"), _NoLoadReport()
    bars = hf_logging.is_progress_bar_enabled()
    local = Path(source).is_dir()  # a hub id downloads here: keep its progress bars
    report.addFilter(quiet)
    if local:
        hf_logging.disable_progress_bar()
    try:
        return AutoModelForTokenClassification.from_pretrained(source, use_safetensors=True, output_loading_info=True,
                                                               **kwargs)
    finally:
        report.removeFilter(quiet)
        if local and bars:
            hf_logging.enable_progress_bar()


class _NoLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def is_nerkit_model_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a model directory that nerkit wrote (config.json and a nerkit.json naming its version)."""
    path = Path(path)
    try:
        meta = read_meta(path)
    except NerkitError:
        return False
    # nerkit_version: nerkit trained it; onnx: `nerkit export` wrote it (a copy of any model directory).
    return (meta.nerkit_version is not None or meta.onnx is not None) and (path / "config.json").is_file()


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
    probe_writable(parent, f"--output {output}")
    return out


def probe_writable(directory: str | os.PathLike, name: str) -> None:
    """Write and remove a file in ``directory``: permission bits say yes to root on /sys or a read-only mount,
    and a training once found out only at its final save. ``name`` says what the error is about."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".nerkit-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NerkitError(f"{name}: cannot write in {directory} ({exc.strerror or exc})") from None


def save_model_dir(model, tokenizer, meta: ModelMeta, output: str | os.PathLike) -> Path:
    """Write the model directory atomically: built in a temporary sibling folder, then moved into place.

    Only an empty directory or a model directory nerkit wrote is replaced (``check_output``, checked again here).
    """
    out = check_output(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        span = getattr(model, SPAN_ATTR, None)
        if span is None:
            model.save_pretrained(tmp)
        else:  # the span head in a file of its own: transformers would call it an unexpected weight
            model.save_pretrained(tmp, state_dict={k: v for k, v in model.state_dict().items()
                                                   if not k.startswith(SPAN_ATTR + ".")})
            _save_span_head(span.weight, meta, tmp / SPAN_FILE)
        tokenizer.save_pretrained(tmp)
        write_meta(tmp, meta)
        # With the casing signal, the stock transformers pipeline would run but lose it: name nerkit's own.
        add_hf_pipeline(tmp, bool(meta.case_signal), (meta.windows or {}).get("max_tokens"))
        atomic_write_text(tmp / CARD_FILE, model_card(meta))
        follow_umask(tmp)
        old = None
        if out.is_dir():
            if any(out.iterdir()):
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.replace(out, old)  # a nerkit model directory (checked above): its files are replaced
            else:
                out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        _keep_user_files(old, out)
    return out


def _save_span_head(weight, meta: ModelMeta, path: Path) -> None:
    from safetensors.torch import save_file

    types = entity_types(unlayered_labels(meta.labels or [])[0])
    if len(types) != weight.shape[0]:
        raise NerkitError(f"span head of {weight.shape[0]} types for labels naming {len(types)}")
    nested = meta.extra.get("nested") or {}
    info = {"types": json.dumps(types), "decoder": str(nested.get("decoder", "spans"))}
    if nested.get("max_width"):
        info["max_width"] = str(int(nested["max_width"]))
    if span_layout(meta.labels or [])[2]:
        info["pooled"] = "mean"
    if nested.get("thresholds"):
        info["thresholds"] = json.dumps(nested["thresholds"])
    save_file({"weight": weight.detach().float().cpu().contiguous()}, str(path), metadata=info)


# Names nerkit writes into a model directory (train, export); anything else in one is the user's and is kept.
_NERKIT_FILES = {"config.json", "model.safetensors", "model.safetensors.index.json", "generation_config.json",
                 "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt",
                 META_FILE, CARD_FILE, ONNX_FILE, INT8_FILE, SPAN_FILE, *PIPELINE_FILES, *TOKENIZER_FILES}


def _keep_user_files(old: Path, out: Path) -> None:
    """Move what the user added to a replaced model directory (``old``, moved aside) into the new one ``out``,
    then delete ``old``, which then holds only nerkit's files. A retraining once deleted the user's notes."""
    written = {p.name for p in out.iterdir()}
    for p in sorted(old.iterdir()):
        nerkit_own = p.name in _NERKIT_FILES or (p.name.startswith("model-") and p.name.endswith(".safetensors"))
        if nerkit_own or p.name in written:
            continue
        try:
            os.replace(p, out / p.name)
        except OSError as exc:  # the model is saved: say where the file is rather than fail the save
            log.warning("%s: your %s could not be moved into the new model directory (%s); it is in %s, with the "
                        "previous model's files", out, p.name, exc.strerror or exc, old)
            return
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- model card

def _pct(v: dict) -> str:
    return f"{v['precision'] * 100:.2f} | {v['recall'] * 100:.2f} | {v['f1'] * 100:.2f}"


def _table(report: dict) -> list[str]:
    """Per-type and micro scores, then where measured the outermost and inner entities' and the overlap score."""
    rows = ["| type | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    rows += [f"| {t} | {_pct(v)} | {v['support']} |" for t, v in report["per_type"].items()]
    rows.append(f"| **micro avg** | {report['precision'] * 100:.2f} | {report['recall'] * 100:.2f} | "
                f"**{report['f1'] * 100:.2f}** | {report['support']} |")
    rows += [f"| {part} entities | {_pct(v)} | {v['support']} |" for part, v in (report.get("nested") or {}).items()
             if v.get("support")]  # no inner entity in the data: no row (its precision would read as a score)
    if report.get("overlap"):
        rows.append(f"| overlap >= {round(report['overlap']['threshold'] * 100)} % | {_pct(report['overlap'])} | "
                    f"{report['overlap']['support']} |")
    return rows


def _scores_line(report: dict, nested: bool) -> str:
    """What the card's tables score."""
    what = ("over exact (type, start, end) spans, each nested entity on its own" if nested else
            "(seqeval, exact spans)")
    line = f"Entity-level precision, recall and F1 {what}."
    if report.get("overlap"):
        line += (" Overlap: a gold entity is found when a prediction of its type covers at least "
                 f"{round(report['overlap']['threshold'] * 100)} % of it (for entities whose edges are a matter of "
                 "taste).")
    return line


def _entities_line(meta: ModelMeta) -> str:
    """How the model finds entities: flat tags, tag layers, or a span head with its decoding."""
    nested = meta.extra.get("nested") if isinstance(meta.extra.get("nested"), dict) else None
    if not nested:
        return f"- Entities: flat, {meta.tag_scheme or 'IOB2'} tags with constrained (valid-sequence) decoding"
    if nested.get("head") != "span":
        return (f"- Entities: nested, one {meta.tag_scheme or 'IOB2'} tag layer per nesting level "
                f"({nested.get('layers')})")
    thresholds = ", ".join(f"{t} {p:g}" for t, p in sorted((nested.get("thresholds") or {}).items()))
    return (f"- Entities: nested and overlapping, scored as spans (a span head over the token states, up to "
            f"{nested.get('max_width')} words; decoder `{nested.get('decoder')}`"
            + (f"; per-type thresholds chosen on dev: {thresholds}" if thresholds else "") + ")")


def _training_lines(meta: ModelMeta) -> list[str]:
    """Steps (the plan and any extension), the best step, time and device; the search's choice if it searched."""
    budget, steps = meta.budget or {}, meta.steps or 0
    extended = budget.get("extended_steps") or []
    planned = budget.get("planned_steps", steps - sum(extended))
    how = (f" (a plan of {planned:,}, trained on past it while dev F1 climbed: "
           f"{', '.join(f'+{e:,}' for e in extended)})" if extended else "")
    lines = [f"- Training: {steps:,} steps{how}, best at step {meta.best_step}; {meta.train_seconds or 0:,.0f} s on "
             f"{meta.device} (bf16 autocast: {'on' if meta.bf16 else 'off'})"]
    search = meta.extra.get("search")
    if isinstance(search, dict) and isinstance(search.get("kept"), dict):
        kept = search["kept"]
        lines.append(f"- Learning rate and epochs chosen on dev among {len(search.get('points', []))} settings "
                     f"(`nerkit train`'s search): learning rate x{kept.get('lr_x'):g} ({kept.get('lr'):g}), "
                     f"epochs x{kept.get('epochs_x'):g} ({kept.get('epochs'):g})")
    return lines


def _context_line(windows: dict | None) -> str:
    w = windows or {}
    if not w.get("max_tokens"):
        return f"- Context windows: {w}"
    scope = "sentence by sentence" if w.get("sentence_level") else "across the sentences of a document"
    return f"- Context: windows of up to {w['max_tokens']} subword tokens, {scope}"


def _data_lines(data: dict | None) -> list[str]:
    out = []
    for split, v in (data or {}).items():
        if isinstance(v, dict) and "sentences" in v:
            out.append(f"- {split}: `{v.get('path')}`, {v['sentences']:,} sentences in {v.get('documents', 0):,} "
                       f"documents (sha256 {v.get('sha256_16')})")
        else:
            out.append(f"- {split}: {json.dumps(v, default=str)}")
    return out


def _distilled_line(meta: ModelMeta) -> list[str]:
    """The card's line for a student of ``nerkit distill``: from which model, keeping which of its layers."""
    src, how = meta.extra.get("distilled_from"), meta.extra.get("distill")
    if not isinstance(src, dict) or not isinstance(how, dict):
        return []
    kept = ", ".join(str(k + 1) for k in how.get("kept_layers", []))
    return [f"- Distilled from `{src.get('model')}` ({src.get('layers')} encoder layers) into {how.get('layers')} "
            f"(its layers {kept}) with `nerkit distill`"]


def model_card(meta: ModelMeta) -> str:
    """Markdown model card (README.md): base model, labels, how entities are found, data, training, per-type metrics."""
    labels, layers = unlayered_labels(meta.labels or [])
    types = sorted({t[2:] for t in labels if t != "O"})  # a nested model: once
    nested = layers > 1  # as hf_pipeline.add_hf_pipeline decides whether the directory holds its own pipeline
    lines = [
        "---", "library_name: transformers", "pipeline_tag: token-classification", "tags: [ner, nerkit]", "---", "",
        "# Named-entity recognizer fine-tuned with nerkit", "",
        f"- Base model: `{meta.base_model}`",
        *_distilled_line(meta),
        f"- Entity types: {', '.join(types)}",
        _entities_line(meta),
        _context_line(meta.windows),
        f"- Casing signal through token_type_ids: {'yes' if meta.case_signal else 'no'}",
        *_training_lines(meta),
        "",
    ]
    for split in ("dev", "test"):
        rep = (meta.metrics or {}).get(split)
        if rep:
            lines += [f"## {split} set", "", _scores_line(rep, nested), ""] + _table(rep) + [""]
    lines += ["## Data", ""] + _data_lines(meta.data) + [""]
    lines += ["## Training arguments", "", "```json"]
    lines += [json.dumps(meta.train_args or {}, indent=2, default=str), "```", "", "## Use", "", "```python",
              "import nerkit", "tagger = nerkit.Tagger.load('THIS_DIR')", "tagger(['Some text to tag.'])",
              "# or with transformers alone:",
              "from transformers import pipeline"]
    if meta.case_signal or nested:  # the directory holds its own pipeline then (hf_pipeline.add_hf_pipeline)
        why = ("This model reads word casing from `token_type_ids` (0 lower, 1 Title, 2 UPPER, 3 mixed). The stock "
               "transformers pipeline passes zeros there and would silently lose accuracy"
               if meta.case_signal else
               "This model finds nested entities, which the stock transformers pipeline would read as flat tags")
        lines += ["pipeline('token-classification', model='THIS_DIR', trust_remote_code=True)", "```", "",
                  f"{why}, so this directory names its own pipeline (`nerkit_pipeline.py`, with nerkit's word "
                  "splitter `nerkit_words.py`): it returns nerkit's entities"
                  + (", nested ones too" if nested else "") + ". transformers runs it only with "
                  "`trust_remote_code=True` (read its files first); without it, `pipeline()` refuses.", ""]
    else:
        lines += ["pipeline('token-classification', model='THIS_DIR', aggregation_strategy='first')", "```", ""]
    return "\n".join(lines)
