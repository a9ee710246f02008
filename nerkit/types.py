"""Core domain types: character spans, sentences, documents and predicted entities."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, order=True)
class Span:
    """An entity as a half-open character range ``[start, end)`` of a text, with its label."""

    start: int
    end: int
    label: str

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"span [{self.start}, {self.end}) is empty or negative")


@dataclass
class Sentence:
    """A tokenized sentence: words, their IOB2 tags (None when unlabelled) and where it came from."""

    words: list[str]
    tags: list[str] | None = None
    doc_id: str | None = None
    source: str = ""  # "file:line" of the sentence's first word, for messages
    text: str | None = None  # original text when read from raw text / JSONL
    offsets: list[tuple[int, int]] | None = None  # character range of each word in ``text``
    # Nested and overlapping entities: more IOB2 tag layers beside ``tags`` (``nerkit.data.assign_layers`` puts each
    # entity on the lowest layer where it overlaps nothing, longest first, so ``tags`` holds the outermost ones).
    layers: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tags is not None and len(self.tags) != len(self.words):
            raise ValueError(f"{self.source or 'sentence'}: {len(self.words)} words but {len(self.tags)} tags")
        if self.layers and (self.tags is None or any(len(x) != len(self.words) for x in self.layers)):
            raise ValueError(f"{self.source or 'sentence'}: a nested tag layer without tags or of another length")

    def all_tags(self) -> list[list[str]]:
        """Every tag layer, outermost first (``[tags]`` for flat data, ``[]`` when unlabelled)."""
        return [] if self.tags is None else [self.tags, *self.layers]

    def __len__(self) -> int:
        return len(self.words)

    def surface(self) -> tuple[str, list[tuple[int, int]]]:
        """The sentence's text and each word's character range (words joined by spaces if no text)."""
        if self.text is not None and self.offsets is not None:
            return self.text, self.offsets
        offsets, pos = [], 0
        for w in self.words:
            offsets.append((pos, pos + len(w)))
            pos += len(w) + 1
        return " ".join(self.words), offsets


@dataclass
class Document:
    """Consecutive sentences that share context (a CoNLL ``-DOCSTART-`` block or a JSONL record)."""

    id: str
    sentences: list[Sentence] = field(default_factory=list)


@dataclass(frozen=True)
class Entity:
    """A predicted entity: ``text[start:end] == self.text``; ``score`` is the mean probability of its tags."""

    start: int
    end: int
    label: str
    score: float
    text: str

    def to_dict(self) -> dict:
        """The entity as a JSON-ready dict."""
        return asdict(self)
