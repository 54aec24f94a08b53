"""Person-name normalisation and comparison, shared by sanctions screening and the payer-name
check.

A name becomes a list of `Tok`s:

1. Unicode NFKC; invisible format characters (zero-width space/joiner, soft hyphen, BOM) are
   deleted, not turned into spaces, so "Vor\u200banko" stays one token.
2. A word mixing Latin with Cyrillic/Greek letters is a look-alike spelling: its non-Latin
   letters are folded to their Latin homoglyphs (Unicode confusables data, via
   `confusable_homoglyphs`). A word wholly in another script is transliterated instead.
3. `anyascii` transliterates every script to ASCII (ß -> ss, ł -> l, ø -> o, æ -> ae, Cyrillic,
   Greek, Arabic, CJK); Đ/đ become "Dj" first (the Serbian/Croatian spelling).
4. camelCase joins are split ("MüllerSanchez"), punctuation becomes a space, titles ("Dr",
   "Sheikh") and particles ("al", "bin", "van", "de") are dropped, as are placeholders ("FNU").

Each token keeps its ASCII text, a `skel` (a transliteration-insensitive key: ue/u, ou/u, w/v,
y/i, c/k, z/s, ph/f, kh/h, dj/d, doubled letters, ...) and `cons` (the skeleton's consonants, for
vowel-stripped spellings such as "Mhmmd").

`compare` aligns two names order-free: each token of the shorter name takes its best free
counterpart, where one token may also match two adjacent tokens joined ("Guangming" ~ "Guang
Ming"). The score is the length-weighted mean of the pair scores, capped at the weakest pair +
`WEAK_MARGIN`, so a short wrong token ("Omar" for "Osama") sinks the name however well the rest
matches. A left-out middle name costs nothing; a one-token name only matches a one-token name
(or the other name written as one word).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from anyascii import anyascii
from confusable_homoglyphs import confusables
from rapidfuzz.distance import Indel


def _words(text: str) -> list[str]:
    return text.split()



TITLES = frozenset(_words(
    "mr mrs ms miss mx dr prof sir dame lord lady sheikh shaikh sheik haji hajji hadji mullah "
    "imam sayyid sayed syed jr sr ii iii iv esq phd md"
))
PARTICLES = frozenset(_words(
    "al el ul bin ben ibn bint binti bte bt de da das dos do del della der den di du la le van "
    "von ter ten"
))
PLACEHOLDERS = frozenset({"fnu", "lnu", "nfn", "nln", "unknown", "na", "xx"})
VOWELS = frozenset("aeiou")
WEAK_MARGIN = 12.0  # how far the mean may sit above the weakest token pair
INITIAL_WEIGHT = 1.0  # an initial says little: it weighs as one letter

_SPECIAL = str.maketrans({"Đ": "Dj", "đ": "dj", "ı": "i", "İ": "I", "χ": "kh", "Χ": "Kh"})
# Greek digraphs anyascii spells letter by letter: ου is "u", τζ "j", μπ "b" (Robert is Ρομπερτ),
# word-initial ντ/γκ d/g
_GREEK = (
    (re.compile(r"ου", re.I), "u"), (re.compile(r"τζ", re.I), "j"),
    (re.compile(r"μπ", re.I), "b"), (re.compile(r"\bντ", re.I), "d"), (re.compile(r"\bγκ", re.I), "g"),
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SKELETON = re.compile(r"tsch|sch|tch|dzh|dj|sh|zh|ch|ph|ck|kh|gh|th|ou|oo|ee|ue|oe|ae|ie|q|x|w|y|z|c|j")
_SKELETON_MAP = {
    "tsch": "ch", "sch": "sh", "tch": "ch", "dzh": "j", "dj": "d", "sh": "sh", "zh": "j", "ch": "ch",
    "ph": "f", "ck": "k", "kh": "h", "gh": "g", "th": "t", "ou": "u", "oo": "u", "ee": "i", "ue": "u",
    "oe": "o", "ae": "e", "ie": "i", "q": "k", "x": "ks", "w": "v", "y": "i", "z": "s", "c": "k",
    "j": "j",
}
_DOUBLE = re.compile(r"(.)\1+")


@lru_cache(maxsize=4096)
def _latin_homoglyph(ch: str) -> str:
    """The Latin letter a Cyrillic/Greek/... letter looks like, or the letter itself."""
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"])
    for item in found or []:
        for h in item["homoglyphs"]:
            if len(h["c"]) == 1 and h["n"].startswith("LATIN"):
                return str(h["c"])
    return ch


def _is_latin(ch: str) -> bool:
    return ch.isascii() or unicodedata.name(ch, "").startswith("LATIN")


def _fold_word(word: str) -> str:
    if word.isupper():  # "ĐORĐE" -> "DJORDJE", not "DjORDjE" (which would split as camelCase)
        word = word.replace("Đ", "DJ").replace("Χ", "KH")
    letters = [c for c in word if c.isalpha()]
    latin = sum(_is_latin(c) for c in letters)
    if 0 < latin < len(letters):  # mixed scripts in one word: a look-alike spelling
        word = "".join(c if _is_latin(c) or not c.isalpha() else _latin_homoglyph(c) for c in word)
    return word


def fold(name: str) -> str:
    """Any script -> ASCII, invisible characters deleted, look-alike letters folded (case kept)."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = " ".join(_fold_word(w) for w in text.split()).translate(_SPECIAL)
    for pattern, latin in _GREEK:
        text = pattern.sub(latin, text)
    return anyascii(text)


def skeleton(token: str) -> str:
    """A key that most transliterations of one name share (Mueller/Müller/Muller -> muler)."""
    key = _SKELETON.sub(lambda m: _SKELETON_MAP[m.group()], token)
    return _DOUBLE.sub(r"\1", key)


