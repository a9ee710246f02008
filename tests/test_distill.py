"""`nerkit distill`: a student of fewer layers started from the teacher's weights, trained on its distributions, saved as
an ordinary model directory (flat and nested teachers), and one clear error for each bad input."""
import json
import shutil

import pytest
from safetensors.numpy import load_file
from test_nested import TEXTS as NESTED_TEXTS
from test_nested import nested_jsonl
from test_train import small_corpus

from nerkit.distill import DistillConfig, distill, distill_loss, kept_layers, student_from_teacher
from nerkit.errors import NerkitError
from nerkit.predict import Tagger

TEXTS = ["The composer Bach was born in Eisenach.", "John Smith visited Paris today with Mary Jones."]


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """A tiny 2-layer teacher trained on the embedded corpus (its files beside it, where distill finds them), and
    its 1-layer student distilled on them and on an unlabelled .txt file."""
    from tiny import make_tiny_model

    from nerkit.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("distill")
    data = small_corpus(root, n_train=60)
    fit(data["train"], dev=data["dev"], test=data["dev"], output=root / "teacher",
        config=TrainConfig(model=str(make_tiny_model(root / "tiny")), max_steps=40, lr=3e-3, batch_tokens=512,
                           progress=False))
    extra = root / "extra.txt"
    extra.write_text("John Smith visited Paris today.\n\nMary Jones lives in London.\nthe\n", encoding="utf-8")
    result = distill(root / "teacher", root / "student",
                     DistillConfig(layers=1, unlabelled=[str(extra)], max_steps=30, lr=3e-3, progress=False))
    return {"root": root, "teacher": root / "teacher", "student": root / "student", "result": result, **data}


def test_layers_kept_are_evenly_spaced_and_end_with_the_last():
    assert kept_layers(6, 3) == [1, 3, 5]
    assert kept_layers(6, 2) == [2, 5]
    assert kept_layers(6, 1) == [5]
    assert kept_layers(6, 4) == [1, 2, 4, 5]
    assert kept_layers(12, 11)[-1] == 11 and len(set(kept_layers(12, 11))) == 11
    for bad in (0, 6, 7):
        with pytest.raises(NerkitError, match="--layers must be from 1 to 5"):
            kept_layers(6, bad)


def test_student_starts_with_the_teachers_weights(flat):
    from transformers import AutoModelForTokenClassification

    teacher = AutoModelForTokenClassification.from_pretrained(flat["teacher"])
    student, kept = student_from_teacher(teacher, 1)
    assert kept == [1] and student.config.num_hidden_layers == 1 and teacher.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    assert s["bert.embeddings.token_type_embeddings.weight"].shape[0] == 4  # the casing types come along
    for name, value in s.items():
        src = name.replace("encoder.layer.0.", "encoder.layer.1.")
        assert (value == t[src]).all(), name
    assert (s["classifier.weight"] == t["classifier.weight"]).all()


def test_student_is_a_model_directory_that_tags_like_its_teacher(flat):
    out, res = flat["student"], flat["result"]
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    student = Tagger.load(out, backend="torch", bf16="off")
    teacher = Tagger.load(flat["teacher"], backend="torch", bf16="off")
    got = student(TEXTS)
    assert any(got) and all(TEXTS[i][e.start:e.end] == e.text for i, es in enumerate(got) for e in es)
    assert student.labels == teacher.labels
    from nerkit.data import load
    from nerkit.evaluation import evaluate

    assert evaluate(student, load(flat["dev"]))["f1"] == res.metrics["test"]["f1"]  # as distill scored it
    from transformers import pipeline

    nlp = pipeline("token-classification", model=str(out), trust_remote_code=True)  # the casing signal: its own
    assert [(e["start"], e["end"], e["entity_group"]) for e in nlp(TEXTS[0])] == [(e.start, e.end, e.label)
                                                                                  for e in got[0]]


def test_nerkit_json_says_what_it_was_distilled_from_and_on_what(flat):
    meta = json.loads((flat["student"] / "nerkit.json").read_text())
    teacher = json.loads((flat["teacher"] / "nerkit.json").read_text())
    src = meta["distilled_from"]
    assert src["model"] == "teacher" and src["layers"] == 2 and src["base_model"] == teacher["base_model"]
    assert src["f1"]["test"] == round(teacher["metrics"]["test"]["f1"], 4) and len(src["weights_sha256_16"]) == 16
    how = meta["distill"]
    assert how["layers"] == 1 and how["kept_layers"] == [1] and how["temperature"] == 2.0 and how["alpha"] == 0.5
    assert how["hidden"] == 10.0  # the default (DEFAULT_HIDDEN)
    assert how["unlabelled_texts"] == 3 and how["labelled_sentences"] == meta["data"]["train"]["sentences"]
    assert meta["data"]["train"]["path"] == "train.conll"  # the teacher's file, found beside it
    assert meta["data"]["train"]["sha256_16"] == teacher["data"]["train"]["sha256_16"]
    assert meta["data"]["unlabelled"]["files"][0]["path"] == "extra.txt"
    assert meta["data"]["unlabelled"]["files"][0]["texts"] == 3
    assert meta["data"]["dev"]["path"] == "dev.conll" and meta["steps"] == 30 and meta["history"]
    assert meta["budget"]["planned_steps"] == 30 and "extended_steps" not in meta["budget"]
    assert meta["windows"] == teacher["windows"] and meta["case_signal"] == teacher["case_signal"]
    assert "Distilled from `teacher`" in (flat["student"] / "README.md").read_text()


