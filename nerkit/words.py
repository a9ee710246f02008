"""How nerkit splits text into words and reads their casing: one dependency-free module (standard library only).

Model directories carry a copy of this file (``nerkit_words.py``) for their transformers pipeline, so the plain
``pipeline("token-classification", trust_remote_code=True)`` splits words and fills the casing ids exactly as
nerkit does; keep it free of imports beyond the standard library.
"""
from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

# Invisible characters that editors and web pages leave inside words: soft hyphen, zero-width space/non-joiner/
# joiner, word joiner, byte-order mark (zero-width no-break space), NUL. Inside a word they join its parts
# ("Ber\u00adlin" is one word); elsewhere they belong to no word. They are dropped from what the subword
# tokenizer sees (BERT's normaliser drops them too), while word offsets still point into the original text.
INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff\x00"
_DROP = {ord(c): None for c in INVISIBLE}


@cache
def _token_re() -> re.Pattern[str]:
    # Python's \w leaves out combining marks (accents in decomposed text, Indic vowel signs, variation
    # selectors), which would split words apart; so marks are added to word characters explicitly.
    # Marks above U+1FFFF exist only in the variation selector supplement, hence the two ranges scanned.
    ranges: list[list[int]] = []
    for c in [*range(0x20000), *range(0xE0000, 0xE1000)]:
        if unicodedata.category(chr(c))[0] == "M":
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    marks = "".join(f"{chr(a)}-{chr(b)}" if b > a else re.escape(chr(a)) for a, b in ranges)
    invisible = "".join(re.escape(c) for c in INVISIBLE)
    # Grapheme extenders (marks, ZWNJ/ZWJ, skin tones, emoji tag characters) stay with the character before them,
    # so no user-perceived character is cut in two; the other invisible characters join a word's parts.
    ext = rf"{marks}\u200c\u200d\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F"
    word = rf"[\w{ext}]+(?:[{invisible}]+[\w{ext}]+)*"
    # A symbol is a flag (two regional indicators) or one other character, with its extenders and the symbols it
    # is zero-width-joined to: one emoji (👩🏽‍💻, 🏳️‍🌈, #️⃣, 🇬🇷), one token.
    other = rf"[^\w\s{ext}{invisible}]"
    # A zero-width joiner joins the next symbol unless that is a regional indicator: those pair up into flags on
    # their own (Unicode's grapheme rules), so "#\u200d🇬🇷" is "#\u200d" then the flag, never "#\u200d🇬" + "🇷".
    joined = rf"[^\w\s{ext}{invisible}\U0001F1E6-\U0001F1FF]"
    symbol = rf"(?:[\U0001F1E6-\U0001F1FF]{{2}}|{other})(?:\u200d{joined}|[{ext}])*"
    return re.compile(rf"{word}(?:[-'’.]{word})*|{symbol}")


def tokenize(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split text into words (letter/digit runs, joined by inner - ' ’ . and invisible characters; every other
    symbol alone) with exact character offsets: ``text[start:end] == word``."""
    words, offsets = [], []
    for m in _token_re().finditer(text):
        words.append(m.group())
        offsets.append(m.span())
    return words, offsets


def tokenizer_word(word: str) -> str:
    """The word as the subword tokenizer should see it: invisible characters removed."""
    return word.translate(_DROP)


@lru_cache(maxsize=1 << 16)  # called for every word at inference; words repeat, so most calls are hits
def case_type(word: str) -> int:
    """Casing class of a word, fed to uncased encoders through token_type_ids: 0 lower/none, 1 Title, 2 UPPER,
    3 other mixed."""
    letters = [c for c in word if c.isalpha()]
    if not letters or not any(c.isupper() for c in letters):
        return 0
    if all(c.isupper() for c in letters):
        return 2 if len(letters) > 1 else 1
    if letters[0].isupper() and not any(c.isupper() for c in letters[1:]):
        return 1
    return 3
