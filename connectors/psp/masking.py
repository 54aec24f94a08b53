"""Keeping full card numbers (PANs) out of everything the webhook receiver publishes.

A PAN is a run of 13-19 digits that passes the Luhn check and starts like a payment card
(3, 4, 5, 6, or the 2-series of Mir 2200-2204 and Mastercard 2221-2720 — ``20240115123045``
stamps and epoch milliseconds are not cards). Its digits may be written with separators
between them — spaces, dashes, dots, slashes, underscores, in any mix, up to three together —
and in any Unicode decimal digits. It is masked to its first 6 and last 4 digits, separators
kept: ``4111.1111.1111.1111`` -> ``4111.11**.****.1111``.

`mask_body` masks what a consumer would *decode*: it parses the body (form fields are
URL-decoded, JSON strings unescaped, ``\\u0034`` included), masks every key and every value at
any depth — no field is trusted for its name, ``paid`` or ``cardid`` included — and looks
through encodings nested inside a value (percent-encoding, JSON ``\\uXXXX`` escapes, HTML
character references). Then it checks the bytes it is about to return under the same
decodings. It fails closed: a body it cannot parse, one nested deeper than `MAX_DEPTH`, one
larger than the limit, or one still showing a card number after masking raises
`MaskingError` — the caller refuses it rather than storing it as received.

One deliberate exception: a digit run glued inside a longer alphanumeric token that has
other digits in it too (a hex hash, a base62 token, an EVM address) is a token, not a card
number written out, and is left alone. ``card4111111111111111`` (letters only around it) is
masked.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import orjson

from connectors.fields import Rejected

MAX_DEPTH = 64  # providers nest 6-8 levels; deeper is junk we refuse rather than walk
MAX_BYTES = 1 << 20
_MAX_ROUNDS = 4  # nested encodings peeled per value before giving up (refusing)

# Separators people and systems put between card digits (hyphen-like dashes, NBSP included).
_SEP = " \t\u00a0\u2007\u202f./_\\-\u2010\u2011\u2012\u2013\u2014\u2212"
_RUN = re.compile(rf"\d(?:[{_SEP}]{{0,3}}\d)*")
_DIGIT = re.compile(r"\d")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")


class MaskingError(Rejected):
    """The body can't be masked with certainty (undecodable, too deep, too large): refuse it."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason, "decode")
        self.code = code  # too_deep | too_large | undecodable | unmaskable


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_like(digits: str) -> bool:
    """13-19 ASCII digits, Luhn-valid, with a payment-card prefix."""
    if not 13 <= len(digits) <= 19:
        return False
    first = digits[0]
    if first == "2":
        head = int(digits[:4])
        if not (2200 <= head <= 2204 or 2221 <= head <= 2720):
            return False
    elif first not in "3456":
        return False
    return luhn_ok(digits)


def _ascii(ch: str) -> str:
    return ch if "0" <= ch <= "9" else str(unicodedata.decimal(ch))


def _in_token(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] sits inside an alphanumeric token with other digits in it."""
    i = start - 1
    while i >= 0 and text[i].isalnum():
        if text[i].isdecimal():
            return True
        i -= 1
    j = end
    while j < len(text) and text[j].isalnum():
        if text[j].isdecimal():
            return True
        j += 1
    return False


def _spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every card number written in `text`, separators included."""
    out: list[tuple[int, int]] = []
    for run in _RUN.finditer(text):
        if len(run.group(0)) < 13:
            continue
        groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", run.group(0))]
        base = run.start()
        digits = ["".join(_ascii(c) for c in run.group(0)[a:b]) for a, b in groups]
        i = 0
        while i < len(groups):
            best = -1
            total = ""
            for j in range(i, len(groups)):  # the longest group-aligned span that is a card
                total += digits[j]
                if len(total) > 19:
                    break
                if card_like(total):
                    best = j
            if best < 0:
                i += 1
                continue
            start, end = base + groups[i][0], base + groups[best][1]
            if not _in_token(text, start, end):
                out.append((start, end))
            i = best + 1
    return out


def find_pans(value: str) -> list[str]:
    """Card numbers written in full in `value` (as they appear, separators included)."""
    if len(value) < 13:
        return []
    return [value[a:b] for a, b in _spans(value)]


def mask_pan(found: str) -> str:
    """Keep the first 6 and last 4 digits, mask the others, keep the separators."""
    positions = [i for i, ch in enumerate(found) if ch.isdecimal()]
    hide = set(positions[6:-4])
    return "".join("*" if i in hide else ch for i, ch in enumerate(found))


def _mask_text(value: str) -> tuple[str, int]:
    if len(value) < 13:
        return value, 0
    spans = _spans(value)
    if not spans:
        return value, 0
    parts: list[str] = []
    last = 0
    for a, b in spans:
        parts += [value[last:a], mask_pan(value[a:b])]
        last = b
    parts.append(value[last:])
    return "".join(parts), len(spans)