def test_exported_student_gives_the_torch_entities(flat, tmp_path):
    pytest.importorskip("onnxruntime")
    from nerkit.export import export

    export(flat["student"], tmp_path / "fast")
    spans = lambda result: [[(e.start, e.end, e.label) for e in es] for es in result]  # noqa: E731
    ref = spans(Tagger.load(flat["student"], backend="torch", bf16="off")(TEXTS))
    assert spans(Tagger.load(tmp_path / "fast", backend="onnx")(TEXTS)) == ref


def test_distill_loss_is_zero_on_the_teacher_and_adds_gold_where_labelled():
    import torch

    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 2 * 3 + 2 * 4)  # 2 tag layers of 3 classes, 8 span-feature columns
    where = torch.zeros(2, 5, dtype=torch.bool)
    where[:, 1:4] = True
    unlabelled = torch.full((2, 5, 2), -100)
    assert float(distill_loss(teacher, teacher, unlabelled, where, 2, 8, 2.0, 0.5)) == pytest.approx(0.0, abs=1e-6)
    student = teacher + torch.randn_like(teacher)
    soft = float(distill_loss(student, teacher, unlabelled, where, 2, 8, 2.0, 0.5))
    assert soft > 0
    gold = unlabelled.clone()
    gold[0, 1] = torch.tensor([1, 0])
    assert float(distill_loss(student, teacher, gold, where, 2, 8, 2.0, 0.5)) > soft
    assert float(distill_loss(student, teacher, gold, where, 2, 8, 2.0, 0.0)) == pytest.approx(soft)


def test_hidden_loss_matches_each_student_layer_with_the_teacher_layer_it_started_from():
    import torch

    from nerkit.distill import hidden_loss

    torch.manual_seed(0)
    teacher = [torch.randn(2, 4, 6) for _ in range(7)]  # embeddings + 6 layers
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    student = [teacher[0], teacher[2], teacher[4], teacher[6]]  # 3 layers started from teacher layers 1, 3, 5
    assert float(hidden_loss(student, teacher, [1, 3, 5], mask)) == pytest.approx(0.0)
    assert float(hidden_loss(student, teacher, [0, 3, 5], mask)) > 0  # layer 0 is not what the first one matches
    padded = [x.clone() for x in student]
    padded[3][0, 3] += 100.0  # a padding token: not scored
    assert float(hidden_loss(padded, teacher, [1, 3, 5], mask)) == pytest.approx(0.0)
    off = [x.clone() for x in student]
    off[3][0, 0] += 1.0  # one real token of the last layer off by 1 everywhere: 6 / (5 tokens x 6) / 3 layers
    assert float(hidden_loss(off, teacher, [1, 3, 5], mask)) == pytest.approx(1 / 5 / 3)


def test_nested_teacher_gives_a_student_with_its_span_head_and_nested_entities(tmp_path, capsys):
    from tiny import make_tiny_model

    from nerkit.train import TrainConfig, fit

    train, dev = nested_jsonl(tmp_path / "train.jsonl", n=60), nested_jsonl(tmp_path / "dev.jsonl", n=10, seed=1)
    fit(train, dev=dev, test=dev, output=tmp_path / "teacher",
        config=TrainConfig(model=str(make_tiny_model(tmp_path / "tiny")), max_steps=60, lr=3e-3, batch_tokens=512,
                           progress=False))
    res = distill(tmp_path / "teacher", tmp_path / "student",
                  DistillConfig(layers=1, max_steps=30, lr=3e-3, progress=False))
    head = load_file(str(tmp_path / "student" / "span_head.safetensors"))["weight"]
    assert (head == load_file(str(tmp_path / "teacher" / "span_head.safetensors"))["weight"]).all()  # frozen copy
    meta = json.loads((tmp_path / "student" / "nerkit.json").read_text())
    assert meta["nested"]["layers"] == 2 and meta["nested"]["head"] == "span"
    assert meta["distill"]["span_head"] == "the teacher's, frozen"
    tagger = Tagger.load(tmp_path / "student", backend="torch", bf16="off")
    assert tagger.layers == 2 and tagger.span_head is not None
    got = {(e.start, e.end, e.label) for e in tagger(NESTED_TEXTS[0])}
    assert {(0, 15, "LOC"), (0, 10, "PER")} <= got  # "mary jones" inside "mary jones city"
    assert res.metrics["test"]["nested"]["inner"]["support"] == 10
    # the span head's features learn slowly in a student too: its derived epochs take the span head's x2 on top
    from nerkit.budget import plan_budget
    from nerkit.distill import DISTILL_EPOCHS_X, _announce, _plan, distill_epochs_x, load_data, open_teacher
    from nerkit.train import SPAN_EPOCHS_X

    teacher = open_teacher(tmp_path / "teacher")
    assert distill_epochs_x(teacher) == DISTILL_EPOCHS_X * SPAN_EPOCHS_X > DISTILL_EPOCHS_X
    big = nested_jsonl(tmp_path / "big.jsonl", n=2500, seed=2)  # enough text that the rule's epochs x5 stay uncapped
    cfg = DistillConfig(layers=1, train=[str(big)], progress=False)
    plan = _plan(teacher, cfg, data := load_data(teacher, cfg), 1)
    rule = plan_budget(plan.budget.sentences, plan.budget.tokens)
    assert plan.tcfg.epochs == round(rule.epochs * DISTILL_EPOCHS_X * SPAN_EPOCHS_X, 2) < 60, (plan.tcfg.epochs, rule)
    capsys.readouterr()
    _announce(teacher, plan, data)  # the log's budget line says why
    assert "epochs x2.5 the rule's for a student, x2 again for the span head" in capsys.readouterr().err


