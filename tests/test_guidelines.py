"""Label schemas and `nerkit validate`: unknown labels, empty types, suspicious spans, each with its location."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nerkit.cli import main
from nerkit.errors import DataError
from nerkit.annotate.guidelines import load_guidelines, suspicious, validate
from nerkit.types import Span

FIX = Path(__file__).parent / "fixtures" / "annotate"


def test_load_yaml_schema_with_lines():
    schema = load_guidelines(FIX / "schema.yaml")
    assert schema.name == "news" and schema.labels() == ["PER", "LOC", "ORG", "MISC"]
    per = schema.types["PER"]
    assert per.examples == ["Angela Merkel", "Tim Cook"] and per.counterexamples == ["Chancellor"]
    assert schema.where("PER").endswith("schema.yaml:4") and schema.where("MISC").endswith("schema.yaml:15")
    assert schema.types["LOC"].color == "#a5d8ff"


def test_load_json_list_schema():
    schema = load_guidelines(FIX / "schema.json")
    assert schema.labels() == ["PER", "LOC"] and schema.types["LOC"].description == "Places."


@pytest.mark.parametrize("name,match", [
    ("schema_no_examples.yaml", r"schema_no_examples.yaml:5: type LOC has no examples"),
    ("schema_typo.yaml", r"unknown keys 'exmaples' \(did you mean 'examples'\?\)"),
])
def test_schema_errors_point_at_the_type(name, match):
    with pytest.raises(DataError, match=match):
        load_guidelines(FIX / name)


def test_schema_syntax_and_shape_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("types:\n  PER: [unclosed\n")
    with pytest.raises(DataError, match=r"a.yaml:\d+: invalid YAML"):
        load_guidelines(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("- PER\n- LOC\n")
    with pytest.raises(DataError, match="'types' entry"):
        load_guidelines(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("types:\n  PER:\n    examples: [x]\n")
    with pytest.raises(DataError, match="PER has no description"):
        load_guidelines(tmp_path / "c.yaml")


def test_labelstudio_config_from_schema():
    root = ET.fromstring(load_guidelines(FIX / "schema.yaml").labelstudio_config())
    labels = root.find("Labels")
    assert labels.get("name") == "label" and labels.get("toName") == "text"
    assert [x.get("value") for x in labels] == ["PER", "LOC", "ORG", "MISC"]
    assert labels[0].get("hint").startswith("Names of people")


def test_validate_findings_with_locations():
    findings = validate(FIX / "schema.yaml", FIX / "suspicious.jsonl")
    got = {(f.severity, f.kind, f.where.split("/")[-1]) for f in findings}
    assert got == {
        ("warning", "counterexample", "suspicious.jsonl:1 entity 1"),
        ("warning", "edge-punct", "suspicious.jsonl:1 entity 3"),  # 'Paris.'
        ("warning", "nested", "suspicious.jsonl:1 entity 3"),  # 'Paris.' inside 'Paris. Then Berlin' (a warning:
        # nerkit trains nested models; it had been an "overlap" error, from before nerkit read nested spans)
        ("warning", "crosses-sentence", "suspicious.jsonl:1 entity 4"),  # 'Paris. Then Berlin'
        ("warning", "edge-punct", "suspicious.jsonl:2 entity 1"),  # '(IBM'
        ("error", "unknown-label", "suspicious.jsonl:2 entity 3"),  # PRODUCT
        ("warning", "edge-space", "suspicious.jsonl:2 entity 3"),  # ' deal'
        ("error", "unknown-label", "suspicious.jsonl:3 entity 2"),  # per
        ("warning", "partial-word", "suspicious.jsonl:3 entity 2"),  # 'Sh'
        ("warning", "edge-space", "suspicious.jsonl:3 entity 1"),  # '  Paris'
        ("warning", "empty-type", "schema.yaml:15"),  # MISC
    }
    hint = next(f for f in findings if "'per'" in f.message)
    assert "did you mean PER?" in hint.message


def test_validate_other_formats_and_reading_problems():
    findings = validate(FIX / "schema.yaml", [FIX / "doccano_problems.jsonl", FIX / "brat"])
    kinds = {(f.severity, f.kind) for f in findings}
    assert ("error", "zero-length") in kinds and ("error", "out-of-range") in kinds
    assert ("warning", "discontinuous") in kinds and ("warning", "nested") in kinds
    assert ("warning", "partial-word") in kinds  # [0, 4) 'Visi'
    assert not any(f.kind == "empty-type" for f in findings)
    conll = validate(FIX / "schema.yaml", FIX / "iob2.conll")
    assert {f.kind for f in conll} == {"empty-type"}


def test_abbreviations_are_not_sentence_ends():
    text = "Mr. J. R. Smith of the U.S. Army met Dr. Who."
    assert suspicious(text, Span(0, 15, "PER")) == []
    assert suspicious(text, Span(23, 32, "ORG")) == []
    assert suspicious("Acme Corp. and Apple Inc.", Span(0, 10, "ORG")) == []
    assert [k for k, _ in suspicious("He left Paris. She stayed.", Span(8, 18, "LOC"))] == ["crosses-sentence"]
    assert [k for k, _ in suspicious("Is it Paris? Yes", Span(6, 16, "LOC"))] == ["crosses-sentence"]
    assert suspicious('"Big Apple" is', Span(0, 11, "LOC")) == []  # balanced quotes are fine


def test_cli_validate_exit_codes(capsys):
    assert main(["validate", str(FIX / "schema.yaml"), str(FIX / "suspicious.jsonl")]) == 2
    captured = capsys.readouterr()
    assert "2 errors, 9 warnings" in captured.out and "suspicious.jsonl:3 entity 2: error: label 'per'" in captured.out
    assert "2 errors and 9 warnings" in captured.err
    assert main(["validate", str(FIX / "schema.json"), str(FIX / "nerkit.jsonl")]) == 2  # ORG not in this schema
    assert main(["validate", str(FIX / "schema.yaml"), str(FIX / "iob2.conll")]) == 0
    assert main(["validate", str(FIX / "schema.yaml"), str(FIX / "iob2.conll"), "--strict"]) == 2


def test_the_schema_nesting_rule_allows_the_nestings_it_names(tmp_path):
    schema = tmp_path / "s.yaml"
    schema.write_text("types:\n  protein: {description: p, examples: [IL-2], inside: [DNA]}\n"
                      "  DNA: {description: d, examples: [IL-2 gene]}\n  RNA: {description: r, examples: [mRNA]}\n",
                      encoding="utf-8")
    data = tmp_path / "d.jsonl"
    text = "IL-2 gene and IL-2 mRNA and c-fos mRNA"
    ents = [(0, 9, "DNA"), (0, 4, "protein"), (14, 23, "RNA"), (14, 18, "protein"), (28, 38, "RNA"), (24, 33, "DNA")]
    data.write_text(json.dumps({"text": text, "entities": [{"start": a, "end": b, "label": t} for a, b, t in ents]})
                    + "\n", encoding="utf-8")
    found = [(f.severity, f.kind, f.message) for f in validate(schema, data) if f.kind in ("nested", "overlap")]
    # protein inside DNA: allowed, nothing said; protein inside RNA: named with the rule; the crossing pair: "overlap"
    assert [(s, k) for s, k, _ in found] == [("warning", "nested"), ("warning", "overlap")]
    assert "'IL-2 mRNA' (RNA) contains 'IL-2' (protein); the schema's nesting rule does not allow protein inside RNA" \
        in found[0][2]
    assert "crosses" in found[1][2] and "'and c-fos' (DNA)" in found[1][2]
    both = tmp_path / "both.jsonl"  # one range, two types (a clause of two kinds)
    both.write_text(json.dumps({"text": "IL-2 rises", "entities": [{"start": 0, "end": 4, "label": "DNA"},
                                                                    {"start": 0, "end": 4, "label": "RNA"}]}) + "\n",
                    encoding="utf-8")
    said = [f.message for f in validate(schema, both) if f.kind == "nested"]
    assert len(said) == 1 and said[0].startswith("span 'IL-2' is both ")
    schema.write_text(schema.read_text(encoding="utf-8").replace("[DNA]", "[DNA, RNAA]"), encoding="utf-8")
    with pytest.raises(DataError, match=r"s\.yaml:2: type protein: inside names 'RNAA', which is not a type"):
        load_guidelines(schema)


def test_a_clause_that_is_a_whole_sentence_keeps_its_full_stop():
    from nerkit.annotate.guidelines import suspicious

    text = "We may end your account at any time. See Paris."
    clause, name = Span(0, 36, "UnilateralTermination"), Span(42, 48, "LOC")
    assert suspicious(text, clause) == []  # the sentence's own full stop
    assert [k for k, _ in suspicious(text, name)] == ["edge-punct"]  # 'Paris.' took the sentence's
