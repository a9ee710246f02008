"""A nested model's span head: biaffine pair scores decoded into nesting entities, trained, saved and loaded."""
import json

import numpy as np
import pytest

from nerkit.errors import NerkitError
from nerkit.spans import SpanScorer, span_columns, span_layout

TYPES = ["LOC", "PER"]


def scorer_for(entities, n, decoder="spans"):
    """A scorer and word features that give exactly ``entities`` ({(type, a, b): probability}) over ``n`` words:
    one-hot first/last-word features, the biaffine weight holding each pair's logit."""
    # gelu(10) ~ 10 and gelu(-10) ~ 0: word i's features are 10 x the one-hot vector of i, so pair (i, j) of
    # type c scores 100 x weight[c, i, j] plus the bias weight[c, n, n] (-20: probability ~0 for every other pair)
    weight = np.zeros((len(TYPES), n + 1, n + 1))
    weight[:, n, n] = -20.0
    for (t, a, b), p in entities.items():
        weight[TYPES.index(t), a, b - 1] = (np.log(p / (1 - p)) + 20.0) / 100.0
    feats = np.concatenate([np.where(np.eye(n), 10.0, -10.0)] * 2, 1)
    return SpanScorer(TYPES, weight, decoder=decoder), feats


def test_decode_keeps_nesting_and_two_types_and_drops_the_weaker_of_crossing_spans():
    scorer, feats = scorer_for({("LOC", 0, 3): 0.9, ("PER", 0, 2): 0.8, ("PER", 0, 3): 0.7, ("LOC", 2, 5): 0.6,
                                ("LOC", 4, 5): 0.4}, 6)
    got = [(t, a, b) for t, a, b, _ in scorer.decode(feats)]
    # (LOC 2-5) crosses (LOC 0-3), which scores higher; (LOC 4-5) is under the threshold
    assert got == [("LOC", 0, 3), ("PER", 0, 3), ("PER", 0, 2)]
    probs = {(t, a, b): p for t, a, b, p in scorer.decode(feats)}
    assert probs[("LOC", 0, 3)] == pytest.approx(0.9, abs=1e-3)
    assert scorer.decode(feats[:0]) == []


def test_tags_plus_spans_keeps_the_tagged_entities_and_adds_only_what_lies_inside_them():
    scorer, feats = scorer_for({("PER", 0, 2): 0.8, ("LOC", 4, 6): 0.9, ("LOC", 1, 4): 0.95}, 6,
                               decoder="tags+spans")
    tagged = [("LOC", 0, 3, 0.6)]
    got = [(t, a, b) for t, a, b, _ in scorer.decode(feats, tagged)]
    # LOC 1-4 crosses the tagged entity; LOC 4-6 lies outside every tagged entity: only PER 0-2 is added
    assert got == [("LOC", 0, 3), ("PER", 0, 2)]
    with pytest.raises(ValueError, match="decoder"):
        SpanScorer(TYPES, np.zeros((2, 3, 3)), decoder="vote")


def test_merged_decoder_joins_a_clauses_readings_and_keeps_the_most_probable_edges():
    from nerkit.spans import merge_readings

    # one LOC clause read three ways (0.3, 0.25, 0.2: none over 0.5 alone), a PER span overlapping the best reading
    # (another type: never joined), a LOC span inside it sharing under half of their union (3 of 8 words: its own)
    readings = {("LOC", 2, 10): 0.3, ("LOC", 3, 10): 0.25, ("LOC", 2, 9): 0.2, ("PER", 2, 10): 0.45,
                ("LOC", 2, 5): 0.6}
    scorer, feats = scorer_for(readings, 14)
    assert [(t, a, b) for t, a, b, _ in scorer.decode(feats)] == [("LOC", 2, 5)]
    scorer.decoder = "merged"
    got = {(t, a, b): p for t, a, b, p in scorer.decode(feats)}
    assert set(got) == {("LOC", 2, 10), ("LOC", 2, 5)}
    assert got[("LOC", 2, 10)] == pytest.approx(1 - 0.7 * 0.75 * 0.8, abs=1e-3)  # at least one reading is right
    assert got[("LOC", 2, 5)] == pytest.approx(0.6, abs=1e-3)
    # the same through the remembered candidates that thresholds are compared on
    with scorer.remembering(0.1):
        assert {(t, a, b) for t, a, b, _ in scorer.decode(feats)} == set(got)
    assert merge_readings([(0, 4, 0, 0.3), (0, 5, 0, 0.3), (5, 9, 0, 0.3)]) == [
        (0, 4, 0, pytest.approx(0.51)), (5, 9, 0, pytest.approx(0.3))]
    # a word inside a two-word entity shares half their words, but short spans are entities of their own, not readings
    assert merge_readings([(0, 2, 0, 0.4), (0, 1, 0, 0.3)]) == [(0, 2, 0, 0.4), (0, 1, 0, 0.3)]


