"""Agreement figures against a hand-computed example and scikit-learn, and adjudication with a review round trip.

The example (three annotators, in three tools' formats, of the same two texts):

    text                            A                        B                      C (= A)
    John Smith lives in New York    PER John Smith,          PER John Smith,        as A
                                    LOC New York             LOC York
    Mary visited Paris              PER Mary, LOC Paris      PER Mary, ORG Paris    as A

A vs B: exact matches 2 of 4+4 spans -> F1 = 4/8 = 0.5; partial adds New York~York -> 6/8 = 0.75.
Tokens (9): A = B-PER I-PER O O B-LOC I-LOC | B-PER O B-LOC
            B = B-PER I-PER O O O     B-LOC | B-PER O B-ORG
po = 6/9; pe = (2*2 [B-PER] + 1*1 [I-PER] + 3*4 [O] + 2*1 [B-LOC]) / 81 = 19/81
kappa = (54/81 - 19/81) / (62/81) = 35/62.
Fleiss (A, B, C): six tokens unanimous (P_i = 1), three split 2-1 (P_i = 1/3): P = 7/9;
category totals B-PER 6, I-PER 3, O 10, B-LOC 5, I-LOC 2, B-ORG 1 of 27: Pe = 175/729;
kappa = (7/9 - 175/729) / (1 - 175/729) = 392/554 = 196/277.
"""
import json
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from nerkit.annotate import agreement as ag
from nerkit.annotate.adjudicate import adjudicate, apply_review, write_review
from nerkit.cli import main
from nerkit.errors import DataError, NerkitError
from nerkit.formats import Record, read
from nerkit.types import Span

FIX = Path(__file__).parent / "fixtures" / "annotate"
FILES = [FIX / "ann_a.jsonl", FIX / "ann_b.json", FIX / "ann_c.jsonl"]


def aligned(paths=FILES):
    names, sets = ag.load_annotators(paths)
    return ag.align(names, sets)


def test_alignment_matches_texts_across_tools():
    al = aligned()
    assert al.names == ["ann_a", "ann_b", "ann_c"]
    assert [r[0].text for r in al.records] == ["John Smith lives in New York", "Mary visited Paris"]
    assert al.excluded == {"ann_a": 0, "ann_b": 1, "ann_c": 0}  # B's extra text is left out, and counted
    assert al.records[0][1].spans == [Span(0, 10, "PER"), Span(24, 28, "LOC")]


def test_hand_computed_two_annotators():
    result = ag.agreement(aligned(FILES[:2]))
    assert result["exact_f1"] == pytest.approx(0.5)
    assert result["partial_f1"] == pytest.approx(0.75)
    assert result["kappa"]["cohen"] == pytest.approx(35 / 62)
    pair = result["pairs"][0]
    assert pair["exact"] == {"matches": 2, "a": 4, "b": 4, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert result["tokens"] == 9
    per = result["per_type"]
    assert per["PER"]["exact_f1"] == 1.0 and per["LOC"]["exact_f1"] == 0.0
    assert per["LOC"]["partial_f1"] == pytest.approx(2 / 3) and per["ORG"]["exact_f1"] == 0.0
    assert per["LOC"]["count"] == {"ann_a": 2, "ann_b": 1}


def test_hand_computed_fleiss_three_annotators():
    result = ag.agreement(aligned())
    assert result["kappa"]["fleiss"] == pytest.approx(196 / 277)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert pairs[("ann_a", "ann_c")]["exact"]["f1"] == 1.0
    assert result["kappa"]["mean_pairwise_cohen"] == pytest.approx((35 / 62 * 2 + 1) / 3)


def test_token_kappa_matches_scikit_learn():
    al = aligned()
    tags = ag.token_labels(al)
    assert tags[0] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "B-PER", "O", "B-LOC"]
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert ag.cohen_kappa(tags[i], tags[j]) == pytest.approx(cohen_kappa_score(tags[i], tags[j]))
    for label in ("LOC", "ORG"):
        a, b = ag.token_types(al, label)[:2]
        # on flat data a type's tokens are the tokens its tags mark
        assert a == [label if t[2:] == label else "O" for t in tags[0]]
        assert ag.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_per_type_kappa_counts_nested_entities():
    text = "the IL-2 gene is active"  # annotator b leaves out the protein inside the DNA region
    a = [Record("x", text, [Span(4, 13, "DNA"), Span(4, 8, "protein")])]
    b = [Record("x", text, [Span(4, 13, "DNA")])]
    result = ag.agreement(ag.align(["a", "b"], [a, b]))
    assert result["per_type"]["DNA"]["kappa"]["cohen"] == 1.0
    assert result["per_type"]["protein"]["kappa"]["cohen"] == 0.0  # one tagged "IL-2" protein, the other nothing
    assert result["kappa"]["cohen"] == 1.0 and result["kappa_outermost"]  # the tags hold the DNA region only
    assert "(outermost entities" in ag.format_agreement(result)


