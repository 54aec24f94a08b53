"""Full card numbers never leave the receiver: the masker (connectors/psp/masking.py) on its own
and through the app, with random Luhn-valid PANs in random spellings, encodings and nesting.

The leak check is independent of the masker: it decodes what was published every way a
consumer might (JSON, form, percent-encoding, JSON and HTML escapes, Unicode digits), drops
separators and looks for the PAN's digits.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.psp.masking import MAX_DEPTH, MaskingError, find_pans, luhn_ok, mask_body
from services.webhooks import create_app
from tests.test_psp_connectors import NOW, coinspaid_request, nuvei_form, stripe_event, stripe_request
from tests.test_webhooks import FORM, RecordingPublisher, make_cfg

PREFIXES = ["4", "51", "55", "2221", "2720", "2200", "34", "37", "6011", "65", "3530", "36", "62"]
SEPARATORS = [" ", "-", ".", "/", "_", " - ", "  ", "\u00a0", "-/"]
LETTERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzPAN", min_size=1, max_size=8)
CONTEXT = st.text(alphabet="abcxyz :;,!()#", max_size=6)


# -- an independent leak check ----------------------------------------------------------------


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


_STRIP = re.compile(r"[\s./_\\\-\u2010-\u2015\u2212]")


def _texts(published: bytes) -> list[str]:
    """`published` decoded every way we can think of, a few layers deep."""
    base = published.decode("utf-8", "replace")
    frontier = [base]
    try:
        stack = [orjson.loads(published)]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                frontier += list(v)
                stack += list(v.values())
            elif isinstance(v, list):
                stack += v
            elif not isinstance(v, bool) and v is not None:
                frontier.append(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    except orjson.JSONDecodeError:
        frontier += [x for pair in parse_qsl(base, keep_blank_values=True) for x in pair]
    out: list[str] = []
    for _ in range(4):
        nxt = []
        for t in frontier:
            out.append(t)
            nxt += [unquote_plus(t), html.unescape(t),
                    re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), t)]
        frontier = [t for t in nxt if t not in out]
    return out + frontier


def leaked(pan: str, published: bytes) -> bool:
    return any(pan in _STRIP.sub("", _ascii_digits(t)) for t in _texts(published))


# -- generators -----------------------------------------------------------------------------------


@st.composite
def pans(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    length = draw(st.integers(16, 16)) if prefix[0] in "25" else draw(st.integers(13, 19))
    body = prefix + "".join(draw(st.lists(st.sampled_from("0123456789"),
                                          min_size=length - len(prefix) - 1,
                                          max_size=length - len(prefix) - 1)))
    check = next(d for d in "0123456789" if luhn_ok(body + d))
    return body + check


@st.composite
def spellings(draw: st.DrawFn, pan: str) -> str:
    """The PAN in groups of random sizes joined by random (mixed) separators, sometimes in
    full-width digits, inside letter-and-punctuation context."""
    groups, i = [], 0
    while i < len(pan):
        n = draw(st.integers(1, 8))
        groups.append(pan[i:i + n])
        i += n
    if draw(st.booleans()):
        groups = ["".join(groups)]
    out = groups[0]
    for g in groups[1:]:
        out += draw(st.sampled_from(SEPARATORS)) + g
    if draw(st.integers(0, 9)) == 0:
        out = "".join(chr(0xFF10 + int(c)) if c.isdigit() else c for c in out)
    return draw(CONTEXT) + out + draw(CONTEXT)


ENCODINGS = ["plain", "plain", "json_u", "percent", "double_percent", "html", "int"]


def encode_value(text: str, how: str, pan: str) -> Any:
    if how == "percent":
        return quote(text, safe="")
    if how == "double_percent":
        return quote(quote(text, safe=""), safe="")
    if how == "html":
        return "".join(f"&#{ord(c)};" if c.isdigit() else c for c in text)
    if how == "int":
        return int(pan)
    return text


def nest(value: Any, path: list[tuple[str, int]]) -> Any:
    for key, pos in reversed(path):
        value = {key: value, "other": "x"} if pos < 0 else ["filler"] * pos + [value]
    return value


PLACEHOLDER = "ZQXPLACEHOLDERQXZ"


def percent_all(value: str | bytes, *_args: Any) -> str:
    data = value.encode() if isinstance(value, str) else value
    return "".join(f"%{b:02X}" for b in data)


def json_body(base: dict[str, Any], key: str, value: Any, path: list[tuple[str, int]],
              how: str) -> bytes:
    if how == "json_u":  # escape the digits (and more) as \uXXXX in the raw JSON text
        escaped = "".join(f"\\u{ord(c):04x}" if c.isdigit() or c == " " else c for c in value)
        doc = {**base, key: nest(PLACEHOLDER, path)}
        return orjson.dumps(doc).replace(PLACEHOLDER.encode(), escaped.encode())
    return orjson.dumps({**base, key: nest(value, path)})


case = st.fixed_dictionaries({
    "pan": pans(),
    "key": LETTERS,
    "how": st.sampled_from(ENCODINGS),
    "path": st.lists(st.tuples(LETTERS, st.integers(-1, 2)), max_size=8),
    "in_key": st.integers(0, 9),
})


# -- the masker on its own --------------------------------------------------------------------


@settings(max_examples=400, deadline=None, database=None)
@given(c=case, data=st.data())
def test_random_pans_never_survive_json(c: dict[str, Any], data: st.DataObject) -> None:
    spelled = data.draw(spellings(c["pan"]))
    how = c["how"]
    value = encode_value(spelled, how, c["pan"])
    if c["in_key"] == 0 and isinstance(value, str) and how != "json_u":  # the PAN as a key
        body = orjson.dumps({"a": 1, value: "v"})
    else:
        body = json_body({"id": "evt_1", "amount": 2000}, c["key"], value, c["path"], how)
    assert leaked(c["pan"], body)  # the check itself sees it before masking
    published, count = mask_body(body, form=False)
    assert count >= 1
    assert not leaked(c["pan"], published), (body, published)


@settings(max_examples=300, deadline=None, database=None)
@given(c=case, data=st.data())
def test_random_pans_never_survive_forms(c: dict[str, Any], data: st.DataObject) -> None:
    spelled = data.draw(spellings(c["pan"]))
    how = "plain" if c["how"] in ("json_u", "int") else c["how"]
    value = encode_value(spelled, how, c["pan"])
    pair = (value, "v") if c["in_key"] == 0 else ("x_" + c["key"], value)
    body = urlencode([("status", "2"), pair, ("mb_amount", "10.25")]).encode()
    if data.draw(st.booleans()):  # %2D, %2E, %34 ... for every character
        body = b"status=2&" + urlencode([pair], quote_via=percent_all).encode()
    assert leaked(c["pan"], body)
    published, count = mask_body(body, form=True)
    assert count >= 1
    assert not leaked(c["pan"], published), (body, published)


def test_the_five_known_bypasses() -> None:
    assert mask_body(b"card=4111%2D1111%2D1111%2D1111&x=1", True)[0] == \
        b"card=4111-11%2A%2A-%2A%2A%2A%2A-1111&x=1"
    out, n = mask_body(b'{"cardid":"4111111111111111","paid":4111111111111111}', False)
    assert n == 2 and orjson.loads(out) == {"cardid": "411111******1111",
                                            "paid": "411111******1111"}
    assert mask_body(b'{"c":"\\u0034111111111111111"}', False)[0] == b'{"c":"411111******1111"}'
    assert mask_body(b'{"c":"4111.1111.1111.1111"}', False)[0] == b'{"c":"4111.11**.****.1111"}'
    with pytest.raises(MaskingError) as err:
        mask_body(b'{"a":' * (MAX_DEPTH + 5) + b'"4111111111111111"' + b"}" * (MAX_DEPTH + 5),
                  False)
    assert err.value.code == "too_deep"


def test_fails_closed_and_leaves_clean_bodies_alone() -> None:
    for raw, form, code in [(b"\xff\xfe{}", False, "undecodable"), (b"{not json", False,
                            "undecodable"), (b"a=%FF", True, "undecodable"),
                            (b'{"a":"' + b"x" * 2000 + b'"}', False, "too_large")]:
        with pytest.raises(MaskingError) as err:
            mask_body(raw, form, max_bytes=1024)
        assert err.value.code == code
    clean = orjson.dumps({"ts": 20240115123045, "ms": 1_764_000_000_123, "id": "711000000019876543",
                          "hash": "ab3f41111111111111111c9e", "amount": "1234567890123.45"})
    assert mask_body(clean, False) == (clean, 0)
    # a repeated key the parser drops still doesn't get through as raw bytes
    out, n = mask_body(b'{"a":"4111111111111111","a":"x"}', False)
    assert n == 1 and b"4111111111111111" not in out


def test_find_pans_separators_and_context() -> None:
    assert find_pans("paid 4111 1111 1111 1111 exp 12/27") == ["4111 1111 1111 1111"]
    assert find_pans("4111111111111111 1225") == ["4111111111111111"]  # PAN then expiry
    assert find_pans("card4111111111111111") == ["4111111111111111"]
    assert find_pans("0x3f4111111111111111ab9") == []  # inside a token with other digits
    assert find_pans("5555_5555/5555.4444") == ["5555_5555/5555.4444"]


# -- through the receiver: what is published ----------------------------------------------------


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(c=case, data=st.data())
def test_published_webhooks_never_carry_a_pan(c: dict[str, Any], data: st.DataObject) -> None:
    spelled = data.draw(spellings(c["pan"]))
    publisher = RecordingPublisher()
    with TestClient(create_app(make_cfg(), publisher, clock=lambda: NOW)) as client:
        # Stripe: the whole body is signed, so any extra structure is accepted as sent
        value = encode_value(spelled, c["how"], c["pan"])
        body = json_body(stripe_event(), "x_" + c["key"], value, c["path"], c["how"])
        r = client.post("/webhooks/stripe", content=body, headers=stripe_request(body))
        assert r.status_code == 200, r.text
        # Nuvei: extra, unsigned form fields
        form = nuvei_form() + b"&" + urlencode({"x_" + c["key"]: spelled}).encode()
        r = client.post("/webhooks/nuvei", content=form, headers=FORM)
        assert r.status_code == 200, r.text
    assert len(publisher.messages) == 2
    for msg in publisher.messages:
        assert not leaked(c["pan"], msg.value), msg.value
        assert msg.headers["pan_masked"] == b"1"


def test_unmaskable_body_is_refused_and_dead_lettered_without_its_bytes() -> None:
    publisher = RecordingPublisher()
    deep = b'{"id":77,"type":"deposit","status":"confirmed","x":' + b'{"a":' * 100 \
        + b'"4111111111111111"' + b"}" * 100 + b"}"
    with TestClient(create_app(make_cfg(), publisher, clock=lambda: NOW)) as client:
        r = client.post("/webhooks/coinspaid", content=deep, headers=coinspaid_request(deep))
        metrics = client.get("/metrics").text
    assert r.status_code == 422 and r.json()["error"] == "unmaskable"
    [dl] = publisher.messages
    assert dl.topic == "dead_letters" and dl.value == b""
    assert dl.headers["reason"].startswith(b"too_deep") and dl.headers["raw_omitted"] == b"1"
    assert dl.headers["source"] == b"webhooks/coinspaid" and dl.headers["dedupe_id"]
    assert all(b"4111111111111111" not in v for v in dl.headers.values())
    assert 'brokerstream_webhook_dead_letters_total{provider="coinspaid",reason="too_deep"} 1.0' \
        in metrics


def test_unmaskable_body_whose_dead_letter_is_not_confirmed_gets_503() -> None:
    publisher = RecordingPublisher()
    publisher.fail = 1
    deep = b'{"id":78,"type":"deposit","status":"confirmed","x":' + b"[" * 100 + b"]" * 100 + b"}"
    with TestClient(create_app(make_cfg(), publisher, clock=lambda: NOW)) as client:
        r = client.post("/webhooks/coinspaid", content=deep, headers=coinspaid_request(deep))
    assert r.status_code == 503 and publisher.messages == []
