"""Hugging Face datasets in and out: saved datasets, Parquet/Arrow/JSONL files, hub ids (offline), the classic
recipe's columns (``tokens`` + ``ner_tags`` with ClassLabel names)."""
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from nerkit import formats  # noqa: E402
from nerkit.cli import main  # noqa: E402
from nerkit.errors import DataError  # noqa: E402

CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # conll2003's order
ROWS = [
    (["EU", "rejects", "German", "call", "."], [3, 0, 7, 0, 0], [1, 2, 3, 4, 5]),
    (["Peter", "Blackburn"], [1, 2], [1, 1]),
    (["Athens", "🇬🇷", "and", "New", "York", "City"], [5, 0, 0, 5, 6, 6], [1, 2, 3, 1, 1, 1]),
]


def conll_like(path: Path) -> Path:
    """A dataset shaped like load_dataset("conll2003"): string ids, ClassLabel POS and NER columns."""
    features = datasets.Features({
        "id": datasets.Value("string"),
        "tokens": datasets.List(datasets.Value("string")),
        "pos_tags": datasets.List(datasets.ClassLabel(names=["X", "NN", "VB", "JJ", "DT", "."])),
        "ner_tags": datasets.List(datasets.ClassLabel(names=CONLL_NAMES)),
    })
    ds = datasets.Dataset.from_dict({"id": [str(i) for i in range(len(ROWS))], "tokens": [r[0] for r in ROWS],
                                     "pos_tags": [r[2] for r in ROWS], "ner_tags": [r[1] for r in ROWS]},
                                    features=features)
    ds.save_to_disk(str(path))
    return path


def test_classlabel_dataset_round_trip_is_identical(tmp_path):
    src = conll_like(tmp_path / "src")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf"]) == 0
    before, after = datasets.load_from_disk(str(src)), datasets.load_from_disk(str(tmp_path / "out"))
    assert after.features == before.features
    assert after.to_dict() == before.to_dict()


def test_reads_classlabel_names_and_keeps_words(tmp_path):
    docs = formats.load(conll_like(tmp_path / "d"))
    assert [d.id for d in docs] == ["0", "1", "2"]
    s = docs[2].sentences[0]
    assert s.words == ROWS[2][0]  # the flag is one word, as the dataset has it
    assert s.tags == ["B-LOC", "O", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert docs[0].sentences[0].tags == ["B-ORG", "O", "B-MISC", "O", "O"]


def test_string_tags_in_parquet_arrow_and_jsonl(tmp_path):
    # BIOES string tags (detected and converted to IOB2), no id column.
    ds = datasets.Dataset.from_dict({"tokens": [["New", "York", "is", "big"], ["Ann", "left"]],
                                     "ner_tags": [["B-LOC", "E-LOC", "O", "O"], ["S-PER", "O"]]})
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.to_json(str(tmp_path / "d.jsonl"))
    ds.save_to_disk(str(tmp_path / "saved"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    for path in (tmp_path / "d.parquet", tmp_path / "d.jsonl", arrow):
        docs = formats.load(path)
        assert [s.tags for d in docs for s in d.sentences] == [["B-LOC", "I-LOC", "O", "O"], ["B-PER", "O"]], path
    assert formats.detect_format(tmp_path / "d.jsonl") == "hf"


def test_problems_are_named(tmp_path):
    ids = datasets.Dataset.from_dict({"tokens": [["a"]], "ner_tags": [[1]]})
    ids.save_to_disk(str(tmp_path / "ids"))
    with pytest.raises(DataError, match="integer tag ids but no ClassLabel names"):
        formats.load(tmp_path / "ids")
    datasets.DatasetDict({"train": ids, "test": ids}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"holds the splits test, train; give one of them"):
        formats.load(tmp_path / "dd")
    good = datasets.Dataset.from_dict({"tokens": [["Ann"]], "ner_tags": [["B-PER"]]})
    datasets.DatasetDict({"train": good}).save_to_disk(str(tmp_path / "dd2"))
    assert formats.load(tmp_path / "dd2" / "train")[0].sentences[0].tags == ["B-PER"]
    cols = datasets.Dataset.from_dict({"text": ["a b"]})
    cols.save_to_disk(str(tmp_path / "cols"))
    with pytest.raises(DataError, match=r"has columns text; expected a word column \(tokens or words\)"):
        formats.load(tmp_path / "cols")
    bad = datasets.Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [["O"]]})
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match="row 0: 2 words but 1 tags"):
        formats.load(tmp_path / "bad")


def test_hub_id_offline_says_the_hub_is_unreachable(monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="the Hugging Face Hub is unreachable"):
        formats.load("hf:nerkit-test-no-such-dataset:train")
    assert main(["stats", "hf:nerkit-test-no-such-dataset:train"]) == 2
    assert "unreachable" in capsys.readouterr().err
    with pytest.raises(Exception, match="hf:NAME:SPLIT"):
        formats.load("hf:conll2003")