def test_kappa_on_tokens_split_at_span_edges_matches_scikit_learn():
    # Spans off word boundaries: the shared tokens are split at every annotator's edges.
    text = "Visit Parisian shops in NewYork"
    a = [Record("x", text, [Span(6, 11, "LOC"), Span(24, 27, "LOC")])]
    b = [Record("x", text, [Span(6, 14, "LOC"), Span(24, 31, "LOC")])]
    al = ag.align(["a", "b"], [a, b])
    ta, tb = ag.token_labels(al)
    assert len(ta) == 7  # Visit Paris|ian shops in New|York
    assert ag.cohen_kappa(ta, tb) == pytest.approx(cohen_kappa_score(ta, tb))
    assert ag.agreement(al)["partial_f1"] == 1.0 and ag.agreement(al)["exact_f1"] == 0.0


def test_fleiss_textbook_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    rows = [[str(c) for c, n in enumerate(counts) for _ in range(n)] for counts in table]
    assert ag.fleiss_kappa(rows) == pytest.approx(0.2099, abs=1e-4)


def test_kappa_undefined_and_errors():
    assert ag.cohen_kappa(["O", "O"], ["O", "O"]) is None
    assert ag.fleiss_kappa([["O", "O", "O"]]) is None
    with pytest.raises(ValueError):
        ag.fleiss_kappa([["O", "O"], ["O"]])


def test_partial_matching_is_one_to_one():
    a = [[Span(0, 10, "PER")]]
    b = [[Span(0, 4, "PER"), Span(5, 10, "PER")]]
    r = ag.pair_f1(a, b, partial=True)
    assert r["matches"] == 1 and r["f1"] == pytest.approx(2 / 3)