def consonants(skel: str) -> str:
    return _DOUBLE.sub(r"\1", skel[:1] + "".join(c for c in skel[1:] if c not in VOWELS))


@dataclass(frozen=True, slots=True)
class Tok:
    text: str
    skel: str
    cons: str
    vowelless: bool  # written without vowels ("mhmmd"): compare consonants only
    # derived from text, stored (not properties): `compare` reads them in its inner loops
    initial: bool = False
    weight: float = 3.0


@lru_cache(maxsize=65536)
def make_tok(text: str) -> Tok:
    skel = skeleton(text)
    # the first letter is kept by those who drop vowels ("Oluwaseun" -> "Olwsn")
    vowelless = len(text) >= 2 and not any(c in VOWELS for c in text[1:])
    initial = len(text) == 1
    weight = INITIAL_WEIGHT if initial else float(max(len(text), 3))
    return Tok(text, skel, consonants(skel), vowelless, initial, weight)


def words(name: str) -> list[str]:
    """Lower-case ASCII words, camelCase joins split, nothing dropped."""
    text = _CAMEL.sub(" ", fold(name))
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def tokens(name: str) -> list[Tok]:
    """The name's tokens for matching (titles, particles and placeholders dropped, unless that
    would leave nothing)."""
    ws = words(name)
    kept = [w for w in ws if w not in TITLES and w not in PARTICLES and w not in PLACEHOLDERS]
    return [make_tok(w) for w in (kept or ws)]


def normalise(name: str) -> str:
    """A stable text form of a name (for keys and dedupe): ASCII, lower-case, single spaces."""
    return " ".join(words(name))


@lru_cache(maxsize=262_144)
def token_sim(a: Tok, b: Tok) -> float:
    """0..100 for two tokens; an initial scores 100 against any token with its letter. Cached:
    a screen compares the same few query tokens with names that share most of their tokens."""
    if a.text == b.text:
        return 100.0
    if a.initial or b.initial:
        return 100.0 if a.text[0] == b.text[0] else 0.0
    s = max(Indel.normalized_similarity(a.text, b.text), Indel.normalized_similarity(a.skel, b.skel))
    if a.vowelless != b.vowelless:
        if a.cons == b.cons:
            return 100.0
        if min(len(a.cons), len(b.cons)) >= 3:
            s = max(s, Indel.normalized_similarity(a.cons, b.cons))
    return 100.0 * s


def _joined(toks: list[Tok]) -> Tok:
    return make_tok("".join(t.text for t in toks))


def _dedupe(toks: list[Tok]) -> list[Tok]:
    out: list[Tok] = []
    for t in toks:
        if all(t.text != o.text for o in out):
            out.append(t)
    return out


def compare(
    a: list[Tok], b: list[Tok], *, partial: bool = False, margin: float = WEAK_MARGIN
) -> float:
    """Order-free similarity 0..100 of two token lists (see the module docstring). `partial`:
    a one-token name may match any token of a longer one (a payer writing only a surname).
    `margin` 0 makes the weakest token pair decide alone."""
    a, b = _dedupe(a), _dedupe(b)  # "Suharto Suharto" is a one-word name written twice
    if not a or not b:
        return 0.0
    if len(a) > len(b) or (len(a) == len(b) and sum(t.weight for t in a) > sum(t.weight for t in b)):
        a, b = b, a
    if len(a) == 1 and not partial:
        if a[0].initial:
            return 0.0
        if len(b) == 1:
            return token_sim(a[0], b[0])
        # a one-word name matches only the other written as one word, either order
        return max(token_sim(a[0], _joined(b)), token_sim(a[0], _joined(b[::-1])))
    # candidate pairs, as sort keys: (-score, a side is an initial, tokens in the pair, which
    # side is joined, a positions, b positions); a unit is a token or two adjacent joined. Best
    # first; on a tie prefer full tokens (an initial takes what is left) and one-to-one pairs
    # (joining only when it helps).
    pairs: list[tuple[float, bool, int, int, tuple[int, ...], tuple[int, ...]]] = []
    b_pairs = [(j, _joined(b[j : j + 2])) for j in range(len(b) - 1)
               if not b[j].initial and not b[j + 1].initial]
    for i, x in enumerate(a):
        ia: tuple[int, ...] = (i,)
        for j, y in enumerate(b):
            pairs.append((-token_sim(x, y), x.initial, 2, 0, ia, (j,)))
        if not x.initial:
            for j, y in b_pairs:
                pairs.append((-token_sim(x, y), False, 3, 0, ia, (j, j + 1)))
    for i in range(len(a) - 1):
        if a[i].initial or a[i + 1].initial:
            continue
        joined = _joined(a[i : i + 2])
        for j, y in enumerate(b):
            if not y.initial:
                pairs.append((-token_sim(joined, y), False, 3, 1, (i, i + 1), (j,)))
    pairs.sort()
    got = [0.0] * len(a)
    used_a: set[int] = set()
    used_b: set[int] = set()
    for neg, _, _, _, ia, jb in pairs:
        if used_a.intersection(ia) or used_b.intersection(jb):
            continue
        used_a.update(ia)
        used_b.update(jb)
        for i in ia:
            got[i] = -neg
        if len(used_a) == len(a) or len(used_b) == len(b):
            break
    full = [i for i, t in enumerate(a) if not t.initial]
    if not full:
        return 0.0  # initials alone never identify anyone
    total = sum(got[i] * a[i].weight for i in range(len(a)))
    mean = total / sum(t.weight for t in a)
    return min(mean, min(got) + margin)


def similarity(a: str, b: str, *, partial: bool = False, margin: float = WEAK_MARGIN) -> float:
    """`compare` on two name strings."""
    return compare(tokens(a), tokens(b), partial=partial, margin=margin)
