"""Label Studio with several annotators: the JSON and JSON-MIN exports of one project give the same records,
for a chosen annotator (id or email) and by the documented rule without one; findings name the task."""
import json
from pathlib import Path

import pytest

from nerkit import formats
from nerkit.cli import main
from nerkit.errors import DataError, NerkitError
from nerkit.types import Span

TEXTS = ["Angela Merkel visited Paris.", "Apple hired Tim Cook.", "Rain in Oslo.", "Nothing at all.", "Ann met Bob."]
USERS = {1: "ann@example.com", 2: "bob@example.com", 3: "cy@example.com"}


def region(text, word, label, k):
    a = text.index(word)
    return {"id": f"r{k}", "from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": a, "end": a + len(word), "text": word, "labels": [label]}}


def project():
    """Five tasks; annotations by users 1-3 in an order where the newest is not the lowest id (as happens when
    an annotator edits an old annotation), one cancelled, one task never annotated."""
    plan = {  # task -> [(annotation id, user, created_at, [(word, label)], cancelled)]
        1: [(11, 2, "2024-03-02", [("Angela Merkel", "PER"), ("Paris", "ORG")], False),
            (10, 1, "2024-03-01", [("Angela Merkel", "PER"), ("Paris", "LOC")], False)],
        2: [(20, 1, "2024-03-01", [("Apple", "ORG"), ("Tim Cook", "PER")], False),
            (21, 2, "2024-03-03", [("Apple", "ORG")], False),
            (22, 3, "2024-03-04", [], True)],
        3: [(31, 3, "2024-03-05", [("Oslo", "LOC")], False),
            (30, 2, "2024-03-06", [("Oslo", "GPE")], False)],
        4: [],
        5: [(50, 3, "2024-03-07", [("Ann", "PER"), ("Bob", "PER")], False)],
    }
    tasks = []
    for tid, anns in plan.items():
        text = TEXTS[tid - 1]
        tasks.append({"id": tid, "data": {"text": text}, "predictions": [], "annotations": [
            {"id": aid, "completed_by": user, "was_cancelled": cancelled, "ground_truth": False, "task": tid,
             "created_at": f"{day}T10:00:00Z", "updated_at": f"{day}T10:00:00Z", "lead_time": 3.0,
             "result": [region(text, w, lab, k) for k, (w, lab) in enumerate(spans)]}
            for aid, user, day, spans, cancelled in anns]})
    return tasks


def json_min(tasks, emails=False):
    """The JSON-MIN export of the same project, made by Label Studio's rules: one row per non-cancelled
    annotation, newest first within a task, one row without labels for a task never annotated."""
    rows = []
    for t in tasks:
        anns = [a for a in t["annotations"] if not a["was_cancelled"]]
        if not t["annotations"]:
            rows.append({"text": t["data"]["text"], "id": t["id"], "annotator": None, "annotation_id": None,
                         "created_at": None, "updated_at": None, "lead_time": None})
        for a in sorted(anns, key=lambda a: a["created_at"], reverse=True):
            row = {"text": t["data"]["text"], "id": t["id"]}
            if a["result"]:
                row["label"] = [dict(r["value"]) for r in a["result"]]
            row.update({"annotator": USERS[a["completed_by"]] if emails else a["completed_by"],
                        "annotation_id": a["id"], "created_at": a["created_at"], "updated_at": a["updated_at"],
                        "lead_time": a["lead_time"]})
            rows.append(row)
    return rows


@pytest.fixture
def exports(tmp_path):
    tasks = project()
    full = tmp_path / "export.json"
    full.write_text(json.dumps(tasks), encoding="utf-8")  # Label Studio writes the JSON export on one line
    mini = tmp_path / "export_min.json"
    mini.write_text(json.dumps(json_min(tasks), indent=2), encoding="utf-8")
    with_emails = [dict(t, annotations=[dict(a, completed_by={"id": a["completed_by"], "email": USERS[a["completed_by"]]})
                                        for a in t["annotations"]]) for t in tasks]
    full_emails = tmp_path / "export_emails.json"
    full_emails.write_text(json.dumps(with_emails), encoding="utf-8")
    mini_emails = tmp_path / "export_min_emails.json"
    mini_emails.write_text(json.dumps(json_min(tasks, emails=True), indent=2), encoding="utf-8")
    return full, mini, full_emails, mini_emails


