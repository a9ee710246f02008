import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nerkit.data import load, read_conll
from nerkit.evaluation import evaluate, score
from nerkit.decode import log_softmax
from nerkit.iob import allowed_transitions, viterbi
from nerkit.predict import Tagger
from nerkit.scheme import LabelScheme, validate

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(0, 10_000))
def test_viterbi_never_emits_invalid_sequences(n, seed):
    rng = np.random.default_rng(seed)
    trans, start = allowed_transitions(LABELS)
    path = viterbi(rng.normal(size=(n, len(LABELS))) * 5, trans, start)
    assert not validate([[LABELS[i] for i in path]], LabelScheme.IOB2)


def test_viterbi_matches_argmax_when_it_is_valid():
    trans, start = allowed_transitions(LABELS)
    lp = np.log(np.array([[0.1, 0.8, 0.05, 0.03, 0.02], [0.1, 0.05, 0.8, 0.03, 0.02], [0.9, 0.05, 0.02, 0.02, 0.01]]))
    assert viterbi(lp, trans, start) == [1, 2, 0]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 25), st.integers(0, 10_000), st.floats(0.1, 8.0))
def test_decode_is_the_constrained_best_path(n, seed, scale):
    """The argmax shortcut in Tagger._decode gives exactly Viterbi's path and that path's probabilities."""
    rng = np.random.default_rng(seed)
    lp = log_softmax(rng.normal(size=(n, len(LABELS))) * scale)
    tagger = Tagger(None, None, LABELS)
    tags, probs = tagger._decode(lp)
    trans, start = allowed_transitions(LABELS)
    path = viterbi(lp, trans, start)
    assert tags == [LABELS[i] for i in path]
    assert np.allclose(probs, np.exp(lp[np.arange(n), path]))


TEXTS = [
    "John Smith lives in Paris.",
    "  Mary   Jones\tvisited  London ,  today!  ",
    "Zoë Dvořák met 北京 visitors 🙂 in Zürich — naïvely.",
    "he\u200bsaid",
    "",
    "   ",
    " ".join(["john smith visited paris and london"] * 120),  # ~600 words: longer than any window
]


def test_offsets_are_exact_for_every_entity(tiny_model):
    tagger = Tagger.load(tiny_model, backend="torch")
    results = tagger(TEXTS)
    assert len(results) == len(TEXTS)
    n = 0
    for text, ents in zip(TEXTS, results):
        for e in ents:
            assert text[e.start:e.end] == e.text and e.text.strip() == e.text and e.text
            assert e.label in ("PER", "LOC") and 0 <= e.score <= 1
            n += 1
    assert n > 0  # the random head predicts something, so the checks above ran


def test_long_text_is_predicted_in_full(tiny_model):
    tagger = Tagger.load(tiny_model, backend="torch")
    text = TEXTS[-1]
    words, offsets, probs = tagger.word_probs([text])[0]
    assert len(words) == 720 and probs.shape == (720, len(tagger.labels))
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    # Entities are predicted up to the very end of a long text (nothing truncated).
    ents = tagger(text)
    assert ents and max(e.end for e in ents) > offsets[-10][0]
    assert all(text[e.start:e.end] == e.text for e in ents)


def test_a_text_longer_than_the_model_gets_no_indexing_warning(tiny_model):
    # transformers warns that a sequence over model_max_length "will result in indexing errors"; nerkit windows it.
    import logging

    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    log = logging.getLogger("transformers")
    log.addHandler(handler)
    try:
        tagger = Tagger.load(tiny_model, backend="torch")
        tagger.tokenizer.model_max_length = 64
        tagger.tokenizer.deprecation_warnings.clear()  # it warns once per tokenizer
        assert tagger(TEXTS[-1])
        assert not [m for m in said if "indexing errors" in m]
        tagger.tokenizer(["w"] * 100, is_split_into_words=True)  # the check above can fail: the warning is there
        assert [m for m in said if "indexing errors" in m]
    finally:
        log.removeHandler(handler)


def test_evaluate_equals_seqeval_and_support_equals_gold(tiny_model, tmp_path):
    from seqeval.metrics import f1_score

    p = tmp_path / "gold.conll"
    rows = []
    for i in range(40):
        rows += ["-DOCSTART- O", ""] if i % 10 == 0 else []
        rows += ["john B-PER", "smith I-PER", "visited O", "paris B-LOC", ". O", ""]
        rows += [w + " O" for w in ("he", "met", "mary")] + ["jones B-PER", ""]
    rows += [f"w{i} O" for i in range(500)] + ["london B-LOC", ""]  # one sentence longer than any window
    p.write_text("\n".join(rows) + "\n")
    docs = read_conll(p)
    tagger = Tagger.load(tiny_model, backend="torch")
    report = evaluate(tagger, load(p))
    pred = [s for d in tagger.tag_documents(docs) for s in d]
    gold = [s.tags for d in docs for s in d.sentences]
    assert [len(x) for x in pred] == [len(x) for x in gold]
    assert report["f1"] == pytest.approx(f1_score(gold, pred))
    assert report["per_type"]["PER"]["support"] == 80 and report["per_type"]["LOC"]["support"] == 41
    assert report["words"] == sum(len(g) for g in gold)


def test_error_breakdown_kinds():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "O", "O", "B-ORG", "O", "O", "B-LOC", "B-PER"]]
    e = score(gold, pred)["errors"]["total"]
    assert e == {"missed": 1, "spurious": 1, "wrong_type": 1, "wrong_boundary": 1, "wrong_type_and_boundary": 0}
