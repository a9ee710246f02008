"""A transformers token-classification pipeline that tags text the way nerkit does (copied into model directories).

nerkit models read word casing from ``token_type_ids`` (0 lower, 1 Title, 2 UPPER, 3 mixed); the stock pipeline
passes zeros there and silently loses accuracy (about 26 F1 on CoNLL-2003). This pipeline splits words as nerkit
does, fills the casing ids, predicts each word from its first subword, decodes valid IOB2 sequences and returns
entities with exact character offsets. Load it with
``pipeline("token-classification", model=DIR, trust_remote_code=True)``. Needs only transformers, torch and numpy.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import TokenClassificationPipeline

from .iob import allowed_transitions, best_path, path_entities, unlayered_labels
from .spans import SPAN_FILE, load_span_head, span_layout
from .words import case_type, tokenize, tokenizer_word

MAX_PIECES_PER_WORD = 24  # as nerkit: a pathological "word" (a URL, a base64 blob) keeps its first pieces only


class NerkitTokenClassificationPipeline(TokenClassificationPipeline):
    """Entities as nerkit's Tagger finds them: ``[{"entity_group", "score", "word", "start", "end"}, ...]`` per text.

    ``aggregation_strategy="none"`` gives one entry per tagged word (``entity`` is its IOB2 tag) instead.
    Texts longer than the model's window are tagged in consecutive windows of whole words (nerkit's Tagger also
    adds neighbouring words as context, so tags near window edges of very long texts may differ slightly).
    """

    def _sanitize_parameters(self, aggregation_strategy=None, ignore_labels=None, **kwargs):
        chosen = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
        post = {"words_only": aggregation_strategy is not None and chosen == "none"}
        return {}, {}, post

    def _window_tokens(self) -> int:
        n = int(getattr(self.model.config, "nerkit_max_tokens", 0) or 0)
        limit = getattr(self.model.config, "max_position_embeddings", 512)
        return min(n or limit, limit, 512)

    def preprocess(self, sentence, **kwargs):
        if not isinstance(sentence, str):
            raise ValueError("this pipeline tags untokenized text: give a string (or a list of strings)")
        tok = self.tokenizer
        words, offsets = tokenize(sentence)
        pieces = []
        if words:
            # windowed below: transformers' "longer than the maximum sequence length" warning does not apply
            enc = tok([tokenizer_word(w) for w in words], is_split_into_words=True, add_special_tokens=False,
                      verbose=False)
            pieces = [[] for _ in words]
            for tid, w in zip(enc["input_ids"], enc.word_ids()):
                if w is not None and len(pieces[w]) < MAX_PIECES_PER_WORD:
                    pieces[w].append(tid)
            unk = tok.unk_token_id if tok.unk_token_id is not None else 0
            pieces = [p or [unk] for p in pieces]  # a word the tokenizer erases still gets a slot
        budget = self._window_tokens() - 2
        groups, start, used = [], 0, 0
        for i, p in enumerate(pieces):
            if used and used + len(p) > budget:
                groups.append((start, i))
                start, used = i, 0
            used += len(p)
        groups.append((start, len(words)))
        use_case = bool(getattr(self.model.config, "nerkit_case_signal", True))
        for k, (a, b) in enumerate(groups):
            ids, types, first = [tok.cls_token_id], [0], []
            for i in range(a, b):
                first.append(len(ids))
                ids.extend(pieces[i])
                types.extend([case_type(words[i]) if use_case else 0] * len(pieces[i]))
            ids.append(tok.sep_token_id)
            types.append(0)
            yield {
                "input_ids": torch.tensor([ids]),
                "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                "token_type_ids": torch.tensor([types]),
                "first_pieces": first,
                "words": (words[a:b], offsets[a:b]),
                "sentence": sentence,
                "is_last": k == len(groups) - 1,
            }

    def _forward(self, model_inputs):
        extra = {k: model_inputs.pop(k) for k in ("first_pieces", "words", "sentence", "is_last")}
        logits = self.model(**model_inputs)[0]
        return {"logits": logits, **extra}

    def _span_head(self):
        """A span model's head (``nerkit_spans``), read once from the model directory."""
        if getattr(self, "_span", None) is None:
            import os

            path = os.path.join(str(getattr(self.model, "name_or_path", "") or ""), SPAN_FILE)
            if not os.path.isfile(path):
                raise ValueError(f"this model finds entities with a span head, but {path} is missing")
            self._span = load_span_head(path)
        return self._span

    def postprocess(self, all_outputs, words_only=False, **kwargs):
        layout = span_layout([self.model.config.id2label[i] for i in range(len(self.model.config.id2label))])
        tags, span_dim = layout.tags, layout.dim
        labels, layers = unlayered_labels(tags)
        sentence = all_outputs[0]["sentence"]
        parts, offsets, feats = [], [], []
        for out in all_outputs:
            x = out["logits"][0].float().cpu().numpy().astype(np.float64)[out["first_pieces"]]
            feats.append(x[:, len(tags):])
            x = x[:, :len(tags)].reshape(len(x), layers, len(labels))  # a nested model: one tag layer after another
            x = x - x.max(-1, keepdims=True)
            parts.append(x - np.log(np.exp(x).sum(-1, keepdims=True)))
            offsets += list(out["words"][1])
        lp = np.concatenate(parts) if parts else np.zeros((0, layers, len(labels)))
        trans, start = allowed_transitions(labels)
        decoded = []
        for k in range(layers):
            path = best_path(lp[:, k], trans, start)
            decoded.append(([labels[i] for i in path], np.exp(lp[np.arange(len(path)), k, path]) if path else np.zeros(0)))
        if words_only:
            return [{"entity": t, "score": float(p), "index": i, "word": sentence[a:b], "start": a, "end": b,
                     **({"layer": k} if layers > 1 else {})}
                    for k, (tags, probs) in enumerate(decoded)
                    for i, (t, p, (a, b)) in enumerate(zip(tags, probs, offsets)) if t != "O"]
        found = {}
        if span_dim:  # a span model: the span head decides the entities (as nerkit's Tagger)
            tags0, probs0 = decoded[0]
            tagged = [(label, a, b, float(probs0[a:b].mean())) for label, a, b in path_entities(tags0)]
            ents = self._span_head().decode(np.concatenate(feats), tagged) if offsets else []
            for label, a, b, p in ents:
                found[(offsets[a][0], offsets[b - 1][1], label)] = round(p, 4)
            decoded = []
        for tags, probs in decoded:  # nested entities: every layer's, each once with its best score
            for label, a, b in path_entities(tags):
                s, e = offsets[a][0], offsets[b - 1][1]
                found[(s, e, label)] = max(round(float(probs[a:b].mean()), 4), found.get((s, e, label), 0.0))
        return [{"entity_group": label, "score": score, "word": sentence[s:e], "start": s, "end": e}
                for (s, e, label), score in sorted(found.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2]))]