def test_bad_teachers_layers_and_data_are_one_clear_error(flat, tiny_model, tmp_path):
    with pytest.raises(NerkitError, match="no such model directory"):
        distill(tmp_path / "nowhere", tmp_path / "o1")
    with pytest.raises(NerkitError, match="not a model nerkit trained"):
        distill(tiny_model, tmp_path / "o2")  # a model directory, but not one nerkit trained
    for layers in (2, 5, 0):
        with pytest.raises(NerkitError, match="--layers must be from 1 to 1"):
            distill(flat["teacher"], tmp_path / "o3", DistillConfig(layers=layers, progress=False))
    with pytest.raises(NerkitError, match="is the teacher"):
        distill(flat["teacher"], flat["teacher"])
    with pytest.raises(NerkitError, match="--temperature"):
        distill(flat["teacher"], tmp_path / "o4", DistillConfig(temperature=0))
    with pytest.raises(NerkitError, match="--hidden-weight"):
        distill(flat["teacher"], tmp_path / "o5", DistillConfig(hidden=-1.0))
    moved = tmp_path / "elsewhere" / "teacher"
    shutil.copytree(flat["teacher"], moved)  # its training file is no longer beside it
    with pytest.raises(NerkitError, match=r"train file train\.conll .* give it with --train PATH"):
        distill(moved, tmp_path / "o5", DistillConfig(progress=False))
    with pytest.raises(NerkitError, match=r"dev file dev\.conll .* --dev PATH"):
        distill(moved, tmp_path / "o6", DistillConfig(train=[str(flat["train"])], progress=False))
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))


def test_cli_distills_with_train_and_dev_given(flat, tmp_path, capsys):
    from nerkit.cli import main

    moved = tmp_path / "elsewhere" / "teacher"
    shutil.copytree(flat["teacher"], moved)
    out = tmp_path / "student"
    assert main(["distill", str(moved), "--output", str(out), "--train", str(flat["train"]), "--dev", str(flat["dev"]),
                 "--max-steps", "4", "--temperature", "1.5", "--alpha", "0", "--json"]) == 0
    cap = capsys.readouterr()
    assert "distilling teacher (2 layers" in cap.err and "into 1 layer" in cap.err
    assert "; --max-steps 4: training stops there" in cap.err
    assert "epochs x2.5 the rule's for a student" in cap.err and "span head" not in cap.err  # a flat teacher
    assert "dev" in json.loads(cap.out)
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["distill"]["temperature"] == 1.5 and meta["distill"]["alpha"] == 0.0 and meta["steps"] == 4
    assert main(["distill", str(moved), "--output", str(tmp_path / "x"), "--layers", "3"]) == 2
    assert "--layers must be from 1 to 1" in capsys.readouterr().err


def test_derived_distillation_epochs_are_longer_than_training(flat):
    from nerkit.budget import MAX_EPOCHS, plan_budget
    from nerkit.distill import DISTILL_EPOCHS_X, _plan, distill_epochs_x, load_data, open_teacher

    cfg = DistillConfig(layers=1, progress=False)
    teacher = open_teacher(flat["teacher"])
    plan = _plan(teacher, cfg, load_data(teacher, cfg), 1)
    rule = plan_budget(plan.budget.sentences, plan.budget.tokens)
    assert plan.tcfg.epochs == round(min(MAX_EPOCHS, rule.epochs * DISTILL_EPOCHS_X), 2) > rule.epochs
    assert distill_epochs_x(teacher) == DISTILL_EPOCHS_X  # a flat teacher: no span head's x2
    assert "epochs" in plan.budget.chosen  # derived: training on while dev F1 climbs still applies