def test_per_type_thresholds_keep_a_rare_type_at_a_lower_probability_and_survive_saving(tmp_path):
    from safetensors.numpy import save_file

    from nerkit.spans import load_span_head

    scorer, feats = scorer_for({("LOC", 0, 2): 0.35, ("PER", 3, 5): 0.35}, 6)
    assert scorer.decode(feats) == []
    scorer.thresholds = {"PER": 0.3}
    assert [(t, a, b) for t, a, b, _ in scorer.decode(feats)] == [("PER", 3, 5)]
    with scorer.remembering(0.1):  # candidates scored once, filtered by the thresholds of the moment
        assert [e[0] for e in scorer.decode(feats)] == ["PER"]
        scorer.thresholds = {"LOC": 0.3, "PER": 0.3}
        assert [e[0] for e in scorer.decode(feats)] == ["LOC", "PER"]
    path = tmp_path / "span_head.safetensors"
    save_file({"weight": scorer.weight}, str(path), metadata={"types": json.dumps(TYPES),
                                                              "thresholds": json.dumps({"PER": 0.3})})
    assert load_span_head(path).thresholds == {"PER": 0.3}
    save_file({"weight": scorer.weight}, str(path), metadata={"types": json.dumps(TYPES),
                                                              "thresholds": json.dumps({"ORG": 0.3})})
    with pytest.raises(ValueError, match="thresholds"):
        load_span_head(path)


def test_span_columns_come_last_and_are_not_tags():
    from nerkit.iob import layered_labels, unlayered_labels

    labels = layered_labels(["O", "B-PER", "I-PER"], 2) + span_columns(3)
    assert span_layout(labels)[:2] == (labels[:6], 3)
    assert unlayered_labels(labels) == (["O", "B-PER", "I-PER"], 2)
    with pytest.raises(ValueError, match="last"):
        span_layout(span_columns(3) + ["O"])


def test_pooled_columns_come_after_the_edge_features():

    labels = ["O", "B-PER", "I-PER"] + span_columns(3, 1)
    assert span_layout(labels) == (labels[:3], 3, 1) and span_layout(labels).columns == 7
    with pytest.raises(ValueError, match="last"):
        span_layout(["O"] + span_columns(0, 2))  # votes without edge features
    with pytest.raises(ValueError, match="last"):
        span_layout(["O"] + span_columns(3, 1)[-1:] + span_columns(3))


def _pair_logits(weight, feats, dim, pooled):
    """Every pair's logit the slow way: the biaffine of the edge words plus the mean vote of the words inside."""
    from nerkit.spans import gelu

    n, types = len(feats), weight.shape[0]
    out = np.full((types, n, n), -np.inf)
    for c in range(types):
        for i in range(n):
            for j in range(i, n):
                s = np.append(gelu(feats[i, :dim]), 1.0)
                e = np.append(gelu(feats[j, dim:2 * dim]), 1.0)
                out[c, i, j] = s @ weight[c] @ e + (feats[i:j + 1, 2 * dim + c].mean() if pooled else 0.0)
    return out


def test_a_pooled_head_adds_the_mean_vote_of_the_words_inside_the_span():
    rng = np.random.default_rng(1)
    n, dim = 17, 4
    weight = rng.normal(size=(2, dim + 1, dim + 1))
    feats = rng.normal(size=(n, 2 * dim + 2)) * 2
    pooled = SpanScorer(TYPES, weight, pooled=True)
    slow = _pair_logits(weight, feats, dim, True)
    got = {(a, b - 1, c): p for a, b, c, p in pooled.candidates(feats, 0.0, block=5)}
    assert len(got) == 2 * n * (n + 1) // 2
    for (a, j, c), p in got.items():
        assert p == pytest.approx(1 / (1 + np.exp(-slow[c, a, j])), abs=1e-5)
    # the votes decide: the same edges without them score otherwise, and a head reads its own columns only
    plain = SpanScorer(TYPES, weight)
    assert plain.candidates(feats[:, :2 * dim], 0.0) != pooled.candidates(feats, 0.0)
    with pytest.raises(ValueError, match="columns"):
        plain.candidates(feats, 0.0)


