import numpy as np
from hypothesis import given, settings, strategies as st

from nerkit import align
from nerkit.types import Document, Sentence


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=40), min_size=1, max_size=12),
       st.integers(4, 60), st.data())
def test_windows_tile_every_word_exactly_once(sent_lengths, max_tokens, data):
    lengths = [x for s in sent_lengths for x in s]
    starts = list(np.cumsum([0] + [len(s) for s in sent_lengths[:-1]]))
    max_tokens = max(max_tokens, max(lengths))
    target = data.draw(st.integers(1, max_tokens))
    wins = align.plan_windows(lengths, starts, max_tokens, target)
    covered = []
    for cs, ts, te, ce in wins:
        assert cs <= ts < te <= ce
        assert sum(lengths[cs:ce]) <= max_tokens
        covered.extend(range(ts, te))
    assert covered == list(range(len(lengths)))


def test_whole_sentences_are_packed_and_long_ones_split():
    lengths = [1] * 10 + [1] * 30
    wins = align.plan_windows(lengths, [0, 10], max_tokens=12, target_tokens=12)
    assert wins[0][1:3] == (0, 10)  # the first sentence fits whole
    assert all(te - ts <= 12 for _, ts, te, _ in wins)


class FakeTok:
    """Each word becomes len(word) // 3 + 1 pieces; ids are stable per piece."""
    unk_token_id, cls_token_id, sep_token_id, pad_token_id = 1, 2, 3, 0

    def __call__(self, batch, is_split_into_words, add_special_tokens, verbose=True):
        ids, wids = [], []
        for words in batch:
            i, w = [], []
            for k, word in enumerate(words):
                n = 0 if word in ("", "\u200b") else len(word) // 3 + 1  # nerkit drops invisible characters first
                i += [10 + k] * n
                w += [k] * n
            ids.append(i)
            wids.append(w)

        class Enc(dict):
            def word_ids(self, k):
                return wids[k]
        return Enc(input_ids=ids)


def test_first_subword_labels_and_600_word_sentence_kept_whole():
    words = [f"word{i}" for i in range(600)] + ["\u200b"]
    tags = ["B-PER" if i % 7 == 0 else "O" for i in range(len(words))]
    doc = Document("d", [Sentence(words, tags)])
    label2id = {"O": 0, "B-PER": 1, "I-PER": 2}
    enc = align.encode_documents([doc], FakeTok(), label2id)
    assert len(enc[0].pieces) == 601 and enc[0].pieces[-1] == [1]  # an erased word still gets a slot
    wins = align.make_windows(enc, 64, 62)
    feats = [align.window_feature(enc[0], w, 2, 3, False) for w in wins]
    seen = []
    for w, f in zip(wins, feats):
        assert len(f.input_ids) <= 64
        labelled = [x for x in f.labels if x != align.IGNORE]
        assert labelled == enc[0].tag_ids[w.tgt_start:w.tgt_end]  # one label per target word: its first piece
        seen.extend(range(w.tgt_start, w.tgt_end))
    assert seen == list(range(601))


def test_inference_inputs_are_the_training_features_without_labels():
    """``window_inputs`` (inference) builds what ``window_feature`` builds for an unlabelled document: ids, casing
    types and target positions, over windows with context on both sides, a 90-piece word cut to its first 24."""
    words = [("Word" if i % 3 else "WORD") + "x" * (i % 11) for i in range(300)] + ["y" * 270, "\u200b", "End"]
    docs = [Document("d", [Sentence(words[:40]), Sentence(words[40:])]), Document("e", [Sentence(["Hi", "there"])])]
    enc = align.encode_documents(docs, FakeTok(), None)
    assert len(enc[0].pieces[300]) == align.MAX_PIECES_PER_WORD and enc[0].pieces[301] == [1]
    wins = align.make_windows(enc, 64, 30)
    assert any(w.ctx_start < w.tgt_start for w in wins) and any(w.tgt_end < w.ctx_end for w in wins)
    for case_signal in (False, True):
        for w in wins:
            fast = align.window_inputs(enc[w.doc], w, 2, 3, case_signal)
            assert fast == align.window_feature(enc[w.doc], w, 2, 3, case_signal)
            assert len(fast.word_positions) == w.tgt_end - w.tgt_start


def test_label_all_subwords_uses_inside_tag_for_continuations():
    doc = Document("d", [Sentence(["abcdefgh"], ["B-PER"])])
    enc = align.encode_documents([doc], FakeTok(), {"O": 0, "B-PER": 1, "I-PER": 2})
    w = align.make_windows(enc, 16, 14)[0]
    f = align.window_feature(enc[0], w, 2, 3, False, label_all_subwords=True, continuation={1: 2})
    assert f.labels == [align.IGNORE, 1, 2, 2, align.IGNORE]


def test_sentence_level_windows_do_not_cross_sentences():
    doc = Document("d", [Sentence(["a"] * 5, ["O"] * 5), Sentence(["b"] * 5, ["O"] * 5)])
    enc = align.encode_documents([doc], FakeTok(), {"O": 0})
    wins = align.make_windows(enc, 32, 30, sentence_level=True)
    assert [(w.ctx_start, w.ctx_end) for w in wins] == [(0, 5), (5, 10)]
    wins = align.make_windows(enc, 32, 30)
    assert [(w.ctx_start, w.ctx_end) for w in wins] == [(0, 10)]


def test_case_types():
    assert [align.case_type(w) for w in ["paris", "Paris", "PARIS", "iPhone", "1996", "A"]] == [0, 1, 2, 3, 0, 1]


def test_length_grouped_batches_cover_all_and_respect_budget():
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(5, 120, size=500))
    batches = align.length_grouped_batches(lengths, 1024, rng)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(max(lengths[i] for i in b) * len(b) <= 1024 or len(b) == 1 for b in batches)


def test_long_sentences_are_cut_outside_entities_and_read_with_context():
    from nerkit.align import plan_windows

    lengths = [1] * 20
    # training: a cut would fall inside the entity at words 7..10; it moves back to the entity's first word
    inside = [False] * 20
    for i in range(8, 11):
        inside[i] = True
    wins = plan_windows(lengths, [0], 8, 8, fill_context=False, inside=inside)
    assert [(ts, te) for _, ts, te, _ in wins] == [(0, 7), (7, 15), (15, 20)]
    assert plan_windows(lengths, [0], 8, 8, fill_context=False) == [(0, 0, 8, 8), (8, 8, 16, 16), (16, 16, 20, 20)]
    # an entity longer than a piece is cut where the piece is full
    assert [(ts, te) for _, ts, te, _ in plan_windows(lengths, [0], 4, 4, False, [False] + [True] * 19)][:2] == [(0, 4), (4, 8)]
    # inference: pieces of an over-long sentence are half a window, so each has context on both sides
    wins = plan_windows(lengths, [0], 8, 8)
    assert [(ts, te) for _, ts, te, _ in wins] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20)]
    assert all(ce - cs == 8 for cs, _, _, ce in wins) and wins[2][0] == 6 and wins[2][3] == 14
