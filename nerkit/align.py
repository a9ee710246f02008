"""Word tags onto subwords, and documents into model-sized windows that never drop a word.

A document's words are laid end to end as subword pieces. Each window holds a run of *target* words
(whose predictions it owns and whose labels it trains on) plus neighbouring words as context on both sides,
up to the model's length. Every word is the target of exactly one window, so no word is ever lost to
truncation, and predictions merge back without voting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Sequence

import numpy as np

from nerkit.types import Document
from nerkit.words import case_type, tokenizer_word

IGNORE = -100
MAX_PIECES_PER_WORD = 24  # a pathological "word" (a URL, a base64 blob) keeps its first pieces only
CASE_TYPES = 4  # token_type ids used for the casing signal: 0 lower/none, 1 Title, 2 UPPER, 3 other mixed


@dataclass
class EncodedDoc:
    """A document as subword pieces per word, with gold tag ids (or -100) and sentence starts."""

    pieces: list[list[int]]
    tag_ids: list[int]
    cases: list[int]
    sentence_starts: list[int]  # index of the first word of each sentence (non-empty sentences only)
    layer_tag_ids: list[list[int]] = field(default_factory=list)  # nested models: tag ids of layers 1.. per word


@dataclass
class Window:
    """One model input: words ``[ctx_start, ctx_end)`` of a document, owning ``[tgt_start, tgt_end)``."""

    doc: int
    ctx_start: int
    tgt_start: int
    tgt_end: int
    ctx_end: int


class WordTokenizer:
    """What nerkit needs of a Hugging Face fast tokenizer, run directly on the ``tokenizers`` library.

    Importing transformers (and with it torch) costs seconds and hundreds of MB at start-up; ``nerkit export``
    saves the exact backend tokenizer transformers built (checked equal on probe words), so the ONNX path
    needs neither. Only pre-split words are supported, without special tokens: that is how nerkit calls it.
    """

    def __init__(self, tokenizer, cls_token_id: int, sep_token_id: int, pad_token_id: int, unk_token_id: int | None):
        tokenizer.no_truncation()  # never cut a text short, whatever the saved file says
        tokenizer.no_padding()
        self.backend = tokenizer
        self.cls_token_id, self.sep_token_id = cls_token_id, sep_token_id
        self.pad_token_id, self.unk_token_id = pad_token_id, unk_token_id

    @classmethod
    def from_file(cls, path, special: dict) -> "WordTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), special["cls_token_id"], special["sep_token_id"],
                   special["pad_token_id"], special.get("unk_token_id"))

    def __call__(self, words: Sequence[Sequence[str]], is_split_into_words: bool = True,
                 add_special_tokens: bool = False, verbose: bool = False) -> "_Encodings":
        if not is_split_into_words or add_special_tokens:
            raise ValueError("WordTokenizer encodes pre-split words without special tokens only")
        return _Encodings(self.backend.encode_batch([list(w) for w in words], is_pretokenized=True,
                                                    add_special_tokens=False))


class _Encodings:
    """``tokenizer(...)``'s result as far as encode_documents reads it: ``["input_ids"][k]`` and ``word_ids(k)``."""

    def __init__(self, encodings):
        self.encodings = encodings
        self.input_ids = [e.ids for e in encodings]

    def __getitem__(self, key: str) -> list[list[int]]:
        if key != "input_ids":
            raise KeyError(key)
        return self.input_ids

    def word_ids(self, k: int) -> list[int | None]:
        return self.encodings[k].word_ids


