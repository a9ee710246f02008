"""Inference: raw text or labelled documents in, entities with exact character offsets out."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Generator, Sequence

import numpy as np

from nerkit import align, files
from nerkit.decode import WindowTagger, run_steps
from nerkit.engines import load_engine
from nerkit.errors import DataError, NerkitError
from nerkit.modeldir import META_FILE, ModelDir, ModelMeta, first_line, open_model_dir
from nerkit.spans import SPAN_FILE, SpanScorer, load_span_head
from nerkit.types import Document, Entity, Sentence

log = logging.getLogger("nerkit.predict")

__all__ = ["Entity", "Tagger", "read_records", "read_texts"]  # Entity lives in nerkit.types; kept importable from here


class Tagger(WindowTagger):
    """A fine-tuned NER model: ``Tagger.load(DIR)(["some text", ...])`` returns entities per text."""

    def __init__(self, engine, tokenizer, labels: list[str], meta: ModelMeta | dict | None = None,
                 span_head: SpanScorer | None = None):
        self.meta = meta if isinstance(meta, ModelMeta) else ModelMeta.from_dict(meta or {})
        super().__init__(engine, tokenizer, labels, self.meta.windows, bool(self.meta.case_signal), span_head)

    @classmethod
    def load(cls, path: str | os.PathLike | ModelDir, backend: str = "auto", device: str | None = None,
             bf16: str = "auto", threads: int | None = None) -> "Tagger":
        """Load a nerkit (or any HF token-classification) model directory (or one ``open_model_dir`` opened);
        backend: auto, torch, onnx, onnx-int8 (``engines.resolve_backend``); bf16: auto, on, off (PyTorch autocast;
        see ``engines.use_bf16``); threads: CPU threads for the engine (default: every core it may use). A damaged
        directory is a NerkitError."""
        model = path if isinstance(path, ModelDir) else open_model_dir(path)
        _warn_without_meta(model.path, model.config, model.meta)
        engine = load_engine(model, backend, threads=threads, device=device, bf16=bf16)
        span = None
        if model.has(SPAN_FILE):
            try:
                span = load_span_head(model.path / SPAN_FILE)
            except (OSError, ValueError) as exc:
                raise NerkitError(f"{model.path / SPAN_FILE}: cannot read the span head ({exc})") from None
        return cls(engine, _tokenizer(model, torch_free=engine.name != "torch"), model.labels, model.meta, span)

    def word_probs(self, texts: Sequence[str]) -> list[tuple[list[str], list[tuple[int, int]], np.ndarray]]:
        """Words, their character offsets and their probability over ``labels``, per text."""
        docs = [self._text_doc(t, i) for i, t in enumerate(texts)]
        out = []
        for doc, lps in zip(docs, self._word_logprobs(docs)):
            s = doc.sentences[0]
            probs = np.exp(self.tag_part(lps))
            out.append((s.words, s.offsets, probs))
        return out

    @staticmethod
    def _text_doc(text: str, i: int) -> Document:
        from nerkit.data import tokenize

        if not isinstance(text, str):
            raise DataError(f"text {i}", None, f"expected a string, got {type(text).__name__}")
        words, offsets = tokenize(text)
        return Document(str(i), [Sentence(words, None, str(i), f"text {i}", text, offsets)])

    def predict(self, texts: Sequence[str]) -> list[list[Entity]]:
        """Entities of each text, with exact character offsets and scores."""
        return run_steps(self.predict_steps(texts))

    def predict_steps(self, texts: Sequence[str]) -> Generator[int, None, list[list[Entity]]]:
        """``predict`` one model call at a time (for a server that interleaves requests): a generator that yields
        the padded tokens left to run before each call and returns the entities."""
        docs = [self._text_doc(t, i) for i, t in enumerate(texts)]
        result = []
        lps = yield from self._word_logprobs_steps(docs)
        for doc, found in zip(docs, self.entities_many(lps)):
            s = doc.sentences[0]
            ents = []
            for label, a, b, score in found:
                start, end = s.offsets[a][0], s.offsets[b - 1][1]
                ents.append(Entity(start, end, label, round(score, 4), s.text[start:end]))
            result.append(ents)
        return result

    def __call__(self, texts: str | Sequence[str]) -> list[list[Entity]] | list[Entity]:
        if isinstance(texts, str):
            return self.predict([texts])[0]
        return self.predict(list(texts))


def _warn_without_meta(path: Path, config: dict, meta: ModelMeta) -> None:
    """Say so when a directory's nerkit.json (or its "case_signal") is missing but its config has the token types
    of nerkit's casing signal: it then runs without that signal and tags worse without any sign of why."""
    if meta.case_signal is not None or int(config.get("type_vocab_size") or 0) < align.CASE_TYPES:
        return
    missing = f'{META_FILE} without "case_signal"' if (path / META_FILE).is_file() else f"no {META_FILE}"
    log.warning("%s: %s, but config.json has %s token types, as a nerkit model trained with the casing signal "
                "has: tagging WITHOUT the casing signal%s, which loses accuracy if it was trained with it. Copy "
                "the model's %s back (or write one with {\"case_signal\": true})", path, missing,
                config.get("type_vocab_size"), "" if meta.windows else " and with default windows", META_FILE)


def _tokenizer(model: ModelDir, torch_free: bool):
    """The model's tokenizer: with ONNX Runtime, the torch-free one ``nerkit export`` saved (see
    align.WordTokenizer) where there is one, so that neither transformers nor torch is imported; else transformers'."""
    spec = (model.meta.onnx or {}).get("word_tokenizer")
    if torch_free and spec and model.has(spec["file"]):
        try:
            return align.WordTokenizer.from_file(model.path / spec["file"], spec)
        except ImportError:
            pass
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model.path)
    except Exception as exc:  # noqa: BLE001
        raise NerkitError(f"{model.path}: cannot load the tokenizer ({first_line(exc)})") from None


def read_texts(path: str | os.PathLike) -> list[str]:
    """Texts from a .txt file (one per non-empty line) or a .jsonl file (a "text" field per line).

    Lines end at "\n" (or "\r\n") only: U+2028/U+2029, form feeds and U+0085 are characters of a text (str.splitlines
    would cut there, and the output would no longer line up with the input).
    """
    return [r["text"] for r in read_records(path)]


def read_records(path: str | os.PathLike) -> list[dict]:
    """``read_texts`` as records: each .jsonl line's whole object (its other fields are carried through to the
    output by ``nerkit predict``), ``{"text": line}`` for each line of a .txt file."""
    p = Path(path)
    records = []
    for n, line in files.lines(p):
        if not line.strip():
            continue
        if p.suffix.lower() in (".jsonl", ".json"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(p, n, f"invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(p, n, 'expected an object with a string "text" field')
            files.check_json_text(rec, p, n, line)  # the tokenizer failed on a lone "\ud800" with a traceback
            records.append(rec)
        else:
            records.append({"text": line})
    return records