def converted(path, tmp_path, *args):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.jsonl"
    assert main(["convert", str(path), str(out), "--to", "nerkit", *args]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_same_records_from_json_and_json_min_for_each_annotator(exports, tmp_path):
    full, mini, full_emails, mini_emails = exports
    for who in ("1", "2", "3"):
        a = converted(full, tmp_path, "--annotator", who)
        assert a == converted(mini, tmp_path, "--annotator", who)
        email = USERS[int(who)]
        assert a == converted(full_emails, tmp_path, "--annotator", email)
        assert a == converted(mini_emails, tmp_path, "--annotator", email)
        assert a == converted(full_emails, tmp_path, "--annotator", who)  # the id works when emails are there too
    by_2 = converted(full, tmp_path, "--annotator", "2")
    assert [r["text"] for r in by_2] == TEXTS[:3]  # user 2 annotated tasks 1-3 only
    assert by_2[0]["entities"][1] == {"start": 22, "end": 27, "label": "ORG"}


def test_without_annotator_the_first_submitted_annotation_is_kept_in_both_exports(exports, tmp_path):
    full, mini, _, _ = exports
    a = converted(full, tmp_path)
    assert a == converted(mini, tmp_path)
    # lowest annotation id per task: 10 (user 1), 20 (user 1), 30 (user 2), task 4 has none, 50 (user 3)
    assert [r["text"] for r in a] == [TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[4]]
    assert [e["label"] for e in a[0]["entities"]] == ["PER", "LOC"]
    assert [e["label"] for e in a[2]["entities"]] == ["GPE"]


def test_unknown_annotator_lists_the_known_ones(exports, capsys, tmp_path):
    full, _, _, _ = exports
    assert main(["convert", str(full), str(tmp_path / "o.jsonl"), "--annotator", "zoe@example.com"]) == 2
    err = capsys.readouterr().err
    assert "zoe@example.com" in err and "1, 2, 3" in err and "user ids" in err


def test_findings_name_the_task(exports):
    full, mini, _, _ = exports
    log = formats.ChangeLog()
    records = formats.read(full, None, log)
    assert records[0].source.endswith("export.json:1 task 1 annotation 1")
    assert any("task 2 annotation 3" in line for line in log.details())  # the cancelled annotation
    records = formats.read(mini, None, formats.ChangeLog())
    assert "task 1" in records[0].source and records[0].source.split(" task ")[0].endswith(":2")


def test_json_min_reads_every_labels_control(tmp_path):
    row = {"text": "Ann met Bob in Oslo.", "id": 7, "label": [{"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}],
           "place": [{"start": 15, "end": 19, "text": "Oslo", "labels": ["LOC"]}], "annotator": 1, "annotation_id": 70}
    path = tmp_path / "m.json"
    path.write_text(json.dumps([row]), encoding="utf-8")
    (rec,) = formats.read(path)
    assert rec.spans == [Span(0, 3, "PER"), Span(15, 19, "LOC")]


def test_labelstudio_config_command(tmp_path, capsys):
    from pathlib import Path

    schema = Path(__file__).parent / "fixtures" / "annotate" / "schema.yaml"
    assert main(["labelstudio-config", str(schema), "--output", str(tmp_path / "config.xml")]) == 0
    xml = (tmp_path / "config.xml").read_text(encoding="utf-8")
    assert '<Labels name="label" toName="text"' in xml and '<Text name="text" value="$text"' in xml
    assert main(["labelstudio-config", str(schema)]) == 0
    assert capsys.readouterr().out.strip() == xml.strip()


def test_export_with_predictions_only_stops(tmp_path):
    tasks = [{"id": 1, "data": {"text": "Ann left."}, "annotations": [],
              "predictions": [{"result": [region("Ann left.", "Ann", "PER", 1)]}]}]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    with pytest.raises(NerkitError, match='no task has an annotation.*"annotations"'):
        formats.convert(path, tmp_path / "o.jsonl")


def test_agree_compares_the_chosen_annotators_alike_in_both_exports(exports, capsys):
    full, mini, _, _ = exports
    results = []
    for path in (full, mini):
        assert main(["agree", str(path), "--annotator", "1", "--annotator", "2", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["annotators"] == ["export:1", "export:2"]
    assert results[1]["annotators"] == ["export_min:1", "export_min:2"]
    for key in ("items", "entity_f1_exact", "token_kappa"):
        if key in results[0]:
            assert results[0][key] == results[1][key], key
    assert results[0]["items"] == 2  # tasks 1 and 2: the only ones both annotated


def _labels(docs):
    return [t for d in docs for s in d.sentences for t in s.tags]


def _sentences(docs):
    return [(s.words, s.tags) for d in docs for s in d.sentences]


def test_training_data_read_for_one_annotator(exports, tmp_path):

    full, mini, _, _ = exports
    by_2 = formats.load(full, annotators=["2"])
    assert _sentences(by_2) == _sentences(formats.load(mini, annotators=["2"]))
    assert len(by_2) == 3 and "B-ORG" in _labels(by_2[:1])  # user 2 tagged Paris ORG in task 1
    first = formats.load(full)  # the documented rule: user 1's annotation of task 1, Paris LOC
    assert "B-LOC" in _labels(first[:1]) and "B-ORG" not in _labels(first[:1])
    with pytest.raises(NerkitError, match="bob@example.com"):  # this export names users by id only
        formats.as_documents(str(full), annotators=["bob@example.com"])


def test_annotator_on_a_one_annotation_format_is_refused_naming_the_file(tmp_path, capsys):
    conll = tmp_path / "train.conll"
    conll.write_text("Ann B-PER\nsleeps O\n", encoding="utf-8")
    assert main(["stats", str(conll), "--annotator", "2"]) == 2
    err = capsys.readouterr().err
    assert str(conll) in err and "one annotation per sentence" in err and "Traceback" not in err


def test_train_and_evaluate_on_one_annotators_labels(exports, tiny_model, tmp_path, capsys):
    full, _, _, _ = exports
    out = tmp_path / "model"
    assert main(["train", "--train", str(full), "--dev", str(full), "--annotator", "2", "--model", str(tiny_model),
                 "--max-steps", "2", "--batch-tokens", "256", "--output", str(out)]) == 0
    meta = json.loads((out / "nerkit.json").read_text(encoding="utf-8"))
    assert meta["data"]["train"]["annotators"] == ["2"] and meta["data"]["train"]["sentences"] == 3
    capsys.readouterr()
    assert main(["evaluate", str(out), str(full), "--annotator", "3", "--json", "--backend", "torch"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sentences"] == 2 and report["support"] == 3  # user 3: Oslo in task 3, Ann and Bob in task 5


def project_with_a_duplicate_and_a_partial_task():
    """User 1 annotated task 1 twice (ids 10 and 12: the second says Paris is an ORG); task 3 has no annotation by
    user 1 (a partly annotated task when users 1 and 2 are compared)."""
    tasks = project()
    text = TEXTS[0]
    tasks[0]["annotations"].append(
        {"id": 12, "completed_by": 1, "was_cancelled": False, "ground_truth": False, "task": 1,
         "created_at": "2024-03-09T10:00:00Z", "updated_at": "2024-03-09T10:00:00Z", "lead_time": 2.0,
         "result": [region(text, "Angela Merkel", "PER", 0), region(text, "Paris", "ORG", 1)]})
    return tasks


def test_agree_and_adjudicate_give_the_same_results_from_json_and_json_min(tmp_path, capsys):
    tasks = project_with_a_duplicate_and_a_partial_task()
    full, mini = tmp_path / "full.json", tmp_path / "mini.json"
    full.write_text(json.dumps(tasks), encoding="utf-8")
    mini.write_text(json.dumps(json_min(tasks)), encoding="utf-8")  # newest first: annotation 12 before 10
    results, merged, reviews = [], [], []
    for path in (full, mini):
        assert main(["agree", str(path), "--annotator", "1", "--annotator", "2", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
        out = tmp_path / f"{path.stem}.merged.jsonl"
        assert main(["adjudicate", str(path), "--annotator", "1", "--annotator", "2", "--output", str(out)]) == 0
        printed = capsys.readouterr().out
        # user 1's second annotation of task 1 counted as such; task 3 (user 2 only) listed, not dropped silently
        assert "further annotation of a task skipped" in printed and "task 3" in printed
        assert "1 texts not annotated by every annotator" in printed
        merged.append(out.read_text(encoding="utf-8"))
        review = Path(f"{tmp_path / path.stem}.merged.review.jsonl").read_text(encoding="utf-8")
        reviews.append([json.loads(x) for x in review.replace(f'"{path.stem}:', '"user:').splitlines()])
        for item in reviews[-1]:
            del item["source"]
    a, b = results
    assert a["items"] == b["items"] == 2 and a["excluded"] == {"full:1": 0, "full:2": 1}
    assert a["exact_f1"] == b["exact_f1"] == pytest.approx(4 / 7)  # user 1's first annotation (id 10): Paris LOC
    assert a["kappa"] == b["kappa"] and a["partial_f1"] == b["partial_f1"]
    assert merged[0] == merged[1] and reviews[0] == reviews[1]
    assert any(o["spans"] == [{"start": 22, "end": 27, "label": "LOC", "text": "Paris"}]
               for r in reviews[0] for o in r["options"] if o["annotators"] == ["user:1"])


def sentence_project(tmp_path):
    """A project whose labeling config shows <Text name="sentence" value="$sentence">, tasks with another string
    field ("source"), ids from 47: its JSON and JSON-MIN exports."""
    tasks = []
    for k, (text, word, label) in enumerate([("Ann met Bob.", "Bob", "PER"), ("Rain in Oslo.", "Oslo", "LOC")]):
        a = text.index(word)
        tasks.append({"id": 47 + k, "data": {"sentence": text, "source": "news"}, "annotations": [
            {"id": 100 + k, "completed_by": 1, "was_cancelled": False, "created_at": "2024-03-01T10:00:00Z",
             "result": [{"id": "r1", "from_name": "label", "to_name": "sentence", "type": "labels",
                         "value": {"start": a, "end": a + len(word), "text": word, "labels": [label]}}]}]})
    rows = [{"sentence": t["data"]["sentence"], "source": "news", "id": t["id"],
             "label": [dict(r["value"]) for r in t["annotations"][0]["result"]], "annotator": 1,
             "annotation_id": t["annotations"][0]["id"], "created_at": "2024-03-01T10:00:00Z",
             "updated_at": "2024-03-01T10:00:00Z", "lead_time": 1.5} for t in tasks]
    full, mini = tmp_path / "sent.json", tmp_path / "sent_min.json"
    full.write_text(json.dumps(tasks), encoding="utf-8")
    mini.write_text(json.dumps(rows), encoding="utf-8")
    return full, mini


def test_text_field_names_the_labeling_configs_text(tmp_path, capsys):
    full, mini = sentence_project(tmp_path)
    for path in (full, mini):
        with pytest.raises(DataError, match=r'task 47: task has no "text" field and several string fields '
                                            r"\(sentence, source\).*--text-field NAME"):
            formats.read(path)
    expected = [("Ann met Bob.", [Span(8, 11, "PER")]), ("Rain in Oslo.", [Span(8, 12, "LOC")])]
    for path in (full, mini):
        assert [(r.text, r.spans) for r in formats.read(path, text_field="sentence")] == expected
        with pytest.raises(DataError, match=r"task 47: task has no text field 'body' .* sentence, source"):
            formats.read(path, text_field="body")
        out = tmp_path / f"{path.stem}.jsonl"
        assert main(["convert", str(path), str(out), "--text-field", "sentence"]) == 0
        assert [json.loads(x)["text"] for x in out.read_text(encoding="utf-8").splitlines()] == [t for t, _ in expected]
        assert main(["stats", str(path), "--text-field", "sentence"]) == 0
    capsys.readouterr()
    assert main(["convert", str(full), str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "task 47" in err and "--text-field" in err and "Traceback" not in err
    # with only one string field, it is the text without being named (JSON-MIN included)
    rows = json.loads(mini.read_text(encoding="utf-8"))
    for r in rows:
        del r["source"]
    mini.write_text(json.dumps(rows), encoding="utf-8")
    assert [(r.text, r.spans) for r in formats.read(mini)] == expected


def test_errors_name_label_studios_task_id(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"id": 47, "data": {"text": "Ann."}, "annotations": {"result": []}}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"task 47: \"annotations\" must be a list") as e:
        formats.read(path)
    assert "task 1" not in str(e.value)