def test_the_training_loss_scores_pairs_as_inference_does():
    import torch

    from nerkit.align import Feature
    from nerkit.loop import span_loss

    rng = np.random.default_rng(2)
    n, dim, types = 6, 3, 2
    weight = rng.normal(size=(types, dim + 1, dim + 1))
    feats = rng.normal(size=(n, 2 * dim + types))
    # one window: word positions 1..6 (0 is [CLS]), two sentences (3 words each), gold (0, 2) of type 1
    f = Feature(input_ids=[0] * (n + 2), token_type_ids=[0] * (n + 2), labels=[-100] * (n + 2),
                word_positions=list(range(1, n + 1)),
                spans=[(0, 2, 1)], sentence_ids=[0, 0, 0, 1, 1, 1])
    x = torch.zeros(1, n + 2, 2 * dim + types)
    x[0, 1:n + 1] = torch.tensor(feats, dtype=torch.float32)
    got = float(span_loss(x, [f], torch.tensor(weight, dtype=torch.float32)))
    slow = _pair_logits(weight, feats, dim, True)
    want = 0.0
    for c in range(types):
        for i in range(n):
            for j in range(i, n):
                if (i < 3) == (j < 3):  # pairs within a sentence only
                    y = float((i, j + 1, c) == (0, 2, 1))
                    want += float(torch.nn.functional.binary_cross_entropy_with_logits(
                        torch.tensor(slow[c, i, j]), torch.tensor(y)))
    assert got == pytest.approx(want / n, rel=1e-4)


# The nested model of test_nested (PER inside LOC records, the default head: span): one training for both files.
from test_nested import nested_model  # noqa: E402,F401  (a fixture)


def test_a_span_model_saves_its_head_apart_and_finds_nested_entities(nested_model):
    from safetensors import safe_open

    from nerkit.evaluation import evaluate
    from nerkit.formats import load
    from nerkit.predict import Tagger

    out = nested_model["dir"]
    meta = json.loads((out / "nerkit.json").read_text())
    by_decoder = meta["nested"]["dev_f1_by_decoder"]
    assert meta["nested"]["head"] == "span" and set(by_decoder) == {"spans", "tags+spans", "merged"}
    # each decoder with the thresholds dev chose for it: the kept one is the best of them, and the dev score is its
    assert by_decoder[meta["nested"]["decoder"]] == max(by_decoder.values())
    assert meta["metrics"]["dev"]["f1"] * 100 == pytest.approx(max(by_decoder.values()), abs=0.01)
    with safe_open(str(out / "model.safetensors"), framework="numpy") as f:
        assert not [k for k in f.keys() if "span" in k]  # transformers loads the file without unexpected weights
    with safe_open(str(out / "span_head.safetensors"), framework="numpy") as f:
        assert json.loads(f.metadata()["types"]) == TYPES and f.get_tensor("weight").shape[0] == 2
        assert f.metadata()["decoder"] == meta["nested"]["decoder"] and f.metadata()["pooled"] == "mean"
        assert json.loads(f.metadata().get("thresholds", "{}")) == meta["nested"].get("thresholds", {})
    tagger = Tagger.load(out, backend="torch", bf16="off")
    assert tagger.span_dim > 0 and tagger.span_head.decoder == meta["nested"]["decoder"] and tagger.span_head.pooled
    assert tagger.span_cols == 2 * tagger.span_dim + len(TYPES)
    ents = {(e.start, e.end, e.label) for e in tagger("mary jones city is in berlin .")}
    assert {(0, 15, "LOC"), (0, 10, "PER")} <= ents
    rep = evaluate(tagger, load(nested_model["dev"]))
    assert rep["f1"] == pytest.approx(nested_model["result"].metrics["test"]["f1"])
    assert rep["nested"]["inner"]["recall"] > 0.5


def test_the_layers_head_has_no_span_head(nested_model, tmp_path):
    from nerkit.predict import Tagger
    from nerkit.train import TrainConfig, fit

    out = tmp_path / "layers"
    fit(nested_model["train"], dev=nested_model["dev"], output=out,
        config=TrainConfig(model=str(nested_model["base"]), max_steps=20, lr=3e-3, batch_tokens=512, progress=False,
                           nested_head="layers"))
    assert not (out / "span_head.safetensors").exists()
    assert Tagger.load(out).span_dim == 0 and Tagger.load(out).layers == 2
    with pytest.raises(NerkitError, match="--nested-head"):
        TrainConfig(nested_head="biaffine").check()


