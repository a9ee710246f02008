"""Inner entities annotated in one place and left unannotated in another: found, and left out of the span loss."""
import json

import numpy as np
import pytest

from nerkit.layers import inner_occurrences


def test_inner_occurrences_name_where_an_inner_text_is_annotated_and_where_it_is_not():
    items = [(["nf", "kb", "site"], [(0, 3), (0, 2)]),  # "nf kb" annotated inside "nf kb site"
             (["the", "nf", "kb", "gene"], [(1, 4)]),  # inside an entity, left unannotated
             (["nf", "kb"], [(0, 2)]),  # an entity of its own, inside nothing: not counted
             (["nf", "kb", "x"], []),  # outside every entity: not counted
             (["kb", "site"], [(0, 2)])]  # "kb" was never annotated inside an entity: not reported
    assert inner_occurrences(items) == {("nf", "kb"): ([(0, 0, 2)], [(1, 1, 3)])}
    assert inner_occurrences([(["a", "b"], [(0, 2)])]) == {}  # flat data: nothing inner


def test_an_unsure_pair_is_left_out_of_the_span_loss():
    import torch

    from nerkit.align import Feature
    from nerkit.loop import span_loss

    rng = np.random.default_rng(5)
    n, dim, types = 5, 3, 2
    weight = torch.tensor(rng.normal(size=(types, dim + 1, dim + 1)), dtype=torch.float32)

    def loss(unsure, feats, extra=()):
        f = Feature(input_ids=[0] * (n + 2), token_type_ids=[0] * (n + 2), labels=[-100] * (n + 2),
                    word_positions=list(range(1, n + 1)), spans=[(0, 4, 0), (1, 3, 1), *extra], sentence_ids=[0] * n,
                    unsure=unsure)
        return span_loss(feats, [f], weight)

    feats = torch.tensor(rng.normal(size=(1, n + 2, 2 * dim + types)), dtype=torch.float32, requires_grad=True)
    full, masked = loss([], feats), loss([(2, 4, -1)], feats)
    assert masked.item() < full.item()  # one pair fewer in the sum (same divisor: the target words)
    # the pair (2, 4) no longer pulls on the features of its first and last word through its own score
    masked.backward()
    g_masked = feats.grad.clone()
    feats.grad = None
    full.backward()
    assert not torch.allclose(g_masked, feats.grad)
    # left out means its target no longer counts: the same loss were it gold
    assert loss([(2, 4, -1)], feats, [(2, 4, 0)]).item() == pytest.approx(masked.item())
    assert loss([], feats, [(2, 4, 0)]).item() != pytest.approx(full.item())


def _records(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for text, ents in rows:
            f.write(json.dumps({"text": text, "entities": [
                {"start": text.index(s), "end": text.index(s) + len(s), "label": t} for s, t in ents]}) + "\n")
    return path


@pytest.mark.parametrize("setting", ["unsure", "negative"])
def test_training_windows_mark_an_inner_text_left_unannotated_as_unsure(tmp_path, setting):
    from tiny import make_tiny_model

    from nerkit import align
    from nerkit.train import TrainConfig, build_features, load_datasets, load_tokenizer

    train = _records(tmp_path / "train.jsonl", [
        ("the nf kb site binds", [("nf kb site", "DNA"), ("nf kb", "protein")]),
        ("an nf kb gene here", [("nf kb gene", "DNA")]),  # "nf kb" inside, left unannotated
        ("nf kb alone", [("nf kb", "protein")])])
    base = make_tiny_model(tmp_path / "tiny")
    data = load_datasets(train)
    tok = load_tokenizer(str(base))
    enc = align.encode_documents(data.train, tok, data.label2id, layers=2)
    cfg = TrainConfig(model=str(base), unannotated_inner=setting).resolved()
    feats = build_features(enc, tok, cfg, data.labels, False, 128, span=True).features
    unsure = [f.unsure for f in feats]
    assert unsure == ([[], [(1, 3, -1)], []] if setting == "unsure" else [[], [], []])
    assert all((a, b) not in {(x, y) for x, y, _ in f.spans} for f in feats for a, b, _ in f.unsure)


def test_a_bad_unannotated_inner_setting_is_refused():
    from nerkit.errors import NerkitError
    from nerkit.train import TrainConfig

    with pytest.raises(NerkitError, match="--unannotated-inner"):
        TrainConfig(unannotated_inner="maybe").check()


def test_near_pairs_of_a_long_gold_span_are_unsure_for_its_type_only():
    from nerkit.align import Feature
    from nerkit.spans import near
    from nerkit.train import _mark_near

    n = 30
    f = Feature(input_ids=[0] * (n + 2), token_type_ids=[0] * (n + 2), labels=[-100] * (n + 2),
                word_positions=list(range(1, n + 1)), spans=[(2, 22, 1), (24, 27, 0)],
                sentence_ids=[0] * 23 + [1] * 7)
    _mark_near([f])
    marked = {(a, b) for a, b, _ in f.unsure}
    assert {c for *_, c in f.unsure} == {1}  # the 20-word span's type; the 3-word span has no near pairs
    assert (2, 22) not in marked and {(3, 22), (2, 21), (1, 22), (3, 21)} <= marked
    assert all(near(a, b, 2, 22) and b <= 23 for a, b in marked)  # never into the next sentence
    assert (5, 22) not in marked and not near(5, 22, 2, 22)  # 17 of 20 words: another span
    assert near(3, 22, 2, 22) and not near(0, 3, 0, 4)  # 19/20 >= 0.9; a short span's neighbour never is


def test_decoding_keeps_the_better_of_two_near_spans_of_one_type_and_nesting_of_another():
    from test_spans import scorer_for

    ents = {("LOC", 0, 20): 0.9, ("LOC", 1, 20): 0.8, ("PER", 1, 20): 0.7, ("LOC", 3, 20): 0.6, ("PER", 5, 7): 0.6}
    scorer, feats = scorer_for(ents, 20)
    got = {(t, a, b) for t, a, b, _ in scorer.decode(feats)}
    # (LOC, 1, 20) is near the better (LOC, 0, 20): dropped; the same words as PER, a span 17 of 20 words long
    # and a short entity inside are kept
    assert got == {("LOC", 0, 20), ("PER", 1, 20), ("LOC", 3, 20), ("PER", 5, 7)}