def test_stats_and_evaluate_read_datasets(tmp_path, tiny_model, capsys):
    src = conll_like(tmp_path / "d")
    assert main(["stats", str(src)]) == 0
    out = capsys.readouterr().out
    assert "entities" in out and "LOC" in out
    # the tiny model knows PER and LOC only: a dataset of those is evaluated like any file
    ds = datasets.Dataset.from_dict({"tokens": [["john", "smith", "lives", "in", "paris"]],
                                     "ner_tags": [["B-PER", "I-PER", "O", "O", "B-LOC"]]})
    ds.save_to_disk(str(tmp_path / "e"))
    assert main(["evaluate", str(tiny_model), str(tmp_path / "e"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["support"] == 2 and result["words"] == 5 and result["data"] == str(tmp_path / "e")


def test_convert_conll_to_hf_uses_the_recipe_label_order(tmp_path):
    conll = tmp_path / "a.conll"
    conll.write_text("EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n", encoding="utf-8")
    assert main(["convert", str(conll), str(tmp_path / "out"), "--to", "hf"]) == 0
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert ds.features["ner_tags"].feature.names == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert ds["tokens"] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert main(["convert", str(conll), str(tmp_path / "out"), "--to", "hf"]) == 2  # never replaces a directory


def _classic_recipe() -> Path:
    """../shared/baselines/classic_recipe.py, found like the shared data ($NERKIT_BASELINES, or beside the data)."""
    import os

    from conftest import ROOT, data_root

    data = data_root()
    for cand in (os.environ.get("NERKIT_BASELINES"), ROOT.parent / "shared" / "baselines",
                 data.parent / "baselines" if data else None):
        if cand and (Path(cand) / "classic_recipe.py").is_file():
            return Path(cand) / "classic_recipe.py"
    pytest.skip("../shared/baselines/classic_recipe.py not found (set NERKIT_BASELINES)")


def test_classic_recipe_trains_on_a_converted_dataset(tmp_path, tiny_model, monkeypatch, capsys):
    """The recipe builds a DatasetDict of ``tokens`` + ``ner_tags`` ids and trains from there; here that
    DatasetDict is the one ``convert --to hf`` wrote (its ClassLabel names as the recipe's LABELS)."""
    recipe_path = _classic_recipe()
    conll = tmp_path / "a.conll"  # five tags, as many as the tiny model's head
    conll.write_text("john B-PER\nsmith I-PER\nlives O\nin O\nnew B-LOC\nyork I-LOC\n\nmary B-PER\nwent O\nto O\n"
                     "london B-LOC\n",
                     encoding="utf-8")
    assert main(["convert", str(conll), str(tmp_path / "hf"), "--to", "hf"]) == 0
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    spec = importlib.util.spec_from_file_location("classic_recipe", recipe_path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    # Only the reading of CoNLL files is replaced: from the DatasetDict on, the recipe runs unchanged.
    monkeypatch.setattr(recipe, "read_conll", lambda path, limit=None: [])
    monkeypatch.setattr(recipe, "DatasetDict", lambda splits: datasets.DatasetDict(train=ds, valid=ds, test=ds))
    recipe.LABELS[:] = ds.features["ner_tags"].feature.names
    monkeypatch.setattr(sys, "argv", ["classic_recipe.py", str(tmp_path), str(tiny_model), "--epochs", "2",
                                      "--out", str(tmp_path / "recipe_out")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recipe.main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train_subword_tokens_per_epoch"] > 0 and 0.0 <= result["dev_f1"] <= 1.0


def test_train_on_a_dataset_with_a_docbin_dev_set(tmp_path, tiny_model):
    """--train/--dev take the converted forms too; the run records a fingerprint of the dataset directory."""
    conll = tmp_path / "a.conll"
    conll.write_text("john B-PER\nsmith I-PER\nlives O\nin O\nparis B-LOC\n\nmary B-PER\nwent O\nto O\nlondon B-LOC\n",
                     encoding="utf-8")
    assert main(["convert", str(conll), str(tmp_path / "train"), "--to", "hf"]) == 0
    dev = tmp_path / "train"
    if importlib.util.find_spec("spacy") is not None:
        dev = tmp_path / "dev.spacy"
        assert main(["convert", str(conll), str(dev)]) == 0
    out = tmp_path / "model"
    assert main(["train", "--train", str(tmp_path / "train"), "--dev", str(dev), "--model", str(tiny_model),
                 "--max-steps", "2", "--output", str(out)]) == 0
    meta = json.loads((out / "nerkit.json").read_text(encoding="utf-8"))
    assert meta["data"]["train"]["path"] == "train" and len(meta["data"]["train"]["sha256_16"]) == 16  # name, not a local path
    assert meta["data"]["dev"]["sentences"] == 2


def test_an_iob1_dataset_written_back_stays_iob1(tmp_path, capsys):
    names = ["O", "I-PER", "B-PER", "I-LOC"]
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=names))})
    rows = {"tokens": [["Ann", "Lee", "Bob", "left"], ["Rain", "in", "Oslo"]], "ner_tags": [[1, 1, 2, 0], [0, 0, 3]]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "iob1"))
    assert main(["convert", str(tmp_path / "iob1"), str(tmp_path / "back"), "--to", "hf"]) == 0
    out = capsys.readouterr().out
    back = datasets.load_from_disk(str(tmp_path / "back"))
    assert back.features["ner_tags"] == features["ner_tags"] and back.to_dict() == rows
    assert "no changes" in out and "note: tags" not in out
    # into another format's scheme: said, not silent
    assert main(["convert", str(tmp_path / "iob1"), str(tmp_path / "x.conll"), "--to", "conll-iob2"]) == 0
    assert "note: tags written in IOB2; read in IOB1 (same entities)" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "x.conll"), str(tmp_path / "y"), "--to", "hf"]) == 0
    y = datasets.load_from_disk(str(tmp_path / "y"))
    assert [y.features["ner_tags"].feature.names[t] for t in y["ner_tags"][0]] == ["B-PER", "I-PER", "B-PER", "O"]


def test_an_iob1_conll_file_written_back_stays_iob1(tmp_path, capsys):
    src = tmp_path / "a.conll"
    src.write_text("Ann I-PER\nLee I-PER\nBob B-PER\nleft O\n", encoding="utf-8")
    assert main(["convert", str(src), str(tmp_path / "b.conll")]) == 0
    assert "no changes" in capsys.readouterr().out
    assert (tmp_path / "b.conll").read_text(encoding="utf-8").split("\n", 2)[2] == src.read_text(encoding="utf-8") + "\n"
