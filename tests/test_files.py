"""nerkit.files and nerkit.errors: atomic replacement, and errors that cross process boundaries whole."""
import pickle

from nerkit.errors import DataError


def test_data_error_survives_pickling_with_path_line_and_message():
    # Ray sends a worker's exception to the driver pickled: a bad row must still name its file and line there.
    err = DataError("corpus/a.jsonl", 3, '"text" is missing or null')
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DataError
    assert (back.path, back.line, back.problem) == ("corpus/a.jsonl", 3, '"text" is missing or null')
    assert str(back) == str(err) == 'corpus/a.jsonl:3: "text" is missing or null'
    whole = pickle.loads(pickle.dumps(DataError("b.conll", None, "no such file")))
    assert (whole.line, str(whole)) == (None, "b.conll: no such file")


def test_replacing_keeps_the_old_file_whole_when_the_body_raises(tmp_path):
    import pytest

    from nerkit.files import replacing

    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed"):
        with replacing(target) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # the temporary file is gone


def test_replacing_moves_the_new_file_in_whole_with_the_old_permissions(tmp_path):
    import os

    from nerkit.files import replacing

    target = tmp_path / "out.tsv"
    target.write_text("old")
    os.chmod(target, 0o640)
    with replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_text("new, ")
        assert target.read_text() == "old"  # readers see the old file until the body is done
        with open(tmp, "a") as f:
            f.write("whole")
    assert target.read_text() == "new, whole"
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_replacing_a_folder_and_a_new_path_in_a_new_folder(tmp_path):
    import pytest

    from nerkit.files import replacing

    dataset = tmp_path / "sub" / "dataset"
    with replacing(dataset) as tmp:  # the parent is created; the body makes a folder
        tmp.mkdir()
        (tmp / "data.arrow").write_bytes(b"x")
    assert (dataset / "data.arrow").read_bytes() == b"x"
    with pytest.raises(ValueError):
        with replacing(tmp_path / "sub" / "other") as tmp:
            tmp.mkdir()
            (tmp / "part").write_text("half")
            raise ValueError
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["dataset"]