def test_a_span_model_without_its_head_file_is_refused_clearly(nested_model, tmp_path):
    import shutil

    from nerkit.predict import Tagger

    broken = tmp_path / "broken"
    shutil.copytree(nested_model["dir"], broken)
    (broken / "span_head.safetensors").unlink()
    with pytest.raises(NerkitError, match="span_head.safetensors"):
        Tagger.load(broken)


def test_span_targets_cover_every_layer_and_pairs_stay_in_their_sentence(nested_model):
    import torch

    from nerkit import align
    from nerkit.loop import span_loss
    from nerkit.train import TrainConfig, build_features, load_datasets, load_tokenizer

    data = load_datasets(nested_model["train"])
    tok = load_tokenizer(str(nested_model["base"]))
    labels = data.labels
    enc = align.encode_documents(data.train[:3], tok, data.label2id, layers=2)
    cfg = TrainConfig(model=str(nested_model["base"])).resolved()
    wins = build_features(enc, tok, cfg, labels, False, 128, span=True)
    f = wins.features[0]
    per_sentence = {}
    for a, b, c in f.spans:
        assert len({f.sentence_ids[i] for i in range(a, b)}) == 1
        per_sentence.setdefault(f.sentence_ids[a], []).append((b - a, c))
    # each record: LOC "<name> city" (3 words), PER "<name>" (2 words) inside it, and a place
    assert all(sorted(v) == [(1, 0), (2, 1), (3, 0)] for v in per_sentence.values())
    # a pair across two packed sentences is not scored: moving its logit changes nothing
    d = 4
    feats = torch.zeros(1, len(f.input_ids), 2 * d, requires_grad=True)
    weight = torch.zeros(2, d + 1, d + 1, requires_grad=True)
    span_loss(feats, [f], weight).backward()
    assert weight.grad[:, d, d].abs().sum() > 0


def test_candidates_scored_in_blocks_equal_the_full_matrix_and_stop_at_the_widest_span():
    rng = np.random.default_rng(0)
    n, dim = 23, 5
    weight = rng.normal(size=(2, dim + 1, dim + 1))
    feats = rng.normal(size=(n, 2 * dim))
    full = SpanScorer(TYPES, weight)
    one = lambda x: sorted((a, b, c, round(p, 9)) for a, b, c, p in x)  # noqa: E731
    assert one(full.candidates(feats, 0.3, block=4)) == one(full.candidates(feats, 0.3))
    narrow = SpanScorer(TYPES, weight, max_width=3)
    got = narrow.candidates(feats, 0.0, block=5)
    assert max(b - a for a, b, _, _ in got) == 3 and len(got) == 2 * (n + (n - 1) + (n - 2))
    assert one(got) == one(x for x in full.candidates(feats, 0.0) if x[1] - x[0] <= 3)