def encode_documents(docs: Sequence[Document], tokenizer, label2id: dict[str, int] | None,
                     layers: int = 1) -> list[EncodedDoc]:
    """Tokenize every word of every document into subword ids (one batched call to the fast tokenizer); with
    ``label2id``, the gold tag ids of ``layers`` tag layers (entities on deeper layers are left out: the caller
    counts them)."""
    flat_words: list[list[str]] = []
    for doc in docs:
        for sent in doc.sentences:
            if sent.words:
                flat_words.append([tokenizer_word(w) for w in sent.words])  # invisible characters dropped
    # verbose=False: a sentence longer than the model's 512 positions is cut into windows below, so transformers'
    # "will result in indexing errors" warning (printed by `nerkit predict` on a long text) is wrong here.
    enc = (tokenizer(flat_words, is_split_into_words=True, add_special_tokens=False, verbose=False)
           if flat_words else None)
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    out, k = [], 0
    for doc in docs:
        pieces: list[list[int]] = []
        tags: list[int] = []
        deeper: list[list[int]] = [[] for _ in range(layers - 1)]
        cases: list[int] = []
        starts: list[int] = []
        for si, sent in enumerate(doc.sentences):
            if not sent.words:
                continue
            ids, wids = enc["input_ids"][k], enc.word_ids(k)
            k += 1
            per_word: list[list[int]] = [[] for _ in sent.words]
            for tid, w in zip(ids, wids):
                if w is not None:
                    per_word[w].append(tid)
            starts.append(len(pieces))
            for wi, (word, p) in enumerate(zip(sent.words, per_word)):
                # A word the tokenizer erases (control or zero-width characters) still needs a slot to be predicted.
                pieces.append(p[:MAX_PIECES_PER_WORD] if len(p) > MAX_PIECES_PER_WORD else p or [unk])
                cases.append(case_type(word))
                if label2id is not None and sent.tags is not None:
                    tags.append(label2id.get(sent.tags[wi], IGNORE))
                    for layer, ids_k in enumerate(deeper):
                        ids_k.append(label2id.get(sent.layers[layer][wi], IGNORE) if layer < len(sent.layers)
                                     else label2id["O"])
                else:
                    tags.append(IGNORE)
                    for ids_k in deeper:
                        ids_k.append(IGNORE)
        out.append(EncodedDoc(pieces, tags, cases, starts, deeper))
    return out


