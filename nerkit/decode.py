"""Model over windows: documents in, per-word log-probabilities and constrained IOB2 tags out.

This is the core that training (dev evaluation) and inference share: ``WindowTagger`` cuts documents into
the windows the model was trained on (``align``), runs an engine (``engines``) on length-grouped batches and
decodes each sentence with the IOB2 constraints. ``predict.Tagger`` adds raw text and entities on top.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Generator, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from nerkit import align
from nerkit.iob import allowed_transitions, best_path, unlayered_labels
from nerkit.scheme import chunks
from nerkit.spans import SpanScorer, span_layout
from nerkit.layers import assign_layers
from nerkit.types import Document, Span


_T = TypeVar("_T")


def run_steps(steps: Generator[int, None, _T]) -> _T:
    """Run a stepwise computation (a generator that yields work left and returns its result) to the end."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, computed stably."""
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class WindowTagger:
    """Tags documents with a model: windows as in training, batches as the engine prefers, IOB2-valid tags out.

    ``windows`` is the model directory's window settings (``max_tokens``, ``predict_target_tokens``,
    ``sentence_level``); ``case_signal`` says whether the model reads word casing from token_type_ids.
    """

    def __init__(self, engine, tokenizer, labels: Sequence[str], windows: Mapping | None = None,
                 case_signal: bool = False, span_head: SpanScorer | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        # A nested model's head holds several tag layers (``iob.layered_labels``), decoded one by one, and may end
        # in a span head's feature columns (``spans``), which then decide the entities.
        layout = span_layout(labels)
        tags, self.span_dim = layout.tags, layout.dim
        self.span_cols = layout.columns  # the columns after the tags, which the span head reads
        self.labels, self.layers = unlayered_labels(tags)
        self.span_head = span_head
        if self.span_dim and (span_head is None or span_head.columns != self.span_cols):
            raise ValueError(f"the model's head has {self.span_cols} span-feature columns but "
                             f"{'no span head' if span_head is None else f'a span head reading {span_head.columns}'}")
        self.label2id = {t: i for i, t in enumerate(self.labels)}
        cfg = windows or {}
        self.max_tokens = int(cfg.get("max_tokens", 256))
        self.target_tokens = int(cfg.get("predict_target_tokens", self.max_tokens // 2))
        self.sentence_level = bool(cfg.get("sentence_level", False))
        self.case_signal = bool(case_signal)
        self.batch_tokens = int(getattr(engine, "batch_tokens", 8192))  # the engine may prefer smaller batches
        self._trans, self._start = allowed_transitions(self.labels)

    def _word_logprobs(self, docs: Sequence[Document]) -> list[np.ndarray]:
        """Per document, a (words x labels) array of log-probabilities, words in order across its sentences."""
        memo = getattr(self, "_memo", None)
        if memo is None:
            return run_steps(self._word_logprobs_steps(docs))
        # The network reads the words, sentence by sentence, document by document: the same words, the same outputs
        # (a copy of the list, or one re-read from the same texts, included).
        key = tuple(tuple(tuple(s.words) for s in d.sentences) for d in docs)
        if key not in memo:
            memo[key] = run_steps(self._word_logprobs_steps(docs))
        return memo[key]

    @contextmanager
    def reusing(self) -> Iterator[None]:
        """Within the block, tagging documents with the same words again runs the network once: decoders and
        thresholds compared on dev. (Keyed by the list's identity until session 15, it never hit: ``evaluate``
        tags a copy, and a re-read one where reading split words at entity edges; tos-clauses' end-of-training
        choices took 607.5 s instead of 35.9 s, bench/nested_choices.py.) A block inside another reuses the outer's."""
        if getattr(self, "_memo", None) is not None:
            yield
            return
        self._memo: dict | None = {}
        try:
            yield
        finally:
            self._memo = None

    def _word_logprobs_steps(self, docs: Sequence[Document]) -> Generator[int, None, list[np.ndarray]]:
        """``_word_logprobs`` one model call at a time: yields the padded tokens left before each call."""
        encoded = align.encode_documents(docs, self.tokenizer, None)
        windows = align.make_windows(encoded, self.max_tokens, self.target_tokens, self.sentence_level)
        tok = self.tokenizer
        feats = [align.window_inputs(encoded[w.doc], w, tok.cls_token_id, tok.sep_token_id, self.case_signal)
                 for w in windows]
        n_tags = self.layers * len(self.labels)
        # A span model's words keep their tag log-probabilities flat, then their span features (``tag_part``).
        shape = ((n_tags + self.span_cols,) if self.span_dim else
                 (len(self.labels),) if self.layers == 1 else (self.layers, len(self.labels)))
        out = [np.empty((len(e.pieces), *shape)) for e in encoded]
        lengths = [len(f.input_ids) for f in feats]
        batches = list(align.length_grouped_batches(lengths, self.batch_tokens, None))
        sizes = [len(b) * max(lengths[i] for i in b) for b in batches]
        left = sum(sizes)
        for batch, size in zip(batches, sizes):
            yield left
            left -= size
            b = align.collate([feats[i] for i in batch], tok.pad_token_id)
            logits = self.engine.logits(b).astype(np.float64)
            if self.span_dim:
                tag_lp = log_softmax(logits[..., :n_tags].reshape(*logits.shape[:2], self.layers, len(self.labels)))
                lp = np.concatenate([tag_lp.reshape(*logits.shape[:2], n_tags), logits[..., n_tags:]], -1)
            elif self.layers > 1:  # (batch, tokens, layers x classes) -> one distribution per layer
                logits = logits.reshape(*logits.shape[:2], self.layers, len(self.labels))
            if not self.span_dim:
                lp = log_softmax(logits)
            for row, i in enumerate(batch):
                w, f = windows[i], feats[i]
                out[w.doc][w.tgt_start:w.tgt_start + len(f.word_positions)] = lp[row, f.word_positions]
        return out

    def _decode(self, lp: np.ndarray) -> tuple[list[str], np.ndarray]:
        path = best_path(lp, self._trans, self._start)
        return [self.labels[i] for i in path], np.exp(lp[np.arange(len(path)), path]) if path else np.zeros(0)

    def tag_part(self, lp: np.ndarray) -> np.ndarray:
        """The tag log-probabilities of ``_word_logprobs``' rows: (words x labels), or (words x layers x labels)."""
        if not self.span_dim:
            return lp
        part = lp[:, :self.layers * len(self.labels)]
        return part.reshape(len(lp), self.layers, len(self.labels)) if self.layers > 1 else part

    def span_entities(self, lp: np.ndarray) -> list[tuple[str, int, int, float]]:
        """A span model's entities of one sentence from the span head (``spans.SpanScorer.decode``), with the first
        tag layer's entities where its decoder keeps them."""
        return self.span_entities_many([lp])[0]

    def span_entities_many(self, lps: Sequence[np.ndarray]) -> list[list[tuple[str, int, int, float]]]:
        """``span_entities`` of many sentences, their spans scored together (``SpanScorer.decode_many``)."""
        tagged = None
        if self.span_head.decoder == "tags+spans":
            tagged = []
            for lp in lps:
                part = self.tag_part(lp)
                tags, probs = self._decode(part[:, 0] if self.layers > 1 else part)
                tagged.append([(label, a, b, float(probs[a:b].mean())) for label, a, b in chunks(tags)])
        cols = self.layers * len(self.labels)
        return self.span_head.decode_many([lp[:, cols:] for lp in lps], tagged)

    def decode_layers(self, lp: np.ndarray) -> list[tuple[list[str], np.ndarray]]:
        """Tags and their probabilities of each tag layer of one sentence (one layer for a flat model; a span
        model's entities laid on as many layers as they need, outermost first)."""
        if self.span_dim:
            return self._span_layers(lp)
        if self.layers == 1:
            return [self._decode(lp)]
        return [self._decode(lp[:, k]) for k in range(self.layers)]

    def _span_layers(self, lp: np.ndarray, ents: list[tuple[str, int, int, float]] | None = None
                     ) -> list[tuple[list[str], np.ndarray]]:
        ents = self.span_entities(lp) if ents is None else ents
        n = len(lp)
        out = []
        for layer in assign_layers([Span(a, b, label) for label, a, b, _ in ents]) or [[]]:
            tags, probs = ["O"] * n, np.zeros(n)
            for sp in layer:
                tags[sp.start:sp.end] = [f"B-{sp.label}"] + [f"I-{sp.label}"] * (sp.end - sp.start - 1)
            out.append((tags, probs))
        score = {(label, a, b): p for label, a, b, p in ents}
        for tags, probs in out:  # each word's probability: that of the entity it lies in on this layer
            for label, a, b in chunks(tags):
                probs[a:b] = score[(label, a, b)]
        return out

    def tag_documents(self, docs: Sequence[Document]) -> list[list[list[str]]]:
        """Predicted IOB2 tags for every sentence of every document (document context used; layer 0 of a nested
        model: ``tag_documents_layered`` gives every layer)."""
        return [[layers[0] for layers in doc] for doc in self.tag_documents_layered(docs)]

    def tag_documents_layered(self, docs: Sequence[Document]) -> list[list[list[list[str]]]]:
        """Predicted IOB2 tag layers for every sentence of every document (one layer for a flat model)."""
        rows, sizes = [], []  # every sentence of every document, in order
        for doc, lps in zip(docs, self._word_logprobs(docs)):
            k = 0
            for s in doc.sentences:
                rows.append(lps[k:k + len(s.words)])
                k += len(s.words)
            sizes.append(len(doc.sentences))
        if self.span_dim:  # every sentence's spans scored together
            layers = [[tags for tags, _ in self._span_layers(lp, ents)]
                      for lp, ents in zip(rows, self.span_entities_many(rows))]
        else:
            layers = [[tags for tags, _ in self.decode_layers(lp)] for lp in rows]
        result, k = [], 0
        for n in sizes:
            result.append(layers[k:k + n])
            k += n
        return result

    def entities(self, lp: np.ndarray) -> list[tuple[str, int, int, float]]:
        """Entities of one sentence as ``(label, first word, last word + 1, score)``, every layer, sorted by
        position (outer before inner); an entity that two layers both find is given once, with its best score."""
        return self.entities_many([lp])[0]

    def entities_many(self, lps: Sequence[np.ndarray]) -> list[list[tuple[str, int, int, float]]]:
        """``entities`` of many sentences (a span model scores their spans together: ``SpanScorer.decode_many``)."""
        if self.span_dim:
            return self.span_entities_many(lps)
        return [self._layer_entities(lp) for lp in lps]

    def _layer_entities(self, lp: np.ndarray) -> list[tuple[str, int, int, float]]:
        found: dict[tuple[str, int, int], float] = {}
        for tags, probs in self.decode_layers(lp):
            for label, a, b in chunks(tags):
                score = float(probs[a:b].mean())
                found[(label, a, b)] = max(score, found.get((label, a, b), 0.0))
        return sorted(((lab, a, b, sc) for (lab, a, b), sc in found.items()), key=lambda e: (e[1], -e[2], e[0]))
