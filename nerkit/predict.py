"""Inference: raw text or labelled documents in, entities with exact character offsets out."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nerkit import align
from nerkit.errors import DataError, NerkitError
from nerkit.scheme import chunks, split_tag
from nerkit.types import Document, Sentence

META_FILE = "nerkit.json"


@dataclass(frozen=True)
class Entity:
    """A predicted entity: ``text[start:end] == self.text``; ``score`` is the mean probability of its tags."""

    start: int
    end: int
    label: str
    score: float
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """IOB2 constraints: ``trans[i, j]`` is 0 if tag j may follow tag i, else -inf; and allowed first tags."""
    n = len(labels)
    parts = [split_tag(t) for t in labels]
    trans = np.zeros((n, n))
    start = np.zeros(n)
    for j, (pj, tj) in enumerate(parts):
        if pj == "I":
            start[j] = -np.inf
            for i, (pi, ti) in enumerate(parts):
                if not (pi in "BI" and ti == tj):
                    trans[i, j] = -np.inf
    return trans, start


def viterbi(logprobs: np.ndarray, trans: np.ndarray, start: np.ndarray) -> list[int]:
    """Most probable tag path that obeys the transition constraints."""
    n = logprobs.shape[0]
    if n == 0:
        return []
    score = logprobs[0] + start
    back = np.zeros((n, logprobs.shape[1]), dtype=np.int64)
    for i in range(1, n):
        cand = score[:, None] + trans
        back[i] = cand.argmax(0)
        score = cand.max(0) + logprobs[i]
    path = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class TorchEngine:
    """Runs a token-classification model with PyTorch (bf16 autocast where the CPU or GPU supports it)."""

    name = "torch"

    def __init__(self, model, bf16: bool = False):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.bf16 = bf16
        # Padded tokens per forward pass. On 2 AVX2 cores 1,024-token batches ran 1.6x faster than 8,192-token
        # ones (activations stay in cache); GPUs want large batches.
        self.batch_tokens = 1024 if self.device.type == "cpu" else 8192

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        inputs = {k: torch.from_numpy(batch[k]).to(self.device) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(**inputs).logits
        return out.float().cpu().numpy()


def default_threads() -> None:
    """Use every core the process may run on (torch may default to fewer in containers)."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return  # the user chose
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    if torch.get_num_threads() < n:
        torch.set_num_threads(n)


