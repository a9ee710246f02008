"""`nerkit tag-corpus`: inputs, the output contract, resume, bad rows, and the Ray runner on a real local cluster."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("onnxruntime")

from nerkit.errors import DataError, NerkitError  # noqa: E402
from nerkit.tagcorpus import (MANIFEST_FILE, TagBatch, find_inputs, plan_shards,  # noqa: E402
                              tag_corpus, tag_table)
from tiny import make_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_model(model_dir, tmp_path_factory) -> Path:
    """The tiny model exported to fp32 ONNX: batch-invariant, so every engine must give the same entities."""
    from nerkit.export import export

    out = tmp_path_factory.mktemp("tc") / "onnx"
    export(model_dir, out, quantize=False)
    return out


def _write_corpus(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("John Smith lives in Paris.\n\n  \nMary Jones visited London today.\nberlin\n",
                                encoding="utf-8")
    recs = [{"id": "doc-1", "text": "Berlin is a city where John works.", "lang": "en", "entities": [], "n": 1},
            {"text": "Mary met Smith in New York.", "lang": "de", "n": 2},
            {"text": "", "lang": "fr", "n": 3}]
    (root / "sub" / "b.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n", encoding="utf-8")
    texts = [f"john smith {i} visited paris and london city" + " today" * (i % 5) for i in range(40)]
    pq.write_table(pa.table({"text": texts, "k": list(range(40))}), root / "c.parquet", row_group_size=7)
    (root / "notes.md").write_text("not an input", encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return _write_corpus(tmp_path / "in")


def _parts(out: Path) -> dict[str, list[dict]]:
    return {p.name: pq.read_table(p).to_pylist() for p in sorted(out.glob("part-*.parquet"))}


def test_local_output_contract(onnx_model, corpus, tmp_path):
    out = tmp_path / "out"
    res = tag_corpus(onnx_model, [corpus], out, backend="onnx", rows_per_shard=15)
    # a.txt, b.jsonl, and c.parquet's 6 row groups (7 rows each, last 5) gathered into 2 shards of >= 15 rows
    assert (res.shards, res.tagged, res.skipped) == (4, 4, 0)
    parts = _parts(out)
    assert len(parts) == 4
    rows = [r for p in parts.values() for r in p]
    assert res.rows == len(rows) == 3 + 3 + 40
    t = pq.read_table(next(out.glob("part-a-*.parquet")))
    assert t.schema.field("entities").type == pa.list_(pa.struct([
        ("start", pa.int32()), ("end", pa.int32()), ("label", pa.string()), ("score", pa.float32()),
        ("text", pa.string())]))
    assert t.column_names == ["source", "row", "id", "text", "entities", "model"]
    assert t["row"].to_pylist() == [0, 3, 4]  # blank lines hold no text; rows keep the line numbers (0-based)
    assert set(t["model"].to_pylist()) == {res.model}
    n_ent = 0
    for r in rows:
        for e in r["entities"]:
            assert r["text"][e["start"]:e["end"]] == e["text"]  # code-point offsets into the text
            n_ent += 1
    assert n_ent == res.entities > 0
    # JSONL: other fields carried through; its "id" is the id; a field named like an output column is renamed
    b = next(p for name, p in parts.items() if name.startswith("part-b-"))
    assert [r["id"] for r in b][0] == "doc-1" and len({r["id"] for r in b}) == 3
    assert [(r["lang"], r["n"]) for r in b] == [("en", 1), ("de", 2), ("fr", 3)]
    assert b[0]["input_entities"] == [] and b[2]["entities"] == []
    # Parquet: other columns carried through; rows numbered across the file
    c = sorted((r for name, p in parts.items() if name.startswith("part-c-") for r in p), key=lambda r: r["row"])
    assert [r["row"] for r in c] == [r["k"] for r in c] == list(range(40))
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["job"]["complete"] and set(manifest["parts"]) == set(parts)
    # same entities as the plain Tagger on the same texts
    from nerkit.predict import Tagger

    tagger = Tagger.load(onnx_model, backend="onnx")
    assert [[e.to_dict() for e in es] for es in tagger.predict([r["text"] for r in c])] == \
        [[{**e, "score": pytest.approx(e["score"], abs=1e-6)} for e in r["entities"]] for r in c]


def test_rerun_redoes_only_a_deleted_part(onnx_model, corpus, tmp_path):
    out = tmp_path / "out"
    tag_corpus(onnx_model, [corpus], out, backend="onnx", rows_per_shard=15)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("part-*.parquet")}
    gone = sorted(before)[2]
    (out / gone).unlink()
    res = tag_corpus(onnx_model, [corpus], out, backend="onnx", rows_per_shard=15)
    assert (res.skipped, res.tagged) == (3, 1)
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("part-*.parquet")}
    assert set(after) == set(before)
    for name in before:
        if name != gone:
            assert after[name][0] == before[name][0]  # untouched
    assert pq.read_table(out / gone).to_pylist() == pq.read_table(pa.BufferReader(before[gone][1])).to_pylist()
    assert not list(out.glob(".*tmp"))  # no temporary files left behind
    # nothing to do on a third run
    assert tag_corpus(onnx_model, [corpus], out, backend="onnx", rows_per_shard=15).tagged == 0
    # other shard ranges for the Parquet file: its old parts are replaced, never left beside the new ones
    res = tag_corpus(onnx_model, [corpus], out, backend="onnx", rows_per_shard=100)
    assert (res.skipped, res.tagged) == (2, 1)
    keys = [(r["source"], r["row"]) for p in _parts(out).values() for r in p]
    assert len(keys) == len(set(keys)) == 46 and len(_parts(out)) == 3


def test_changed_input_is_redone_and_foreign_outputs_refused(onnx_model, corpus, tmp_path):
    out = tmp_path / "out"
    tag_corpus(onnx_model, [corpus / "a.txt"], out, backend="onnx")
    with open(corpus / "a.txt", "a", encoding="utf-8") as f:
        f.write("Paris again\n")
    res = tag_corpus(onnx_model, [corpus / "a.txt"], out, backend="onnx")
    assert res.tagged == 1 and res.rows == 4
    other = tmp_path / "other"
    make_tiny_model(other, seed=1)
    with pytest.raises(NerkitError, match="model="):
        tag_corpus(other, [corpus / "a.txt"], out, backend="torch")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(NerkitError, match="without a tag-corpus manifest"):
        tag_corpus(onnx_model, [corpus / "a.txt"], mine, backend="onnx")
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]


@pytest.mark.parametrize("name, content, where", [
    ("bad.jsonl", '{"text": "ok"}\n{"text": "broken"\n', "bad.jsonl:2: invalid JSON"),
    ("bad.jsonl", '{"text": "ok"}\n\n{"title": "no text"}\n', 'bad.jsonl:3: "text" is missing or null'),
    ("bad.jsonl", '{"text": null}\n', 'bad.jsonl:1: "text" is missing or null'),
    ("bad.jsonl", '{"text": 12}\n', 'bad.jsonl:1: "text" must be a string, got int'),
    ("bad.jsonl", '["text"]\n', "bad.jsonl:1: expected a JSON object, got list"),
    ("bad.jsonl", '{"text": "ok"}\n{"text": "half \\ud800 a pair"}\n', "bad.jsonl:2: a JSON string holds '\\ud800'"),
    ("bad.txt", b"fine\nbad \xff byte\n", "bad.txt:2: invalid UTF-8"),
    ("bad.parquet", None, 'bad.parquet (row 3): "text" is null'),
])
def test_malformed_rows_name_file_and_line(onnx_model, tmp_path, name, content, where):
    src = tmp_path / "in" / name
    src.parent.mkdir()
    if content is None:
        pq.write_table(pa.table({"text": ["a", "b", "c", None, "e"]}), src)
    elif isinstance(content, bytes):
        src.write_bytes(content)
    else:
        src.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        tag_corpus(onnx_model, [src.parent], out, backend="onnx")
    assert where in str(info.value) and str(src) in str(info.value)
    assert not list(out.glob("part-*"))  # nothing written for the bad shard
    from nerkit.cli import main

    assert main(["tag-corpus", str(onnx_model), str(src), "--output", str(tmp_path / "out2"), "--quiet"]) == 2


def test_folders_globs_and_files(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(corpus)
    names = lambda ps: [p.name for p in ps]  # noqa: E731
    assert names(find_inputs([corpus])) == ["a.txt", "c.parquet", "b.jsonl"]
    assert names(find_inputs(["**/*.jsonl", "a.txt", str(corpus / "a.txt")])) == ["b.jsonl", "a.txt"]
    assert names(find_inputs(["*.txt"])) == ["a.txt"]
    for bad, msg in [("nope/*.txt", "matches no"), ("missing.txt", "no such file"), ("notes.md", "unsupported")]:
        with pytest.raises(NerkitError, match=msg):
            find_inputs([bad])
    # an output folder inside an input folder is never read back as input
    (corpus / "out").mkdir()
    (corpus / "out" / "x.txt").write_text("x\n", encoding="utf-8")
    assert "x.txt" not in names(find_inputs([corpus], exclude=corpus / "out"))
    # ...and when it is the only input, the message says so (it said "no input files" of an existing file)
    with pytest.raises(NerkitError, match=r"a\.txt is --output .*a\.txt or lies in it.*give --output a new folder"):
        find_inputs(["a.txt"], exclude="a.txt")


def test_tag_table_and_tag_batch_helper(onnx_model):
    t = pa.table({"body": ["John Smith lives in Paris.", ""], "k": [1, 2]})
    fn = TagBatch(onnx_model, backend="onnx", threads=1, text_column="body")
    out = fn(t)
    assert out.column_names == ["body", "k", "entities"] and out.num_rows == 2
    assert out["entities"].to_pylist()[1] == []
    assert tag_table(fn.tagger, t, "body").equals(out)
    assert fn.tagger.engine.session.get_session_options().intra_op_num_threads == 1


def test_cli_runner_option_and_its_former_name(onnx_model, corpus, tmp_path, capsys):
    from nerkit.cli import main

    assert main(["tag-corpus", str(onnx_model), str(corpus / "a.txt"), "--output", str(tmp_path / "a"),
                 "--runner", "local", "--threads", "1", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["runner"] == "local"
    assert main(["tag-corpus", str(onnx_model), str(corpus / "a.txt"), "--output", str(tmp_path / "b"),
                 "--engine", "local", "--quiet"]) == 0  # the former name still works, and says it is renamed
    captured = capsys.readouterr()
    assert json.loads(captured.out)["runner"] == "local" and "--runner" in captured.err
    assert _parts(tmp_path / "a") == _parts(tmp_path / "b")
    with pytest.warns(DeprecationWarning):
        assert tag_corpus(onnx_model, [corpus / "a.txt"], tmp_path / "c", engine="local").runner == "local"


def test_ray_missing_says_how_to_install(onnx_model, corpus, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(NerkitError, match=r"pip install 'nerkit\[ray\]'"):
        tag_corpus(onnx_model, [corpus], tmp_path / "out", runner="ray", backend="onnx")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- Ray runner on a real 2-CPU local cluster


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nerkit[ray]'); CI installs it")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'nerkit[ray]')")
    flag = tmp_path_factory.mktemp("ray") / "kill-once"
    env = {"NERKIT_TEST_KILL_ONCE": str(flag),
           # the workers must import this checkout's nerkit, whatever else is installed
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the cluster's worker processes
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield flag
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_ray_equals_local_and_survives_a_killed_actor(ray_cluster, onnx_model, corpus, tmp_path):
    local = tmp_path / "local"
    tag_corpus(onnx_model, [corpus], local, backend="onnx", rows_per_shard=15)
    ray_cluster.write_text("die once")  # the first actor batch to see this removes it and exits the process
    res = tag_corpus(onnx_model, [corpus], tmp_path / "ray", runner="ray", backend="onnx", rows_per_shard=15,
                     workers=2, threads=1, batch_rows=4)
    assert not ray_cluster.exists()  # an actor did die mid-job
    assert (res.shards, res.tagged) == (4, 4)
    ray_parts, local_parts = _parts(tmp_path / "ray"), _parts(local)
    assert ray_parts == local_parts  # same files, rows (each exactly once), ids, carried fields and entities
    keys = [(r["source"], r["row"]) for p in ray_parts.values() for r in p]
    assert len(keys) == len(set(keys)) == 46


def test_ray_bad_row_names_file_and_line(ray_cluster, onnx_model, tmp_path):
    src = tmp_path / "in" / "bad.jsonl"
    src.parent.mkdir()
    src.write_text('{"text": "ok"}\n{"text": "ok"}\n{"txt": "typo"}\n', encoding="utf-8")
    with pytest.raises(NerkitError, match=r'bad\.jsonl:3: "text" is missing or null'):
        tag_corpus(onnx_model, [src], tmp_path / "out", runner="ray", backend="onnx")
    assert not list((tmp_path / "out").glob("part-*"))


def test_plan_and_read_shard(corpus):
    shards = plan_shards(find_inputs([corpus]), rows_per_shard=15)
    assert [(Path(s.source).name, s.rg_start, s.rg_stop) for s in shards] == [
        ("a.txt", None, None), ("c.parquet", 0, 3), ("c.parquet", 3, 6), ("b.jsonl", None, None)]


def test_an_unwritable_output_is_one_clear_error(onnx_model, corpus, tmp_path, monkeypatch):
    from nerkit.cli import main
    import nerkit.tagcorpus as tc

    code = main(["tag-corpus", str(onnx_model), str(corpus), "--output", "/dev/null/out", "--quiet"])
    assert code == 2  # was a NotADirectoryError traceback

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)  # the disk fills up while the parts are written
    with pytest.raises(NerkitError, match="No space left on device"):
        tc.tag_corpus(onnx_model, [corpus], tmp_path / "out", backend="onnx")
