"""Tag schemes: splitting, detection, validation, conversion and chunk round trips."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerkit.scheme import (
    LabelScheme,
    chunks,
    convert,
    detect_scheme,
    from_chunks,
    iob2_labels,
    labels_of,
    split_tag,
    validate,
)

IOB1, IOB2, BIOES = LabelScheme.IOB1, LabelScheme.IOB2, LabelScheme.BIOES


def test_split_tag():
    assert split_tag("O") == ("O", "")
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I_creative-work") == ("I", "creative-work")
    assert split_tag("L-LOC") == ("E", "LOC")  # BILOU read as BIOES
    assert split_tag("U-LOC") == ("S", "LOC")


@pytest.mark.parametrize("tag", ["PERSON", "X-PER", "B-", "b-PER", "", "o", "BPER"])
def test_split_tag_rejects_other_shapes(tag):
    with pytest.raises(ValueError, match="not O or PREFIX-TYPE"):
        split_tag(tag)


def test_detect_scheme():
    assert detect_scheme([["B-PER", "I-PER", "O", "B-LOC"]]) is IOB2
    assert detect_scheme([["I-PER", "I-PER", "B-PER", "O"]]) is IOB1  # CoNLL-2003 original style
    assert detect_scheme([["O", "S-PER"], ["B-LOC", "E-LOC"]]) is BIOES
    assert detect_scheme([["U-PER", "O"]]) is BIOES
    assert detect_scheme([["O", "O"], []]) is IOB2


def test_detect_scheme_is_not_flipped_by_a_stray_error():
    # One "O -> I-LOC" error among IOB2 entities: still IOB2, else every B- would be reported as invalid IOB1.
    seqs = [["B-PER", "I-PER", "O"], ["B-ORG", "O", "I-LOC"], ["B-MISC"]]
    assert detect_scheme(seqs) is IOB2
    assert dict(validate(seqs, IOB2).counts) == {"O -> I-LOC": 1}


def test_validate_counts_and_first_positions():
    v = validate([["O", "I-PER", "I-PER", "B-LOC", "I-ORG"], ["I-PER"]], IOB2)
    assert dict(v.counts) == {"O -> I-PER": 2, "B-LOC -> I-ORG": 1}
    assert v.first == {"O -> I-PER": (0, 1), "B-LOC -> I-ORG": (0, 4)}
    assert v.total() == 3 and bool(v)
    assert not validate([["B-PER", "I-PER", "B-PER", "O"]], IOB2)


def test_validate_iob1_and_bioes():
    assert dict(validate([["O", "B-PER"]], IOB1).counts) == {"B-PER not after PER": 1}
    assert not validate([["I-PER", "B-PER", "I-LOC"]], IOB1)
    assert dict(validate([["B-PER", "O", "I-LOC", "E-LOC"]], BIOES).counts) == {"B-PER -> O": 1, "O -> I-LOC": 1}
    assert dict(validate([["B-PER"]], BIOES).counts) == {"B-PER -> end": 1}
    assert not validate([["S-PER", "B-LOC", "I-LOC", "E-LOC"]], BIOES)
    assert dict(validate([["S-PER"]], IOB2).counts) == {"S- prefix not used in IOB2": 1}


def test_iob1_to_iob2():
    # CoNLL-2003 as originally distributed: I- starts entities, B- only separates same-type neighbours.
    tags = ["I-ORG", "O", "I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-MISC"]
    assert convert(tags, IOB1) == ["B-ORG", "O", "B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-MISC"]


def test_bioes_to_iob2_and_back():
    bioes = ["S-PER", "B-ORG", "I-ORG", "E-ORG", "O", "S-LOC", "S-LOC", "U-MISC"]
    iob2 = ["B-PER", "B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "B-LOC", "B-MISC"]
    assert convert(bioes, BIOES) == iob2
    assert convert(iob2, IOB2, BIOES) == [t.replace("U-", "S-") for t in bioes]
    assert convert(iob2, IOB2, IOB1) == ["I-PER", "I-ORG", "I-ORG", "I-ORG", "O", "I-LOC", "B-LOC", "I-MISC"]


def test_chunks_are_lenient():
    assert chunks(["O", "I-PER", "I-LOC", "B-LOC"]) == [("PER", 1, 2), ("LOC", 2, 3), ("LOC", 3, 4)]
    assert chunks(["B-PER", "E-PER", "I-PER"], BIOES) == [("PER", 0, 2), ("PER", 2, 3)]


def test_labels():
    assert labels_of(["O", "B-PER", "I-PER", "S-LOC"]) == ["LOC", "PER"]
    assert iob2_labels(["PER", "LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@st.composite
def chunk_lists(draw):
    """Non-overlapping chunks (adjacent ones of the same type included) and the sequence length."""
    out, pos = [], 0
    for gap, length, label in draw(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3), st.sampled_from("AB")), max_size=6)):
        pos += gap
        out.append((label, pos, pos + length))
        pos += length
    return out, pos + draw(st.integers(0, 2))


@given(chunk_lists(), st.sampled_from(list(LabelScheme)))
def test_from_chunks_round_trip(case, scheme):
    cs, n = case
    tags = from_chunks(cs, n, scheme)
    assert len(tags) == n
    assert chunks(tags, scheme) == cs
    assert not validate([tags], scheme)
    assert convert(tags, scheme, IOB2) == from_chunks(cs, n, IOB2)


TAGS = ["O", "B-A", "I-A", "B-B", "I-B", "E-A", "S-B"]


@given(st.lists(st.sampled_from(TAGS), max_size=10), st.sampled_from(list(LabelScheme)))
def test_convert_repairs_any_sequence_to_valid_iob2(tags, scheme):
    out = convert(tags, scheme)
    assert len(out) == len(tags)
    assert not validate([out], IOB2)
    assert convert(out, IOB2) == out  # idempotent
    assert chunks(out) == chunks(tags, scheme)
