"""Make a model directory's plain transformers pipeline give nerkit's answers, or refuse without trust_remote_code.

Models trained with the casing signal read word casing from ``token_type_ids``; the stock token-classification
pipeline passes zeros there. On CoNLL-2003 test that silently scored about 26 F1 below nerkit's Tagger, so such
directories name their own pipeline (``custom_pipelines`` in config.json, code in ``nerkit_pipeline.py``):
transformers then refuses to run without ``trust_remote_code=True`` and, with it, tags as nerkit does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from nerkit.errors import NerkitError
from nerkit.files import atomic_write_text
from nerkit.iob import unlayered_labels

PIPELINE_FILE = "nerkit_pipeline.py"
WORDS_FILE = "nerkit_words.py"
IOB_FILE = "nerkit_iob.py"
SPANS_FILE = "nerkit_spans.py"
PIPELINE_FILES = (PIPELINE_FILE, WORDS_FILE, IOB_FILE, SPANS_FILE)  # what a model directory carries for its pipeline
PIPELINE_CLASS = "NerkitTokenClassificationPipeline"
_HERE = Path(__file__).resolve().parent


def pipeline_files() -> dict[str, str]:
    """The files a model directory gets: the pipeline module and nerkit's word splitter it imports."""
    code = (_HERE / "hf_pipeline_code.py").read_text(encoding="utf-8")
    code = code.replace("from .words import", f"from .{WORDS_FILE.removesuffix('.py')} import")
    code = code.replace("from .iob import", f"from .{IOB_FILE.removesuffix('.py')} import")
    code = code.replace("from .spans import", f"from .{SPANS_FILE.removesuffix('.py')} import")
    return {PIPELINE_FILE: code, WORDS_FILE: (_HERE / "words.py").read_text(encoding="utf-8"),
            IOB_FILE: (_HERE / "iob.py").read_text(encoding="utf-8"),
            SPANS_FILE: (_HERE / "spans.py").read_text(encoding="utf-8")}


def pipeline_config_entry() -> dict:
    """The ``custom_pipelines`` value for config.json."""
    return {"token-classification": {"impl": f"{PIPELINE_FILE.removesuffix('.py')}.{PIPELINE_CLASS}",
                                     "pt": ["AutoModelForTokenClassification"], "type": "text"}}


def add_hf_pipeline(model_dir: str | os.PathLike, case_signal: bool | None = None, max_tokens: int | None = None) -> bool:
    """Add (or, for a model without the casing signal, remove) the custom pipeline of ``model_dir``; True if added.

    Also upgrades model directories written before nerkit did this; settings default to its nerkit.json.
    """
    d = Path(model_dir)
    cfg_path = d / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        meta = json.loads((d / "nerkit.json").read_text(encoding="utf-8")) if (d / "nerkit.json").is_file() else {}
    except (OSError, ValueError) as exc:
        raise NerkitError(f"{d}: not a readable model directory ({exc})") from None
    if case_signal is None:
        case_signal = bool(meta.get("case_signal"))
    if max_tokens is None:
        max_tokens = (meta.get("windows") or {}).get("max_tokens")
    labels = [str(v) for _, v in sorted((cfg.get("id2label") or {}).items(), key=lambda kv: int(kv[0]))]
    # A nested model's head holds several tag layers: the stock pipeline would read them as one, so it gets ours too.
    nested = unlayered_labels(labels)[1] > 1
    if case_signal or nested:
        for name, text in pipeline_files().items():
            atomic_write_text(d / name, text)
        cfg["custom_pipelines"] = pipeline_config_entry()
        if not case_signal:
            cfg["nerkit_case_signal"] = False
        if max_tokens:
            cfg["nerkit_max_tokens"] = int(max_tokens)
    else:
        cfg.pop("custom_pipelines", None)
        for name in PIPELINE_FILES:
            (d / name).unlink(missing_ok=True)
    atomic_write_text(cfg_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return bool(case_signal or nested)