def test_tag_corpus_fingerprint_covers_the_span_head(nested_model, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from nerkit.tagcorpus import model_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(nested_model["dir"], copy)
    before = model_fingerprint(copy, "torch")
    assert before == model_fingerprint(nested_model["dir"], "torch")
    head = load_file(str(copy / "span_head.safetensors"))
    from safetensors import safe_open

    with safe_open(str(copy / "span_head.safetensors"), framework="numpy") as f:
        info = f.metadata()
    save_file({"weight": head["weight"] * 2}, str(copy / "span_head.safetensors"), metadata=info)
    assert model_fingerprint(copy, "torch") != before  # other entities: a resumed corpus run must not mix them


class _PairEngine:
    """An engine whose span features make exactly one pair an entity: first word "paris", last word "london"."""

    name = "fake"
    batch_tokens = 64

    def __init__(self, tokenizer):
        self.first = tokenizer.convert_tokens_to_ids("paris")
        self.last = tokenizer.convert_tokens_to_ids("london")
        self.windows = 0

    def logits(self, batch):
        ids = batch["input_ids"]
        self.windows += len(ids)
        out = np.zeros((*ids.shape, 2 * 3 + 4))  # 2 layers x (O, B-X, I-X), then 2 first-word + 2 last-word features
        out[..., [0, 3]] = 5.0  # O on both tag layers
        out[..., 6] = np.where(ids == self.first, 10.0, -10.0)
        out[..., 7] = -10.0
        out[..., 8] = -10.0
        out[..., 9] = np.where(ids == self.last, 10.0, -10.0)
        return out


def test_a_span_longer_than_a_window_is_found_whole(tiny_model):
    """The pairs are scored per sentence after the windows are merged: an entity from the first window's words to
    the third window's is one candidate, never cut at a window edge."""
    from transformers import AutoTokenizer

    from nerkit.decode import WindowTagger
    from nerkit.iob import layered_labels
    from nerkit.types import Document, Sentence

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    weight = np.zeros((1, 3, 3))
    weight[0, 0, 1] = 0.3  # gelu(10) x gelu(10) x 0.3 = 30 for (paris, london)
    weight[0, 2, 2] = -20.0
    labels = layered_labels(["O", "B-X", "I-X"], 2) + span_columns(2)
    tagger = WindowTagger(_PairEngine(tok), tok, labels, {"max_tokens": 8, "predict_target_tokens": 6},
                          span_head=SpanScorer(["X"], weight))
    words = ["the", "city", "paris"] + ["and", "the", "city"] * 4 + ["london", "is", "new"]
    ents = tagger.entities(tagger._word_logprobs([Document("d", [Sentence(words)])])[0])
    assert tagger.engine.windows >= 3  # the sentence was read in three windows or more
    assert [(t, a, b) for t, a, b, _ in ents] == [("X", 2, 16)]
    assert len(set(tok(words, is_split_into_words=True, add_special_tokens=False)["input_ids"])) > 4  # real ids


@pytest.mark.parametrize("decoder", ["spans", "tags+spans", "merged"])
def test_sentences_decoded_together_get_exactly_what_each_gets_alone(decoder, monkeypatch):
    """``decode_many`` scores sentences of one length together: each gets the candidates, entities and probabilities
    it gets decoded alone (bit for bit), in any order, empty and over-long (block-scored) sentences among them."""
    from nerkit import spans

    monkeypatch.setattr(spans, "BATCH_WORDS", 12)  # sentences over 12 words take the one-at-a-time path
    rng = np.random.default_rng(7)
    dim = 4
    scorer = SpanScorer(TYPES, rng.normal(size=(2, dim + 1, dim + 1)), threshold=0.3, decoder=decoder,
                        max_width=6, pooled=True)
    lengths = [0, 1, 3, 3, 3, 7, 12, 12, 15, 30, 7]
    feats = [rng.normal(size=(n, 2 * dim + 2)) * 2 for n in lengths]
    tagged = [[("LOC", 0, n, 0.9)] if n else [] for n in lengths]
    alone = [scorer.decode(f, t) for f, t in zip(feats, tagged)]
    assert sum(map(len, alone)) > 10  # there is something to compare
    assert scorer.decode_many(feats, tagged) == alone
    monkeypatch.setattr(spans, "_GROUP_WORDS", 7)  # a group of one length scored in parts (two 3-word sentences)
    assert scorer.decode_many(feats, tagged) == alone
    order = rng.permutation(len(feats))
    together = scorer.decode_many([feats[k] for k in order], [tagged[k] for k in order])
    assert [together[list(order).index(k)] for k in range(len(feats))] == alone
    # the candidates too: exactly those of ``candidates`` (one block: the same products), and those of the
    # block-by-block scoring that long sentences keep (other product shapes: equal up to rounding, listed otherwise)
    for f, found in zip(feats, scorer.candidates_many(feats, 0.05)):
        assert found == scorer.candidates(f, 0.05)
        blocks = sorted(scorer.candidates(f, 0.05, block=4))
        assert [x[:3] for x in sorted(found)] == [x[:3] for x in blocks]
        assert [x[3] for x in sorted(found)] == pytest.approx([x[3] for x in blocks], abs=1e-6)
    with scorer.remembering(0.05):  # thresholds compared on dev: remembered candidates, the same entities
        assert scorer.decode_many(feats, tagged) == alone
        assert scorer.decode_many(feats[::-1], tagged[::-1]) == alone[::-1]
    with pytest.raises(ValueError, match="feature columns"):
        scorer.decode_many([feats[3], feats[3][:, :-1]])


def test_merging_many_readings_with_arrays_joins_as_merging_a_few_in_python(monkeypatch):
    from nerkit import spans

    rng = np.random.default_rng(3)
    starts = rng.integers(0, 30, 200)
    found = [(int(a), int(a + rng.integers(1, 12)), int(rng.integers(0, 2)), float(rng.uniform(0.01, 0.9)))
             for a in starts]
    with_arrays = spans.merge_readings(found)
    assert len(found) > 2 * len(with_arrays) > 0  # readings were joined
    monkeypatch.setattr(spans, "_MERGE_NUMPY", 10 ** 9)
    assert spans.merge_readings(found) == with_arrays
    monkeypatch.setattr(spans, "_MERGE_NUMPY", 0)
    assert spans.merge_readings(found) == with_arrays
