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
