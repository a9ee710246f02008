"""Nested and overlapping entities: layers from spans, a nested model trained and decoded, scores that handle nesting."""
import json
import random

import pytest

from nerkit.data import read_jsonl, sentence_spans, stats
from nerkit.errors import NerkitError
from nerkit.iob import layered_labels, unlayered_labels
from nerkit.layers import assign_layers, nesting, spans_to_layers
from nerkit.types import Span

NAMES = ["john smith", "mary jones", "paris", "london", "berlin"]


def nested_jsonl(path, n=40, seed=0):
    """Records where a PER ("john smith") often lies inside a LOC-like phrase ("john smith city")."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            name = rng.choice(NAMES[:2])
            place = rng.choice(NAMES[2:])
            text = f"{name} city is in {place} ."
            ents = [{"start": 0, "end": len(name) + 5, "label": "LOC"}, {"start": 0, "end": len(name), "label": "PER"},
                    {"start": text.index(place), "end": text.index(place) + len(place), "label": "LOC"}]
            f.write(json.dumps({"text": text, "entities": ents}) + "\n")
    return path


def test_layers_put_containers_first_and_keep_every_span():
    spans = [Span(0, 10, "A"), Span(2, 4, "B"), Span(2, 4, "C"), Span(12, 15, "A"), Span(5, 14, "D")]
    layers = assign_layers(spans)
    assert layers[0] == [Span(0, 10, "A"), Span(12, 15, "A")]  # the outermost entities on layer 0
    assert sorted(sp for layer in layers for sp in layer) == sorted(spans)  # nothing lost
    for layer in layers:
        assert all(a.end <= b.start for a, b in zip(layer, layer[1:]))  # no overlap within a layer
    assert len(assign_layers([Span(0, 3, "A"), Span(4, 6, "B")])) == 1  # flat stays flat
    depths, crossing = nesting(spans)
    assert crossing == 2 and depths == [0, 1, 2, 0, 0]  # D crosses both As, inside neither


def test_jsonl_with_nested_spans_reads_every_entity_and_writes_it_back(tmp_path):
    p = nested_jsonl(tmp_path / "n.jsonl", n=5)
    docs = read_jsonl(p)
    recs = [json.loads(line) for line in p.read_text().splitlines()]
    for d, r in zip(docs, recs):
        s = d.sentences[0]
        assert len(s.layers) == 1 and s.tags[0] == "B-LOC" and s.layers[0][0] == "B-PER"
        assert {(x.start, x.end, x.label) for x in sentence_spans(s)} == {(e["start"], e["end"], e["label"])
                                                                          for e in r["entities"]}
    from nerkit.data import write_jsonl

    write_jsonl(docs, tmp_path / "back.jsonl")
    back = [json.loads(line) for line in (tmp_path / "back.jsonl").read_text().splitlines()]
    assert [sorted(map(json.dumps, r["entities"])) for r in back] == [sorted(map(json.dumps, r["entities"])) for r in recs]
    st = stats(docs)
    assert st["inner_entities"] == 5 and st["inner_per_type"] == {"PER": 5} and st["nesting_depth"] == 2
    assert st["crossing_pairs"] == 0 and st["entities"] == 15


def test_stats_name_inner_entities_annotated_in_one_place_and_left_out_in_another(tmp_path):
    recs = [("the IL-2 gene is on", [(4, 13, "DNA"), (4, 8, "protein")]),
            ("an IL-2 gene again", [(3, 12, "DNA")]),  # IL-2 inside a DNA entity, not annotated this time
            ("IL-2 alone", [(0, 4, "protein")]),  # outside any entity: not counted either way
            ("the NF-kB site", [(4, 14, "DNA")])]  # never annotated inside an entity: not reported
    p = tmp_path / "g.jsonl"
    p.write_text("".join(json.dumps({"text": t, "entities": [{"start": a, "end": b, "label": lab}
                                                             for a, b, lab in e]}) + "\n" for t, e in recs))
    from nerkit.data import format_stats, inner_consistency

    docs = read_jsonl(p)
    assert inner_consistency(docs) == [("IL-2", 1, 1)]
    st = stats(docs)
    assert st["inner_left_out"] == 1 and st["inner_inconsistent"] == [["IL-2", 1, 1]]
    assert "'IL-2' 1 of 2" in format_stats(st)
    flat = tmp_path / "f.jsonl"
    flat.write_text(json.dumps({"text": "IL-2 gene", "entities": [{"start": 0, "end": 4, "label": "protein"}]}) + "\n")
    assert "inner_left_out" not in stats(read_jsonl(flat))


def test_spans_sharing_a_word_go_on_separate_layers():
    offsets = [(0, 4), (5, 9)]
    layers = spans_to_layers(offsets, [Span(0, 4, "A"), Span(0, 9, "B"), Span(0, 4, "C")])
    assert layers == [["B-B", "I-B"], ["B-A", "O"], ["B-C", "O"]]


def test_layered_label_names_round_trip():
    base = ["O", "B-PER", "I-PER"]
    assert unlayered_labels(layered_labels(base, 3)) == (base, 3)
    assert unlayered_labels(base) == (base, 1)
    assert unlayered_labels(["O", "B-X@1"]) == (["O", "B-X@1"], 1)  # not a layered head: taken as it is


@pytest.fixture(scope="module")
def nested_model(tmp_path_factory):
    """A tiny nested model trained on PER-inside-LOC records, its data and its training result."""
    from tiny import make_tiny_model

    from nerkit.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("nested")
    base = make_tiny_model(root / "tiny")
    train = nested_jsonl(root / "train.jsonl", n=60)
    dev = nested_jsonl(root / "dev.jsonl", n=10, seed=1)
    out = root / "model"
    res = fit(train, dev=dev, test=dev, output=out,
              config=TrainConfig(model=str(base), max_steps=60, lr=3e-3, batch_tokens=512, progress=False))
    return {"dir": out, "base": base, "train": train, "dev": dev, "result": res}


TEXTS = ["mary jones city is in berlin .", "john smith city is in paris . mary jones city is in london .", "the", ""]


def test_nested_model_trains_predicts_and_scores_inner_entities(nested_model):
    from nerkit.evaluation import evaluate
    from nerkit.predict import Tagger

    out, dev, res = nested_model["dir"], nested_model["dev"], nested_model["result"]
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["nested"]["layers"] == 2 and "lie inside or overlap another" in meta["nested"]["reason"]
    tagger = Tagger.load(out, backend="torch", bf16="off")
    assert tagger.layers == 2 and tagger.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    text = TEXTS[0]
    ents = [(e.start, e.end, e.label, e.text) for e in tagger(text)]
    assert (0, 15, "LOC", "mary jones city") in ents and (0, 10, "PER", "mary jones") in ents
    assert all(text[s:e] == t for s, e, _, t in ents)
    rep = evaluate(tagger, read_jsonl(dev))
    assert rep["nested"]["inner"]["support"] == 10 and rep["nested"]["inner"]["recall"] > 0.5
    assert rep["f1"] == pytest.approx(res.metrics["test"]["f1"])


def test_nested_off_trains_the_flat_model_and_says_what_it_leaves_out(nested_model, capsys):
    from nerkit.predict import Tagger
    from nerkit.train import TrainConfig, fit

    out = nested_model["dir"].parent / "flat"
    flat = fit(nested_model["train"], dev=nested_model["dev"], test=nested_model["dev"], output=out,
               config=TrainConfig(model=str(nested_model["base"]), max_steps=60, lr=3e-3, batch_tokens=512,
                                  nested="off"))
    assert "60 of 180 training entities inside or overlapping another are left out" in capsys.readouterr().err
    assert json.loads((out / "nerkit.json").read_text()).get("nested") is None
    assert Tagger.load(out).layers == 1
    assert flat.metrics["test"]["nested"]["inner"]["recall"] == 0.0  # scored on every gold entity, inner ones too


def test_exported_nested_model_gives_the_torch_entities(nested_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from nerkit.export import export
    from nerkit.predict import Tagger

    out = tmp_path / "exported"
    export(nested_model["dir"], out)
    ref = Tagger.load(nested_model["dir"], backend="torch", bf16="off")(TEXTS)
    assert any(len(es) >= 3 for es in ref)  # nested entities to compare
    spans = lambda result: [[(e.start, e.end, e.label) for e in es] for es in result]  # noqa: E731
    assert spans(Tagger.load(out, backend="onnx")(TEXTS)) == spans(ref)
    # int8 kernels differ between CPU kinds (VNNI/AMX or AVX2 only): the nested entities stay, most texts are equal
    got = spans(Tagger.load(out, backend="onnx-int8")(TEXTS))
    assert {(0, 15, "LOC"), (0, 10, "PER")} <= set(got[0])
    assert sum(g == r for g, r in zip(got, spans(ref))) >= len(TEXTS) - 1


def test_hf_pipeline_of_a_nested_model_returns_the_nested_entities(nested_model):
    from transformers import pipeline

    from nerkit.predict import Tagger

    nlp = pipeline("token-classification", model=str(nested_model["dir"]), trust_remote_code=True)
    want = Tagger.load(nested_model["dir"], backend="torch", bf16="off")(TEXTS[0])
    got = nlp(TEXTS[0])
    assert [(e["start"], e["end"], e["entity_group"]) for e in got] == [(e.start, e.end, e.label) for e in want]
    assert len(got) >= 3
    with pytest.raises(Exception, match="trust_remote_code"):  # the stock pipeline would read the layers as one
        pipeline("token-classification", model=str(nested_model["dir"]))


def test_a_model_saved_with_the_merged_decoder_gives_its_entities_in_every_engine_and_the_hf_pipeline(
        nested_model, tmp_path):
    pytest.importorskip("onnxruntime")
    import shutil

    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open
    from transformers import pipeline

    from nerkit.export import export
    from nerkit.predict import Tagger
    from nerkit.spans import SPAN_FILE

    model = tmp_path / "merged"
    shutil.copytree(nested_model["dir"], model)
    with safe_open(str(model / SPAN_FILE), framework="numpy") as f:
        info = dict(f.metadata())
    save_file(load_file(str(model / SPAN_FILE)), str(model / SPAN_FILE),
              metadata={**info, "decoder": "merged", "threshold": "0.3"})
    tagger = Tagger.load(model, backend="torch", bf16="off")
    assert tagger.span_head.decoder == "merged"
    spans = lambda result: [[(e.start, e.end, e.label) for e in es] for es in result]  # noqa: E731
    want = spans(tagger(TEXTS))
    # a name inside a place in some text (which text depends on the CPU kind: the tiny model trains in bf16 on
    # AVX-512 BF16 CPUs, in fp32 on AVX2-only ones, where text 0's place fell under 0.3)
    inside = [(o, i) for es in want for o in es for i in es if o != i and o[0] <= i[0] and i[1] <= o[1]]
    assert any(o[2] == "LOC" and i[2] == "PER" for o, i in inside), want
    export(model, tmp_path / "exported")
    assert spans(Tagger.load(tmp_path / "exported", backend="onnx")(TEXTS)) == want
    nlp = pipeline("token-classification", model=str(model), trust_remote_code=True)
    assert [(e["start"], e["end"], e["entity_group"]) for e in nlp(TEXTS[1])] == want[1]


def test_bad_nested_option_is_refused():
    from nerkit.train import TrainConfig

    with pytest.raises(NerkitError, match="--nested"):
        TrainConfig(nested="maybe").resolved()


def test_nested_encoding_keeps_every_sentence_its_own_pieces(tiny_model, tmp_path):
    """Layers are encoded beside the words: documents of several sentences of different lengths encode the same
    pieces as a flat encoding, and each layer's ids follow its own tags."""
    from transformers import AutoTokenizer

    from nerkit.align import encode_documents
    from nerkit.types import Document, Sentence

    tok = AutoTokenizer.from_pretrained(tiny_model)
    label2id = {t: i for i, t in enumerate(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])}
    s1 = Sentence(["john", "smith", "city"], ["B-LOC", "I-LOC", "I-LOC"], layers=[["B-PER", "I-PER", "O"]])
    s2 = Sentence(["he", "went", "to", "the", "new", "york", "city", "today"], ["O"] * 4 + ["B-LOC", "I-LOC", "I-LOC", "O"])
    s3 = Sentence(["paris"], ["B-LOC"])
    docs = [Document("a", [s1, s2]), Document("b", [s3, s1])]
    flat = encode_documents(docs, tok, label2id)
    nested = encode_documents(docs, tok, label2id, layers=2)
    assert [e.pieces for e in nested] == [e.pieces for e in flat] and [e.tag_ids for e in nested] == [e.tag_ids for e in flat]
    assert nested[0].layer_tag_ids == [[3, 4, 0] + [0] * 8]
    assert nested[1].layer_tag_ids == [[0, 3, 4, 0]]