def plan_windows(lengths: Sequence[int], sentence_starts: Sequence[int], max_tokens: int,
                 target_tokens: int, fill_context: bool = True,
                 inside: Sequence[bool] | None = None) -> list[tuple[int, int, int, int]]:
    """Cut a document into windows: pack whole sentences as targets, split over-long ones, add context.

    ``lengths`` are subword counts per word; ``max_tokens`` excludes the special tokens. Returns
    ``(ctx_start, tgt_start, tgt_end, ctx_end)`` word ranges; the target ranges tile the document exactly.
    Without ``fill_context`` a window holds its targets only (training: packed sentences are their own context).
    An over-long sentence is cut into targets of half a window when context is filled, so every piece sees a
    quarter window of text on each side (a long clause is never read from its cut edge alone); ``inside`` (training)
    marks words inside a gold entity, where a cut is moved back to the entity's start when the piece allows it.
    """
    n = len(lengths)
    target_tokens = max(1, min(target_tokens, max_tokens))
    split_tokens = max(1, min(target_tokens, max_tokens // 2)) if fill_context else target_tokens
    bounds = list(sentence_starts) + [n]
    # 1. Target groups: consecutive whole sentences up to the target budget; long sentences cut at words.
    groups: list[tuple[int, int]] = []
    cur_start, cur_len = None, 0
    for s, e in zip(bounds[:-1], bounds[1:]):
        slen = sum(lengths[s:e])
        if cur_start is not None and cur_len + slen <= target_tokens:
            cur_len += slen
            continue
        if cur_start is not None:
            groups.append((cur_start, s))
        if slen <= target_tokens:
            cur_start, cur_len = s, slen
            continue
        cur_start, cur_len = None, 0
        a, used = s, 0
        for i in range(s, e):
            if used and used + lengths[i] > split_tokens:
                cut = i
                while inside is not None and inside[cut] and cut - 1 > a and sum(lengths[cut - 1:i + 1]) <= split_tokens:
                    cut -= 1  # back to the entity's first word: the entity stays whole in the next piece
                if inside is not None and inside[cut]:
                    cut = i  # an entity longer than a piece: cut where the piece is full, as without entities
                groups.append((a, cut))
                a, used = cut, sum(lengths[cut:i])
            used += lengths[i]
        cur_start, cur_len = a, used
    if cur_start is not None:
        groups.append((cur_start, n))
    # 2. Context: grow each group to the left and right alternately while it fits.
    windows = []
    for ts, te in groups:
        used = sum(lengths[ts:te])
        cs, ce = ts, te
        grow = fill_context
        while grow:
            grow = False
            if ce < n and used + lengths[ce] <= max_tokens:
                used += lengths[ce]
                ce += 1
                grow = True
            if cs > 0 and used + lengths[cs - 1] <= max_tokens:
                cs -= 1
                used += lengths[cs]
                grow = True
        windows.append((cs, ts, te, ce))
    return windows


def make_windows(encoded: Sequence[EncodedDoc], max_tokens: int, target_tokens: int,
                 sentence_level: bool = False, fill_context: bool = True,
                 keep_entities: dict[int, bool] | None = None) -> list[Window]:
    """Windows for every encoded document (``max_tokens`` counts the two special tokens).

    ``sentence_level`` windows each sentence alone (no document context), as the classic recipe does,
    still splitting a sentence that is longer than a window.
    """
    inner = max_tokens - 2
    out = []
    for d, doc in enumerate(encoded):
        lengths = [len(p) for p in doc.pieces]
        bounds = list(doc.sentence_starts) + [len(lengths)]
        parts = zip(bounds[:-1], bounds[1:]) if sentence_level else [(0, len(lengths))]
        for a, b in parts:
            starts = [s - a for s in doc.sentence_starts if a <= s < b]
            inside = None
            if keep_entities is not None:  # training: tag ids that continue an entity (I-) on any layer
                inside = [any(keep_entities.get(tags[wi], False) for tags in (doc.tag_ids, *doc.layer_tag_ids))
                          for wi in range(a, b)]
            for cs, ts, te, ce in plan_windows(lengths[a:b], starts, inner, target_tokens, fill_context, inside):
                out.append(Window(d, a + cs, a + ts, a + te, a + ce))
    return out


@dataclass
class Feature:
    """Model inputs of one window, with labels and the position of each target word's first piece."""

    input_ids: list[int]
    token_type_ids: list[int]
    labels: list[int]
    word_positions: list[int]  # token index of the first piece of each target word, in order
    layer_labels: list[list[int]] = field(default_factory=list)  # nested models: labels of layers 1.., per token
    # A span head's training targets: gold entities (first target word, last + 1, type id) and the sentence of each
    # target word (spans never cross sentences: pairs across them are not scored).
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    sentence_ids: list[int] = field(default_factory=list)
    # Pairs (first target word, last + 1, type id or -1 for every type) left out of the span loss: inside a gold
    # entity, unannotated here, their words annotated as an inner entity elsewhere in the training data
    # (train._mark_unsure); of a gold span's type and near it, the same long entity with other edges (_mark_near).
    unsure: list[tuple[int, int, int]] = field(default_factory=list)


def window_inputs(doc: EncodedDoc, w: Window, cls_id: int, sep_id: int, case_signal: bool) -> Feature:
    """``window_feature`` of a document without labels (inference): the same input ids, casing type ids and target
    positions, its labels all -100, built without a word-by-word loop (a fifth of the time)."""
    pieces = doc.pieces[w.ctx_start:w.ctx_end]
    sizes = [len(p) for p in pieces]
    ids = [cls_id, *chain.from_iterable(pieces), sep_id]
    if case_signal:
        types = [0, *chain.from_iterable([c] * k for c, k in zip(doc.cases[w.ctx_start:w.ctx_end], sizes)), 0]
    else:
        types = [0] * len(ids)
    firsts = list(accumulate(sizes, initial=1))  # each word's first piece, after [CLS]
    positions = firsts[w.tgt_start - w.ctx_start:w.tgt_end - w.ctx_start]
    return Feature(ids, types, [IGNORE] * len(ids), positions, [[IGNORE] * len(ids) for _ in doc.layer_tag_ids])


def window_feature(doc: EncodedDoc, w: Window, cls_id: int, sep_id: int, case_signal: bool,
                   label_all_subwords: bool = False, continuation: dict[int, int] | None = None) -> Feature:
    """Build a window's input ids, casing type ids and labels (targets only; context words get -100)."""
    ids, types, positions = [cls_id], [0], []
    labels = [[IGNORE] for _ in range(1 + len(doc.layer_tag_ids))]
    for wi in range(w.ctx_start, w.ctx_end):
        p = doc.pieces[wi]
        target = w.tgt_start <= wi < w.tgt_end
        if target:
            positions.append(len(ids))
        ids.extend(p)
        types.extend([doc.cases[wi] if case_signal else 0] * len(p))
        for layer, tag_ids in zip(labels, [doc.tag_ids, *doc.layer_tag_ids]):
            tag = tag_ids[wi] if target else IGNORE
            rest = IGNORE
            if target and label_all_subwords and tag != IGNORE:
                rest = continuation.get(tag, tag) if continuation else tag
            layer.append(tag)
            layer.extend([rest] * (len(p) - 1))
    ids.append(sep_id)
    types.append(0)
    for layer in labels:
        layer.append(IGNORE)
    return Feature(ids, types, labels[0], positions, labels[1:])


@dataclass
class TrainingWindows:
    """The training windows as model inputs, and the window settings the model directory records."""

    features: list[Feature]
    lengths: list[int]
    meta: dict

    def with_entities(self, outside: int = 0) -> np.ndarray:
        """Per window: whether any of its labels (any layer) is an entity tag (not ``outside``, the O id)."""
        return np.asarray([any(t not in (outside, IGNORE) for layer in (f.labels, *f.layer_labels) for t in layer)
                           for f in self.features], dtype=bool)

    def labelled(self, weights: np.ndarray | None) -> np.ndarray:
        """Per window: labelled tokens (or their summed class weights): what the loss is averaged over."""
        out = np.zeros(len(self.features))
        for i, f in enumerate(self.features):
            tags = np.asarray([f.labels, *f.layer_labels])
            tags = tags[tags != IGNORE]
            out[i] = len(tags) if weights is None else float(weights[tags].sum())
        return out


def length_grouped_batches(lengths: Sequence[int], batch_tokens: int, rng: np.random.Generator | None,
                           pool: int = 64) -> list[list[int]]:
    """Batches of indices whose padded size stays under ``batch_tokens``; similar lengths share a batch.

    With ``rng``, indices are shuffled, sorted by length within pools of ``pool`` x batch, and batch
    order is shuffled (randomness for training, little padding); without it, order is by length.
    """
    order = np.arange(len(lengths))
    if rng is not None:
        rng.shuffle(order)
        chunk = max(1, pool * max(1, batch_tokens // max(1, int(np.mean(lengths)) if len(lengths) else 1)))
        parts = [sorted(order[i:i + chunk], key=lambda j: -lengths[j]) for i in range(0, len(order), chunk)]
        order = [j for part in parts for j in part]
    else:
        order = sorted(order, key=lambda j: -lengths[j])
    batches, cur, longest = [], [], 0
    for j in order:
        new_longest = max(longest, lengths[j])
        if cur and new_longest * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, new_longest = [], lengths[j]
        cur.append(int(j))
        longest = new_longest
    if cur:
        batches.append(cur)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, np.ndarray]:
    """Pad a batch to its longest window (dynamic padding)."""
    width = max(len(f.input_ids) for f in features)
    n = len(features)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    layers = 1 + len(features[0].layer_labels)
    # A nested model's labels are (batch, tokens, layers); a flat model's stay (batch, tokens).
    labels = np.full((n, width, layers) if layers > 1 else (n, width), IGNORE, dtype=np.int64)
    for i, f in enumerate(features):
        k = len(f.input_ids)
        ids[i, :k] = f.input_ids
        types[i, :k] = f.token_type_ids
        mask[i, :k] = 1
        labels[i, :k] = np.asarray([f.labels, *f.layer_labels]).T if layers > 1 else f.labels
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}