class Tagger:
    """A fine-tuned NER model: ``Tagger.load(DIR)(["some text", ...])`` returns entities per text."""

    def __init__(self, engine, tokenizer, labels: list[str], meta: dict | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.label2id = {t: i for i, t in enumerate(self.labels)}
        self.meta = meta or {}
        cfg = self.meta.get("windows", {})
        self.max_tokens = int(cfg.get("max_tokens", 256))
        self.target_tokens = int(cfg.get("predict_target_tokens", self.max_tokens // 2))
        self.sentence_level = bool(cfg.get("sentence_level", False))
        self.case_signal = bool(self.meta.get("case_signal", False))
        self.batch_tokens = int(getattr(engine, "batch_tokens", 8192))  # the engine may prefer smaller batches
        self._trans, self._start = allowed_transitions(self.labels)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", device: str | None = None) -> "Tagger":
        """Load a nerkit (or any HF token-classification) model directory; backend: auto, torch, onnx, onnx-int8."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise NerkitError(f"{path}: not a model directory (no config.json)")
        meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
        engine = None
        if backend != "torch":
            try:
                from nerkit.export import load_engine
            except ImportError:
                load_engine = None
            if load_engine is not None:
                engine = load_engine(path, backend)
            if engine is None and backend not in ("auto",):
                raise NerkitError(f"{path}: backend {backend!r} is not available for this model (run `nerkit export`)")
        if engine is not None:
            # ONNX Runtime path: no transformers or torch import (seconds and hundreds of MB saved at start-up).
            tokenizer = _word_tokenizer(path, meta)
            labels = _config_labels(path)
        else:
            from transformers import AutoModelForTokenClassification

            default_threads()
            model = AutoModelForTokenClassification.from_pretrained(path, use_safetensors=True)
            if device:
                model.to(device)
            engine = TorchEngine(model, bf16=_bf16_inference_ok(model))
            tokenizer = None
            labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(engine, tokenizer, labels, meta)

    # -- core: documents in, per-word log-probabilities out -------------------------------------------------
    def _word_logprobs(self, docs: Sequence[Document]) -> list[np.ndarray]:
        """Per document, a (words x labels) array of log-probabilities, words in order across its sentences."""
        encoded = align.encode_documents(docs, self.tokenizer, None)
        windows = align.make_windows(encoded, self.max_tokens, self.target_tokens, self.sentence_level)
        tok = self.tokenizer
        feats = [align.window_feature(encoded[w.doc], w, tok.cls_token_id, tok.sep_token_id, self.case_signal)
                 for w in windows]
        out = [np.empty((len(e.pieces), len(self.labels))) for e in encoded]
        lengths = [len(f.input_ids) for f in feats]
        for batch in align.length_grouped_batches(lengths, self.batch_tokens, None):
            b = align.collate([feats[i] for i in batch], tok.pad_token_id)
            lp = log_softmax(self.engine.logits(b).astype(np.float64))
            for row, i in enumerate(batch):
                w, f = windows[i], feats[i]
                out[w.doc][w.tgt_start:w.tgt_start + len(f.word_positions)] = lp[row, f.word_positions]
        return out

    def _decode(self, lp: np.ndarray) -> tuple[list[str], np.ndarray]:
        if not len(lp):
            return [], np.zeros(0)
        path = lp.argmax(-1)
        # The unconstrained best path is also the constrained one whenever it is valid IOB2 (almost always).
        if np.isfinite(self._start[path[0]]) and np.isfinite(self._trans[path[:-1], path[1:]]).all():
            path = path.tolist()
        else:
            path = viterbi(lp, self._trans, self._start)
        return [self.labels[i] for i in path], np.exp(lp[np.arange(len(path)), path])

    def tag_documents(self, docs: Sequence[Document]) -> list[list[list[str]]]:
        """Predicted IOB2 tags for every sentence of every document (document context used)."""
        result = []
        for doc, lps in zip(docs, self._word_logprobs(docs)):
            sents, k = [], 0
            for s in doc.sentences:
                tags, _ = self._decode(lps[k:k + len(s.words)])
                sents.append(tags)
                k += len(s.words)
            result.append(sents)
        return result

    def word_probs(self, texts: Sequence[str]) -> list[tuple[list[str], list[tuple[int, int]], np.ndarray]]:
        """Words, their character offsets and their probability over ``labels``, per text."""
        docs = [self._text_doc(t, i) for i, t in enumerate(texts)]
        out = []
        for doc, lps in zip(docs, self._word_logprobs(docs)):
            s = doc.sentences[0]
            probs = np.exp(lps)
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
        docs = [self._text_doc(t, i) for i, t in enumerate(texts)]
        result = []
        for doc, lps in zip(docs, self._word_logprobs(docs)):
            s = doc.sentences[0]
            tags, probs = self._decode(lps)
            ents = []
            for label, a, b in chunks(tags):
                start, end = s.offsets[a][0], s.offsets[b - 1][1]
                ents.append(Entity(start, end, label, round(float(probs[a:b].mean()), 4), s.text[start:end]))
            result.append(ents)
        return result

    def __call__(self, texts: str | Sequence[str]) -> list[list[Entity]] | list[Entity]:
        if isinstance(texts, str):
            return self.predict([texts])[0]
        return self.predict(list(texts))


def _word_tokenizer(path: Path, meta: dict):
    """The torch-free tokenizer ``nerkit export`` saved (see align.WordTokenizer), or None."""
    spec = (meta.get("onnx") or {}).get("word_tokenizer")
    if not spec or not (path / spec["file"]).is_file():
        return None
    try:
        return align.WordTokenizer.from_file(path / spec["file"], spec)
    except ImportError:
        return None


def _config_labels(path: Path) -> list[str]:
    """Labels in id order from a model directory's config.json (without importing transformers)."""
    try:
        id2label = json.loads((path / "config.json").read_text(encoding="utf-8"))["id2label"]
        return [id2label[str(i)] for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NerkitError(f"{path / 'config.json'}: no usable id2label ({exc})") from None


def _bf16_inference_ok(model) -> bool:
    """bf16 autocast only where the hardware has native bf16 matrix units (else it is slower than fp32)."""
    import torch

    dev = next(model.parameters()).device
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if os.environ.get("NERKIT_BF16", "").lower() in ("0", "off", "no"):
        return False
    return cpu_has_bf16()


def cpu_has_bf16() -> bool:
    """True if this CPU has AVX512-BF16 or AMX (fast bf16 matmuls in oneDNN)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def read_texts(path: str | os.PathLike) -> list[str]:
    """Texts from a .txt file (one per non-empty line) or a .jsonl file (a "text" field per line)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, "no such file")
    texts = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(p, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if p.suffix in (".jsonl", ".json"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(p, n, f"invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(p, n, 'expected an object with a string "text" field')
            texts.append(rec["text"])
        else:
            texts.append(line)
    return texts