def test_regions_and_disagreement_reports(tmp_path):
    al = aligned(FILES[:2])
    found = ag.disagreements(al)
    assert [(r.item, r.start, r.end) for r in found] == [(0, 20, 28), (1, 13, 18)]
    text = ag.format_disagreements(al, found)
    assert "John Smith lives in «New York»" in text
    assert "ann_a  [New York]LOC" in text and "ann_b  New [York]LOC" in text
    ag.write_disagreements(al, found, tmp_path / "d.txt", tmp_path / "d.html")
    page = (tmp_path / "d.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count('class="c"') == 2
    assert "<sub>ORG</sub>" in page


def test_html_escapes_text():
    a = [Record("x", "<b>Acme & Co</b>", [Span(3, 12, "ORG")])]
    b = [Record("x", "<b>Acme & Co</b>", [])]
    al = ag.align(["a", "b"], [a, b])
    page = ag.disagreements_html(al, ag.disagreements(al))
    assert "<b>Acme" not in page and "&lt;b&gt;" in page and "Acme &amp; Co" in page


def test_single_label_studio_file_with_several_annotators():
    names, sets = ag.load_annotators([FIX / "labelstudio_export.json"])
    assert names == ["labelstudio_export:1", "labelstudio_export:2"]
    al = ag.align(names, sets)
    assert len(al.records) == 2 and al.excluded == {"labelstudio_export:1": 1, "labelstudio_export:2": 0}


def test_agreement_needs_shared_texts():
    with pytest.raises(NerkitError, match="share no texts"):
        ag.align(["a", "b"], [[Record("1", "x")], [Record("1", "y")]])
    with pytest.raises(NerkitError, match="two or more annotators"):
        ag.load_annotators([FIX / "doccano.jsonl"])


def test_cli_agree(tmp_path, capsys):
    assert main(["agree", *map(str, FILES), "--report", str(tmp_path / "d.txt"), "--html", str(tmp_path / "d.html")]) == 0
    out = capsys.readouterr().out
    assert "Fleiss' kappa 0.708" in out and "ann_a / ann_b  0.500  0.750" in out
    assert (tmp_path / "d.txt").read_text().startswith("2 regions where annotators disagree")
    assert main(["agree", *map(str, FILES[:2]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kappa"]["cohen"] == pytest.approx(35 / 62) and result["disagreements"] == 2


# ---------------------------------------------------------------- adjudication


def test_majority_of_three_resolves_everything():
    out = adjudicate(aligned())
    assert not out.conflicts and out.agreed == 2 and out.voted == 2
    assert [r.spans for r in out.records] == [[Span(0, 10, "PER"), Span(20, 28, "LOC")],
                                              [Span(0, 4, "PER"), Span(13, 18, "LOC")]]


def test_two_annotators_tie_and_review_round_trip(tmp_path):
    out = adjudicate(aligned(FILES[:2]))
    assert [c["kind"] for c in out.conflicts] == ["tie", "tie"]
    assert [r.spans for r in out.records] == [[Span(0, 10, "PER")], [Span(0, 4, "PER")]]
    first = out.conflicts[0]
    assert first["context"] == "John Smith lives in «New York»"
    assert [(o["annotators"], o["spans"][0]["text"]) for o in first["options"]] == [(["ann_a"], "New York"), (["ann_b"], "York")]
    review = tmp_path / "review.jsonl"
    write_review(out.conflicts, review)
    with pytest.raises(NerkitError, match="2 review items have no decision"):
        apply_review(out.records, review)
    partial, decided, undecided = apply_review(out.records, review, allow_undecided=True)
    assert (decided, undecided) == (0, 2)
    items = [json.loads(x) for x in review.read_text().splitlines()]
    items[0]["decision"] = 1
    items[1]["decision"] = [{"start": 13, "end": 18, "label": "GPE", "text": "Paris"}]  # the adjudicator's own call
    review.write_text("".join(json.dumps(i) + "\n" for i in items))
    final, decided, undecided = apply_review(out.records, review)
    assert (decided, undecided) == (2, 0)
    assert [r.spans for r in final] == [[Span(0, 10, "PER"), Span(20, 28, "LOC")], [Span(0, 4, "PER"), Span(13, 18, "GPE")]]
    with pytest.raises(DataError, match="applied twice"):
        apply_review(final, review)


@pytest.mark.parametrize("decision,match", [
    (7, "not one of the options"),
    ([{"start": 0, "end": 4, "label": "PER"}], "outside the conflict region"),
    ([{"start": 13, "end": 18, "label": "LOC", "text": "Rome"}], "says 'Rome'"),
    ("yes", "option number or a list"),
])
def test_bad_decisions_are_refused(tmp_path, decision, match):
    out = adjudicate(aligned(FILES[:2]))
    item = dict(out.conflicts[1], decision=decision)
    write_review([item], tmp_path / "r.jsonl")
    with pytest.raises(DataError, match=match):
        apply_review(out.records, tmp_path / "r.jsonl")


def test_three_way_tie_and_plurality():
    text = "Acme hired Bob"
    sets = [[Record("1", text, [Span(0, 4, "ORG")])], [Record("1", text, [Span(0, 4, "PER")])], [Record("1", text, [])],
            [Record("1", text, [Span(0, 4, "ORG")])]]
    out = adjudicate(ag.align(["a", "b", "c", "d"], sets))  # ORG 2 of 4 is no majority
    assert out.conflicts[0]["kind"] == "no majority" and out.records[0].spans == []
    assert [o["votes"] for o in out.conflicts[0]["options"]] == [2, 1, 1]
    assert out.conflicts[0]["options"][2]["spans"] == []  # "no entity" is an option too
    out = adjudicate(ag.align(["a", "b", "c", "d"], sets), strategy="plurality")
    assert not out.conflicts and out.records[0].spans == [Span(0, 4, "ORG")]
    out = adjudicate(ag.align(["a", "b", "c"], sets[:3]), strategy="plurality")
    assert out.conflicts[0]["kind"] == "tie"


def test_review_applies_after_reordering(tmp_path):
    out = adjudicate(aligned(FILES[:2]))
    for c in out.conflicts:
        c["decision"] = 1
    write_review(out.conflicts, tmp_path / "r.jsonl")
    final, decided, _ = apply_review(list(reversed(out.records)), tmp_path / "r.jsonl")
    assert decided == 2 and final[0].spans == [Span(0, 4, "PER"), Span(13, 18, "LOC")]


def test_cli_adjudicate_and_apply(tmp_path, capsys):
    merged = tmp_path / "merged.json"
    assert main(["adjudicate", *map(str, FILES[:2]), "--output", str(merged)]) == 0
    out = capsys.readouterr().out
    assert "2 for review" in out and "merged.review.jsonl" in out
    review = tmp_path / "merged.review.jsonl"
    items = [dict(json.loads(x), decision=1) for x in review.read_text().splitlines()]
    review.write_text("".join(json.dumps(i) + "\n" for i in items))
    final = tmp_path / "final.conll"
    assert main(["adjudicate", "--apply", str(review), str(merged), "--output", str(final)]) == 0
    assert "applied 2 decisions" in capsys.readouterr().out
    spans = [(r.text, r.spans) for r in read(final)]
    assert spans == [("John Smith lives in New York", [Span(0, 10, "PER"), Span(20, 28, "LOC")]),
                     ("Mary visited Paris", [Span(0, 4, "PER"), Span(13, 18, "LOC")])]


def test_cli_adjudicate_lists_texts_not_annotated_by_everyone(tmp_path, capsys):
    """ann_b has a text ann_a lacks: it is left out of the merge, and the output says so (never "no changes")."""
    merged = tmp_path / "merged.jsonl"
    assert main(["adjudicate", *map(str, FILES[:2]), "--output", str(merged)]) == 0
    out = capsys.readouterr().out
    assert "1 texts not annotated by every annotator, left out of" in out
    assert "no changes" not in out and "text not annotated by every annotator left out of the merge" in out
    extra = next(r for r in read(FILES[1]) if r.text not in {x.text for x in read(FILES[0])})
    assert f"  {extra.source}: annotated by ann_b; not by ann_a" in out
    assert f"{extra.source}: text not annotated by every annotator left out of the merge: annotated by ann_b" in out
    assert len(read(merged)) == 2
