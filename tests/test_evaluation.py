"""Entity scores over nested sets, the overlap score and the report table (no model: hand-made entity sets)."""
from nerkit.evaluation import format_report, overlap_scores, score, score_sets


def test_overlap_score_counts_a_clause_found_with_other_edges():
    gold = [{("Clause", 0, 10), ("Clause", 20, 30)}, {("Law", 0, 4)}]
    pred = [{("Clause", 0, 6), ("Clause", 21, 40), ("Law", 20, 30)}, {("Law", 2, 4)}]
    ov = overlap_scores(gold, pred)
    # both clauses covered >= 50 % (6 of 10, 9 of 10); "Law" 20-30 has the wrong type; 2 of 4 characters is half
    assert (ov["recall"], ov["precision"], ov["support"]) == (1.0, 0.75, 3)
    assert ov["per_type"]["Law"]["precision"] == 0.5 and ov["per_type"]["Clause"]["f1"] == 1.0
    assert overlap_scores(gold, pred, threshold=0.7)["per_type"]["Clause"]["recall"] == 0.5
    exact = score_sets(gold, pred)
    assert exact["f1"] == 0.0 and exact["overlap"] == ov  # the exact score stays beside it


def test_flat_report_keeps_seqeval_scores_and_adds_the_overlap_score():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]
    rep = score(gold, pred)
    assert rep["f1"] == 0.5 and rep["overlap"]["f1"] == 1.0  # "John" covers half of "John Smith"


def test_report_table_fits_long_type_names_and_leaves_undefined_recall_blank():
    gold = [{("LimitationOfLiability", 0, 30)}]
    pred = [{("LimitationOfLiability", 0, 30), ("PER", 2, 3), ("LimitationOfLiability", 5, 9)}]
    table = format_report({**score_sets(gold, pred), "sentences": 1, "words": 30})
    lines = table.splitlines()
    widths = {len(x) for x in lines[:lines.index(next(x for x in lines if x.startswith("errors")))]}
    assert len(widths) == 1, table  # every row of the table lines up
    per = next(x for x in lines if x.startswith("PER ")).split()
    assert per[1:] == ["0.00", "-", "-", "0"], table  # a type with no gold entity: recall and F1 undefined
    inner = next(x for x in lines if x.startswith("inner")).split()
    assert inner[1:] == ["0.00", "-", "-", "0"] and "overlap >= 50 %" in table, table


def test_report_gives_the_overlap_score_per_type_where_edges_move_the_score():
    from nerkit.report import report_html

    def rows(gold, pred):
        report = {**score_sets(gold, pred), "sentences": 1, "words": 50}
        lines = format_report(report).splitlines()
        below = lines[lines.index(next(x for x in lines if x.startswith("overlap"))) + 1:]
        return {x.split()[0]: x.split()[1:] for x in below if x.startswith("  ")}, report

    # the clause predicted over 20 of its 30 characters: missed exactly, found by overlap (exact F1 50, overlap 100)
    gold = [{("Clause", 0, 30), ("PER", 40, 42)}]
    found, report = rows(gold, [{("Clause", 0, 20), ("PER", 40, 42), ("Clause", 31, 35)}])
    assert found == {"Clause": ["50.00", "100.00", "66.67", "1"], "PER": ["100.00", "100.00", "100.00", "1"]}, found
    assert "<td>Clause (overlap)</td>" in report_html(report, [])  # the page has them too
    assert rows(gold, [set(gold[0])])[0] == {}  # edges right: the rows would repeat the exact ones
    assert rows([{("Clause", 0, 30)}], [{("Clause", 0, 20)}])[0] == {}  # one type: its row is the micro one
    assert "<td>Clause (overlap)</td>" not in report_html(rows(gold, [set(gold[0])])[1], [])


def test_error_items_name_each_error_and_add_up_to_the_breakdown():
    from nerkit.evaluation import error_items

    gold = {("PER", 0, 2), ("LOC", 3, 4), ("ORG", 5, 6), ("PER", 7, 8)}
    pred = {("PER", 0, 1), ("ORG", 3, 4), ("LOC", 6, 7), ("PER", 7, 8)}
    items = error_items(gold, pred)
    assert items == [("wrong_boundary", ("PER", 0, 2), [("PER", 0, 1)]), ("wrong_type", ("LOC", 3, 4), [("ORG", 3, 4)]),
                     ("missed", ("ORG", 5, 6), []), ("spurious", None, [("LOC", 6, 7)])]
    total = score_sets([gold], [pred])["errors"]["total"]
    assert sum(total.values()) == len(items) and total["wrong_type_and_boundary"] == 0