def test_suggest_and_preannotate_work_with_a_nested_model(nested_model, tmp_path):
    from nerkit.annotate.assist import predict_records, suggest
    from nerkit.predict import Tagger

    tagger = Tagger.load(nested_model["dir"], backend="torch", bf16="off")
    words, _, probs = tagger.word_probs([TEXTS[0]])[0]
    assert probs.shape == (len(words), 2, len(tagger.labels))  # every layer's distribution
    got = suggest(tagger, TEXTS[:3], n=3)
    assert sorted(s.index for s in got) == [0, 1, 2] and all(s.score >= 0 for s in got)
    records, scores = predict_records(tagger, [TEXTS[0]])
    spans = {(s.start, s.end, s.label) for s in records[0].spans}
    assert {(0, 15, "LOC"), (0, 10, "PER")} <= spans and len(scores[0]) == len(records[0].spans)
    from nerkit.annotate.assist import write_predictions

    write_predictions(records, scores, tmp_path / "tasks.json")  # Label Studio tasks: overlapping regions
    regions = json.loads((tmp_path / "tasks.json").read_text())[0]["predictions"][0]["result"]
    got = {(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in regions}
    assert {(0, 15, "LOC"), (0, 10, "PER")} <= got


def test_layered_column_files_read_nest_and_write_back(tmp_path):
    from nerkit.data import read_conll, write_conll
    from nerkit.errors import DataError

    germeval = tmp_path / "g.tsv"
    germeval.write_text("#\thttp://de.wikipedia.org/wiki/X [2009-10-17]\n1\tDie\tO\tO\n2\tUniversität\tB-ORG\tO\n"
                        "3\tBonn\tI-ORG\tB-LOC\n4\tlehrt\tO\tO\n\n", encoding="utf-8")
    s = read_conll(germeval, tag_columns=2)[0].sentences[0]
    assert s.words == ["Die", "Universität", "Bonn", "lehrt"]
    assert s.tags == ["O", "B-ORG", "I-ORG", "O"] and s.layers == [["O", "O", "B-LOC", "O"]]
    write_conll([read_conll(germeval, tag_columns=2)[0]], tmp_path / "back.conll")
    back = read_conll(tmp_path / "back.conll", tag_columns=2)[0].sentences[0]
    assert (back.words, back.tags, back.layers) == (s.words, s.tags, s.layers)
    iob2 = tmp_path / "genia.iob2"  # GENIA's layout: token, then one column per level
    iob2.write_text("IL-2\tB-DNA\tB-protein\tO\ngene\tI-DNA\tO\tO\nexpression\tO\tO\tO\n\n", encoding="utf-8")
    s = read_conll(iob2, tag_columns=3)[0].sentences[0]
    assert s.tags == ["B-DNA", "I-DNA", "O"] and s.layers == [["B-protein", "O", "O"]]
    bad = tmp_path / "bad.iob2"  # an inner entity outside every outer one: the levels do not nest
    bad.write_text("a\tB-DNA\tO\nb\tO\tB-protein\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.iob2:2: tag column 2 has protein over words 2-2 that lie inside no entity"):
        read_conll(bad, tag_columns=2)
    with pytest.raises(DataError, match=r"genia\.iob2:1: line has 4 columns .* expected a token and 4 tag columns"):
        read_conll(iob2, tag_columns=4)


def test_nested_loss_weighs_inner_entity_tags_and_layers_can_start_inside():
    import torch

    from nerkit.layers import relayered
    from nerkit.loop import _nested_loss

    logits = torch.randn(2 * 3 * 2, 5)
    labels = torch.tensor([[[1, 0], [2, 3], [0, -100]], [[0, 0], [1, 1], [-100, -100]]])
    plain = torch.nn.functional.cross_entropy(logits, labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(_nested_loss(logits, labels, None, 1.0), plain)
    ce = torch.nn.functional.cross_entropy(logits, labels.reshape(-1).clamp(min=0), reduction="none")
    w = torch.tensor([1, 1, 1, 3, 1, 0, 1, 1, 1, 3, 0, 0], dtype=torch.float)  # entity tags of layer 1 weigh 3
    assert torch.allclose(_nested_loss(logits, labels, None, 3.0), (ce * w).sum() / w.sum())
    # the train step sums the layers' means (x layers of the pooled mean): the first layer learns as a flat model does
    per_layer = [torch.nn.functional.cross_entropy(logits.reshape(2, 3, 2, 5)[..., k, :].reshape(-1, 5),
                                                   labels[..., k].reshape(-1), ignore_index=-100) for k in range(2)]
    assert not torch.allclose(plain * 2, sum(per_layer))  # these layers label different tokens: no identity
    same = labels.clone()
    same[..., 1] = torch.where(labels[..., 0] == -100, -100, labels[..., 1].clamp(min=0))  # as windows label them
    pooled = torch.nn.functional.cross_entropy(logits, same.reshape(-1), ignore_index=-100)
    layer_means = [torch.nn.functional.cross_entropy(logits.reshape(2, 3, 2, 5)[..., k, :].reshape(-1, 5),
                                                     same[..., k].reshape(-1), ignore_index=-100) for k in range(2)]
    assert torch.allclose(pooled * 2, sum(layer_means))
    outer = [["B-DNA", "I-DNA", "O"], ["B-protein", "O", "O"]]
    assert relayered(outer, inner_first=True) == [["B-protein", "O", "O"], ["B-DNA", "I-DNA", "O"]]
    assert relayered(outer, inner_first=False) == outer


def test_inner_first_weighted_nested_model_trains(nested_model):
    from nerkit.predict import Tagger
    from nerkit.train import TrainConfig, fit

    out = nested_model["dir"].parent / "inner"
    fit(nested_model["train"], dev=nested_model["dev"], output=out,
        config=TrainConfig(model=str(nested_model["base"]), max_steps=60, lr=3e-3, batch_tokens=512, progress=False,
                           nested_order="inner", nested_weight=3.0))
    ents = {(e.start, e.end, e.label) for e in Tagger.load(out, backend="torch", bf16="off")(TEXTS[0])}
    assert {(0, 15, "LOC"), (0, 10, "PER")} <= ents


def test_cli_reads_layered_columns_with_tag_columns(tmp_path, capsys):
    from nerkit.cli import main

    iob2 = tmp_path / "genia.iob2"
    iob2.write_text("IL-2\tB-DNA\tB-protein\ngene\tI-DNA\tO\nexpression\tO\tO\n\n", encoding="utf-8")
    assert main(["stats", str(iob2), "--tag-columns", "2"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines() if line.startswith("inner entities")] == [["inner", "entities", "1"]]
    assert main(["stats", str(iob2), "--tag-columns", "0"]) == 2
    assert "--tag-columns must be at least 1" in capsys.readouterr().err


def test_agree_and_adjudicate_keep_nested_annotations(tmp_path, capsys):
    from nerkit.cli import main

    text = "caffeine toxicity was seen"
    outer, inner = {"start": 0, "end": 17, "label": "AdverseEffect"}, {"start": 0, "end": 8, "label": "Drug"}
    files = []
    for name, ents in (("a", [outer, inner]), ("b", [outer, inner]), ("c", [outer])):
        f = tmp_path / f"{name}.jsonl"
        f.write_text(json.dumps({"id": "1", "text": text, "entities": ents}) + "\n", encoding="utf-8")
        files.append(str(f))
    assert main(["agree", *files[:2], "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["exact_f1"] == 1.0 and rep["pairs"][0]["exact"]["matches"] == 2  # the inner span matched too
    assert main(["agree", files[0], files[2], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exact_f1"] == pytest.approx(2 / 3)  # c left the inner Drug out
    out = tmp_path / "merged.jsonl"
    assert main(["adjudicate", *files, "--output", str(out)]) == 0
    merged = json.loads(out.read_text().splitlines()[0])["entities"]
    assert sorted((e["start"], e["end"], e["label"]) for e in merged) == [(0, 8, "Drug"), (0, 17, "AdverseEffect")]


def test_evaluate_scores_raw_words_where_reading_split_words_at_entity_edges(nested_model, tmp_path):
    """An entity ending inside a word ("pirmenol" of "pirmenol-induced") is split out when the file is read; the model
    meets the raw text unsplit, so it is scored on the text's own words, in character offsets."""
    from nerkit.evaluation import as_read, evaluate
    from nerkit.formats import load
    from nerkit.predict import Tagger

    text = "mary jones city is in berlin-west ."
    path = tmp_path / "split.jsonl"
    path.write_text(json.dumps({"text": text, "entities": [
        {"start": 0, "end": 15, "label": "LOC"}, {"start": 0, "end": 10, "label": "PER"},
        {"start": 22, "end": 28, "label": "LOC"}]}) + "\n")
    with pytest.warns(Warning, match="split at span edges"):
        docs = load(path)
    assert "berlin" in docs[0].sentences[0].words  # the reader split "berlin-west" at the gold edge
    plain = as_read(docs)
    assert plain[0].sentences[0].words[-2] == "berlin-west" and as_read(load(nested_model["dev"])) is None
    tagger = Tagger.load(nested_model["dir"], backend="torch", bf16="off")
    rep = evaluate(tagger, docs)
    found = {(e.start, e.end, e.label) for e in tagger(text)}
    gold = {(0, 15, "LOC"), (0, 10, "PER"), (22, 28, "LOC")}
    # exactly the raw-text predictions, scored against the gold character spans
    assert rep["precision"] == pytest.approx(len(found & gold) / len(found)) and "22, 28" not in str(found)
    assert rep["recall"] == pytest.approx(len(found & gold) / 3) and "1 sentences" in rep["scored_on"]


def test_convert_writes_and_reads_layered_columns(tmp_path, capsys):
    from nerkit.cli import main

    src = tmp_path / "nested.jsonl"  # three levels: a DNA region holding a protein holding a protein
    text = "the IL-2 receptor alpha gene is active ."
    ents = [{"start": 4, "end": 28, "label": "DNA"}, {"start": 4, "end": 23, "label": "protein"},
            {"start": 4, "end": 8, "label": "protein"}]
    src.write_text(json.dumps({"text": text, "entities": ents}) + "\n", encoding="utf-8")
    # one tag column (the default): the inner spans are dropped, counted, and the way to keep them is said
    assert main(["convert", str(src), str(tmp_path / "flat.conll")]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 records with 1 spans" in out and "2  overlapping span dropped" in out and "--tag-columns N" in out
    # three columns: every level written, and read back with the same option gives the same entities
    assert main(["convert", str(src), str(tmp_path / "three.iob2"), "--tag-columns", "3"]) == 0
    assert "wrote 1 records with 3 spans" in capsys.readouterr().out
    lines = (tmp_path / "three.iob2").read_text(encoding="utf-8").splitlines()
    assert "IL-2 B-DNA B-protein B-protein" in lines and "gene I-DNA O O" in lines and "is O O O" in lines
    assert main(["convert", str(tmp_path / "three.iob2"), str(tmp_path / "back.jsonl"), "--tag-columns", "3"]) == 0
    assert "read 1 records with 3 spans" in capsys.readouterr().out
    back = json.loads((tmp_path / "back.jsonl").read_text(encoding="utf-8"))
    assert sorted((back["text"][e["start"]:e["end"]], e["label"]) for e in back["entities"]) == sorted(
        (text[e["start"]:e["end"]], e["label"]) for e in ents)
    # fewer columns than levels: the deepest level is dropped, counted and named
    assert main(["convert", str(src), str(tmp_path / "two.iob2"), "--tag-columns", "2", "--details", "-1"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 records with 2 spans" in out and "1  span nested deeper than the tag columns dropped" in out
    assert "[4, 8) protein 'IL-2' on nesting level 3 of 2 columns" in out
    # more columns than levels: the file still has them all (a reader of N columns reads it)
    assert main(["convert", str(src), str(tmp_path / "four.iob2"), "--tag-columns", "4"]) == 0
    assert "IL-2 B-DNA B-protein B-protein O" in (tmp_path / "four.iob2").read_text(encoding="utf-8").splitlines()
    # a crossing span has no column where it nests: counted, and the file reads back (its columns nest)
    crossing = tmp_path / "crossing.jsonl"
    crossing.write_text(json.dumps({"text": "new york city hall", "entities": [
        {"start": 0, "end": 13, "label": "LOC"}, {"start": 9, "end": 18, "label": "FAC"}]}) + "\n", encoding="utf-8")
    assert main(["convert", str(crossing), str(tmp_path / "crossing.iob2"), "--tag-columns", "2"]) == 0
    out = capsys.readouterr().out
    assert "1  span crossing another dropped" in out and "[9, 18) FAC 'city hall' on nesting level 2" in out
    assert main(["convert", str(tmp_path / "crossing.iob2"), str(tmp_path / "c.jsonl"), "--tag-columns", "2"]) == 0
    assert "read 1 records with 1 spans" in capsys.readouterr().out
    assert main(["convert", str(src), str(tmp_path / "zero.conll"), "--tag-columns", "0"]) == 2
    assert "--tag-columns must be at least 1, got 0" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "x.json"), "--to", "labelstudio", "--tag-columns", "2"]) == 2
    assert "--tag-columns applies to conll files" in capsys.readouterr().err


def test_agree_reads_every_tag_column_of_layered_files(tmp_path, capsys):
    from nerkit.cli import main

    a, b = tmp_path / "a.iob2", tmp_path / "b.iob2"  # b leaves the inner protein out
    a.write_text("IL-2\tB-DNA\tB-protein\ngene\tI-DNA\tO\nexpression\tO\tO\n\n", encoding="utf-8")
    b.write_text("IL-2\tB-DNA\tO\ngene\tI-DNA\tO\nexpression\tO\tO\n\n", encoding="utf-8")
    assert main(["agree", str(a), str(b), "--tag-columns", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # (it read the last column alone: no entity at all, F1 undefined)
    assert result["exact_f1"] == pytest.approx(2 / 3) and set(result["per_type"]) == {"DNA", "protein"}


def test_a_span_head_trains_twice_the_derived_epochs(nested_model, tmp_path, capsys):
    from nerkit.budget import plan_budget
    from nerkit.train import SPAN_EPOCHS_X, TrainConfig, load_datasets, start_training

    # 1,500 records: about 20,000 window tokens, where the rule derives 10 epochs (tiny data is at its cap of 60).
    data = load_datasets(nested_jsonl(tmp_path / "train.jsonl", n=1500), nested_jsonl(tmp_path / "dev.jsonl", n=10))
    base = str(nested_model["base"])

    def budget(**kw):
        return start_training(data, TrainConfig(model=base, batch_tokens=512, **kw).resolved()).run.budget

    span, layers = budget(), budget(nested_head="layers")
    rule = plan_budget(span.sentences, span.tokens, batch_tokens=512)
    assert layers.epochs == rule.epochs < span.epochs == rule.epochs * SPAN_EPOCHS_X
    longer = plan_budget(span.sentences, span.tokens, batch_tokens=512, epochs=span.epochs)
    assert (span.evals_per_epoch, span.early_stopping) == (longer.evals_per_epoch, longer.early_stopping)
    assert "epochs" in span.chosen  # derived: training on while dev F1 climbs still applies
    err = capsys.readouterr().err
    assert f"epochs x{SPAN_EPOCHS_X:g} the rule's for the span head" in err
    assert "encoder dropout 0.1 for the span head" in err
    assert budget(epochs=3).epochs == 3 and budget(early_stopping=7).early_stopping == 7  # given: kept


def test_the_supply_chain_example_of_the_docs_reads_as_they_show_it():
    """docs/domains.md walks docs/examples/supply-chain from data to prediction: its files read, nest and are checked
    as the page says."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "docs" / "examples" / "supply-chain"
    docs = read_jsonl(root / "train.jsonl")
    st = stats(docs)
    assert (st["sentences"], st["entities"], st["inner_entities"], st["nesting_depth"]) == (70, 245, 64, 2)
    assert st["inner_per_type"] == {"Material": 43, "Location": 20, "Company": 1} and st["crossing_pairs"] == 0
    assert [x[0] for x in st["inner_inconsistent"]] == ["copper", "chips", "neon"]
    page = (root.parent.parent / "domains.md").read_text()
    assert "inner entities             64 (inside another entity)" in page and "docs/examples/supply-chain/" in page
    dev = stats(read_jsonl(root / "valid.jsonl"))
    assert dev["sentences"] == 18 and dev["inner_entities"] == 20  # the 20 inner dev entities the page scores


def test_a_span_head_trains_its_encoder_with_dropout_and_other_models_without(nested_model, tmp_path):
    import torch

    from nerkit.search import race_cores
    from nerkit.train import TrainConfig, load_datasets, start_training

    data = load_datasets(nested_model["train"], nested_model["dev"])
    base = str(nested_model["base"])

    def trained(**kw):
        cfg = TrainConfig(model=base, batch_tokens=512, max_steps=3, lr=3e-3, progress=False, **kw).resolved()
        training = start_training(data, cfg, talk=False)
        for _ in training.steps(lambda m: None):
            pass
        run = training.run
        rates = {m.p for m in run.unwrapped.modules() if isinstance(m, torch.nn.Dropout)}
        conf = run.unwrapped.config
        return rates, (conf.hidden_dropout_prob, conf.attention_probs_dropout_prob), run.unwrapped.state_dict()

    rates, conf, with_dropout = trained()
    assert rates == {0.1} and conf == (0.1, 0.1)
    for kw in ({"nested": "off"}, {"nested_head": "layers"}, {"span_dropout": None}):
        rates, conf, _ = trained(**kw)
        assert rates == {0.0} and conf == (0.0, 0.0), kw
    assert trained(span_dropout=0.3)[:2] == ({0.3}, (0.3, 0.3))
    # Dropout is live in training (other weights than without it) and seeded (the same weights again).
    without, again = trained(span_dropout=0.0)[2], trained()[2]
    key = next(k for k in with_dropout if k.endswith("query.weight"))
    assert not torch.equal(with_dropout[key], without[key]) and torch.equal(with_dropout[key], again[key])
    # A search's points share torch's one generator for dropout: on nested data they take turns.
    cfg = TrainConfig(model=base).resolved()
    assert race_cores(cfg, data)[1] is False
    assert race_cores(TrainConfig(model=base, nested="off").resolved(), data)[1] is (not torch.cuda.is_available())
    with pytest.raises(NerkitError, match="--span-dropout"):
        TrainConfig(span_dropout=1.5).resolved()