def mask_pans(value: str) -> str:
    """`value` with every full card number in it masked (free text we copy is passed through)."""
    return _mask_text(value)[0]


def _json_unescape(value: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), value)


_DECODERS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("%+", unquote_plus), ("\\", _json_unescape), ("&", html.unescape))


def _views(value: str) -> list[str]:
    """`value` decoded once by each decoder that applies (each differs from `value`)."""
    out = []
    for marks, decode in _DECODERS:
        if any(m in value for m in marks):
            decoded = decode(value)
            if decoded != value:
                out.append(decoded)
    return out


def _deep_pan(value: str) -> str | None:
    """A decoding of `value` (up to `_MAX_ROUNDS` deep) that shows a card number, if any."""
    layer = [value]
    for _ in range(_MAX_ROUNDS):
        layer = [v for cur in layer for v in _views(cur)]
        for v in layer:
            if _spans(v):
                return v
        if not layer:
            return None
    return None


def mask_string(value: str) -> tuple[str, int]:
    """`value` masked as written and as any consumer would decode it. A card number that only
    shows after decoding replaces the value by its decoded, masked form."""
    if len(_DIGIT.findall(value)) < 13:  # every decoding keeps (at least) one digit per digit
        return value, 0
    out, count = _mask_text(value)
    for _ in range(_MAX_ROUNDS):
        hidden = _deep_pan(out)
        if hidden is None:
            return out, count
        out, n = _mask_text(hidden)
        count += n
    raise MaskingError("a card number is hidden under too many encodings", "unmaskable")


def _mask_scalar(value: Any) -> tuple[Any, int]:
    if isinstance(value, str):
        return mask_string(value)
    if isinstance(value, bool) or value is None:
        return value, 0
    if isinstance(value, int | float):
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        masked, n = _mask_text(text)
        return (masked, n) if n else (value, 0)
    return value, 0


def _mask_doc(doc: Any) -> tuple[Any, int]:
    """Every key and value of a parsed JSON document, masked. Iterative (no recursion limit
    to trip over), refusing anything nested deeper than MAX_DEPTH."""
    count = 0
    root: list[Any] = [None]
    # (value, the container its masked copy goes into, the slot there, depth)
    stack: list[tuple[Any, Any, Any, int]] = [(doc, root, 0, 0)]
    while stack:
        value, parent, slot, depth = stack.pop()
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            raise MaskingError(f"nested deeper than {MAX_DEPTH} levels", "too_deep")
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            parent[slot] = out
            for key, val in value.items():
                new_key, n = mask_string(key)
                count += n
                out[new_key] = None
                stack.append((val, out, new_key, depth + 1))
        elif isinstance(value, list):
            items: list[Any] = [None] * len(value)
            parent[slot] = items
            stack.extend((val, items, i, depth + 1) for i, val in enumerate(value))
        else:
            parent[slot], n = _mask_scalar(value)
            count += n
    return root[0], count


def _exposed(text: str) -> bool:
    """Whether `text`, or any decoding of it, still shows a card number."""
    return bool(_spans(text)) or _deep_pan(text) is not None


def mask_body(raw: bytes, form: bool, max_bytes: int = MAX_BYTES) -> tuple[bytes, int]:
    """The body with every full card number masked, and how many there were. A body without
    one comes back unchanged, byte for byte. Raises `MaskingError` when that can't be done
    with certainty (the caller must refuse the body, not store it)."""
    if len(raw) > max_bytes:
        raise MaskingError(f"body of {len(raw)} bytes is over {max_bytes}", "too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MaskingError("body is not UTF-8", "undecodable") from None
    if form:
        try:
            pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MaskingError(f"form body can't be decoded: {exc}", "undecodable") from None
        count, out = 0, []
        for key, value in pairs:
            k, n1 = mask_string(key)
            v, n2 = mask_string(value)
            count += n1 + n2
            out.append((k, v))

        def canonical() -> bytes:
            return urlencode(out).encode()
    else:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MaskingError(f"not JSON: {exc}", "undecodable") from None
        scrubbed, count = _mask_doc(doc)

        def canonical() -> bytes:
            return orjson.dumps(scrubbed)

    result = canonical() if count else raw
    if len(_DIGIT.findall(text)) >= 13 and _exposed(result.decode("utf-8")):
        # What we'd return still shows a card number its parse didn't (a repeated JSON key,
        # a field the parser drops): write it back from the masked parse instead.
        result = canonical()
        if _exposed(result.decode("utf-8")):
            raise MaskingError("a card number is still visible after masking", "unmaskable")
        count = max(count, 1)
    return result, count


def scrub_pans(raw: bytes, form: bool) -> tuple[bytes, int]:
    """`mask_body` with the default size limit (kept for the simulator and older callers)."""
    return mask_body(raw, form)