def test_marks_nest_inside_their_container_and_a_crossing_span_is_left_to_the_list():
    from nerkit.report import _marked

    text = "the IL-2 gene promoter"
    spans = [("DNA", 4, 13), ("protein", 4, 8), ("DNA", 4, 22), ("RNA", 9, 22)]  # RNA crosses "IL-2 gene"
    out = _marked(text, spans, {}, {("protein", 4, 8)})
    assert out.count("<mark") == 3 and "RNA" not in out
    assert out.index(">DNA<") > out.index(">protein<")  # the inner mark closes first
    assert out.startswith("the <mark") and '<mark class="x"' in out and out.endswith("</mark>")


def _gold_file(path):
    rows = []
    for _ in range(6):
        rows += ["john B-PER", "smith I-PER", "visited O", "paris B-LOC", ". O", ""]
        rows += ["he O", "met O", "mary B-PER", "jones I-PER", ""]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_evaluate_writes_an_error_page_and_errors_that_read_back(tiny_model, tmp_path, capsys):
    import json

    from nerkit import formats
    from nerkit.cli import main

    data = _gold_file(tmp_path / "gold.conll")
    page, errs = tmp_path / "report.html", tmp_path / "errors.jsonl"
    assert main(["evaluate", str(tiny_model), str(data), "--json", "--html", str(page), "--errors", str(errs),
                 "--backend", "torch"]) == 0
    report = json.loads(capsys.readouterr().out)
    records = [json.loads(x) for x in errs.read_text().splitlines()]
    total = sum(report["errors"]["total"].values())
    assert total and sum(len(r["errors"]) for r in records) == total  # a random model errs; every error is listed
    for r in records:
        assert all(r["text"][e["start"]:e["end"]] == e["text"] for e in r["entities"] + r["predicted"])
        assert r["doc"] and r["sentence"] >= 1
    back = formats.load(errs)  # the gold "entities" read back as nerkit JSONL
    assert len(back) == len(records) and sum(len(s.words) for d in back for s in d.sentences)
    html = page.read_text()
    assert html.count('<div class="s"') == len(records) and 'id="kind"' in html and "micro avg" in html


def test_evaluate_refuses_a_report_path_it_cannot_write_before_any_work(tiny_model, tmp_path, capsys):
    from nerkit.cli import main

    data = _gold_file(tmp_path / "gold.conll")
    before = data.read_bytes()
    assert main(["evaluate", str(tiny_model), str(data), "--html", str(data)]) != 0
    assert "is the input" in capsys.readouterr().err and data.read_bytes() == before
    assert main(["evaluate", str(tiny_model), str(data), "--errors", str(tmp_path / "no" / "e.jsonl")]) != 0
    assert "no directory" in capsys.readouterr().err
    same = str(tmp_path / "r.html")
    assert main(["evaluate", str(tiny_model), str(data), "--html", same, "--errors", same]) != 0
    assert "same file" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_type_confusions_count_gold_entities_read_as_another_type():
    from nerkit.evaluation import Compared
    from nerkit.report import confusions, report_html

    cs = [Compared("d", "John Smith in Paris", {("PER", 0, 10), ("LOC", 14, 19)}, {("ORG", 0, 4), ("LOC", 14, 19)}),
          Compared("d", "Acme Paris", {("ORG", 0, 4)}, {("PER", 0, 4), ("LOC", 5, 10)})]
    assert confusions(cs) == {("PER", "ORG"): 1, ("ORG", "PER"): 1}  # the spurious LOC is no confusion
    page = report_html(score_sets([c.gold for c in cs], [c.pred for c in cs]) | {"words": 6}, cs)
    assert "Types confused" in page and page.count('<div class="s"') == 2


def test_reusing_runs_the_network_once_on_the_words_scored(tiny_model, tmp_path, monkeypatch):
    import json

    from nerkit import formats
    from nerkit.evaluation import as_read, evaluate
    from nerkit.predict import Tagger

    path = tmp_path / "gold.jsonl"  # "Smith-induced": the gold span ends inside a word, so scoring re-reads it
    text = "John Smith-induced rash in Paris ."
    path.write_text(json.dumps({"text": text, "entities": [{"start": 0, "end": 10, "label": "PER"},
                                                           {"start": 27, "end": 32, "label": "LOC"}]}) + "\n")
    docs = formats.load(path)
    assert as_read(docs) is not None
    tagger = Tagger.load(tiny_model, backend="torch")
    calls = []
    real = tagger._word_logprobs_steps
    monkeypatch.setattr(tagger, "_word_logprobs_steps", lambda d: calls.append(d) or real(d))
    alone = evaluate(tagger, docs)
    with tagger.reusing():
        assert evaluate(tagger, docs) == alone and evaluate(tagger, docs) == alone
    assert len(calls) == 2 and tagger._memo is None  # once alone, once for both inside the block
    whole = formats.load(_gold_file(tmp_path / "gold.conll"))  # nothing re-read: the documents themselves
    with tagger.reusing():
        assert evaluate(tagger, whole) == evaluate(tagger, whole)
    assert len(calls) == 3



def test_evaluate_names_the_data_types_the_model_does_not_have(tiny_model):
    from nerkit.evaluation import evaluate
    from nerkit.predict import Tagger
    from nerkit.types import Document, Sentence

    tagger = Tagger.load(tiny_model, backend="torch")
    assert {"PER", "LOC"} <= {t[2:] for t in tagger.labels if t != "O"}
    docs = [Document("d", [Sentence(["john", "smith", "in", "paris", "with", "il-2"],
                                    ["B-PER", "I-PER", "O", "B-LOC", "O", "B-protein"])])]
    report = evaluate(tagger, docs)
    assert report["unknown_types"] == ["protein"]  # PER and LOC are the model's: not named
    assert "note: the model has no type protein: those entities can only be missed" in format_report(report)
    known = evaluate(tagger, [Document("d", [Sentence(["john", "smith"], ["B-PER", "I-PER"])])])
    assert "unknown_types" not in known and "note:" not in format_report(known)


def test_seen_recall_splits_found_entities_by_what_training_annotates():
    from nerkit.evaluation import Compared, seen_recall
    from nerkit.types import Document, Sentence

    train = [Document("t", [Sentence(["the", "IL-2", "gene", "and", "Mary"], ["O", "B-DNA", "I-DNA", "O", "B-PER"],
                                     layers=[["O", "B-protein", "O", "O", "O"]])])]
    text = "an il-2  gene , il-2 , Mary and Paris"
    gene, inner, alone, mary, paris = ("DNA", 3, 13), ("protein", 3, 7), ("protein", 16, 20), ("PER", 23, 27), \
        ("LOC", 32, 37)
    assert text[gene[1]:gene[2]] == "il-2  gene" and text[paris[1]:paris[2]] == "Paris"
    c = Compared("d", text, {gene, inner, alone, mary, paris, ("PER", 32, 37)}, {gene, alone, paris})
    got = seen_recall([c], train)
    # seen: "il-2 gene" as DNA (spacing and case folded), "il-2" as protein (twice), "mary" as PER; the same text
    # with another type is not seen ("Paris" as PER), nor a text training never annotates
    assert got["seen"] == {"found": 2, "support": 4, "recall": 0.5}
    assert got["unseen"] == {"found": 1, "support": 2, "recall": 0.5}
    assert got["inner seen as inner"] == {"found": 0, "support": 1, "recall": 0.0}  # inside the gene
    assert "inner other" not in got  # "il-2" alone lies inside no entity here


def test_evaluate_seen_reports_recall_by_what_training_annotates(tiny_model, tmp_path, capsys):
    import json

    from nerkit.cli import main

    data = _gold_file(tmp_path / "gold.conll")
    train = tmp_path / "train.conll"
    train.write_text("john B-PER\nsmith I-PER\nvisited O\nrome B-LOC\n")
    assert main(["evaluate", str(tiny_model), str(data), "--seen", str(train), "--json", "--backend", "torch"]) == 0
    report = json.loads(capsys.readouterr().out)
    seen, unseen = report["seen"]["seen"], report["seen"]["unseen"]
    assert (seen["support"], unseen["support"]) == (6, 12)  # "john smith" x6; "paris", "mary jones" x6 each
    assert seen["found"] + unseen["found"] == round(report["recall"] * 18)
    from nerkit import formats
    from nerkit.evaluation import Compared, evaluate
    from nerkit.predict import Tagger

    earlier = [Compared("x", "john smith", {("PER", 0, 10)}, set())]  # a list holding another call's sentence
    api = evaluate(Tagger.load(tiny_model, backend="torch"), formats.load(data), compared=earlier,
                   train=formats.load(train))
    assert api["seen"] == report["seen"] and len(earlier) == 1 + 12  # its 12 sentences added; only they count
    assert main(["evaluate", str(tiny_model), str(data), "--seen", str(train), "--backend", "torch"]) == 0
    assert "recall by whether training annotates" in capsys.readouterr().out
    page = tmp_path / "report.html"
    assert main(["evaluate", str(tiny_model), str(data), "--seen", str(train), "--html", str(page)]) == 0
    assert "Seen in training" in page.read_text() and "inner" not in capsys.readouterr().out  # flat: no inner rows
    assert main(["evaluate", str(tiny_model), str(data), "--seen", str(train), "--html", str(train)]) != 0
    assert "is the input" in capsys.readouterr().err and train.read_text().startswith("john B-PER")
    raw = tmp_path / "raw.jsonl"  # texts without "entities": unlabelled
    raw.write_text('{"text": "john smith visited rome"}\n')
    assert main(["evaluate", str(tiny_model), str(data), "--seen", str(raw)]) != 0
    assert "--seen (training) data must be labelled" in capsys.readouterr().err
