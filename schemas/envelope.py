"""The raw envelope: what a bridge publishes to Kafka, and one line of a replay file.

A replay file is JSON Lines, one object per message:
``{"topic": "mt5.deals", "key": "12345", "value": "<raw message text>",
"headers": {"server": "ACME-MT5", "event": "add"}, "timestamp": 1732406400123}``.
Binary messages (cTrader protobuf) carry ``"encoding": "base64"`` and a base64 ``value``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson


@dataclass(frozen=True, slots=True)
class Envelope:
    topic: str
    value: bytes
    timestamp_ms: int
    key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # Where the message was read from: Kafka partition/offset, or -1/line number of a file.
    partition: int = -1
    offset: int = -1
    file: str = ""  # the replay file's name (partition -1): two files' line 7 are two messages

    @property
    def source(self) -> str:
        if self.file:
            return f"{self.topic}/-1/{self.file}:{self.offset}"
        return f"{self.topic}/{self.partition}/{self.offset}"

    def to_json_line(self) -> bytes:
        """Serialise for a replay file (binary values are base64-encoded)."""
        doc: dict[str, Any] = {"topic": self.topic, "key": self.key or None}
        try:
            doc["value"] = self.value.decode("utf-8")
        except UnicodeDecodeError:
            doc["value"] = base64.b64encode(self.value).decode("ascii")
            doc["encoding"] = "base64"
        doc["headers"] = self.headers
        doc["timestamp"] = self.timestamp_ms
        return orjson.dumps(doc)


class EnvelopeError(ValueError):
    """A replay-file line that is not a valid envelope."""


# Envelope timestamps become versions (ms x 4 + rank, UInt64) and times (DateTime64, up to
# 2299): a timestamp from 2300 on cannot be stored and is a dead letter, not a crash.
TIMESTAMP_END_MS = 10_413_792_000_000  # 2300-01-01T00:00:00Z


def timestamp_problem(timestamp_ms: int) -> str | None:
    """Why a message timestamp (epoch ms; 0 = none) cannot be used, or None."""
    if 0 <= timestamp_ms < TIMESTAMP_END_MS:
        return None
    return f"message timestamp {timestamp_ms} is not epoch milliseconds between 1970 and 2300"


def envelope_from_json_line(line: bytes, line_no: int, file: str = "") -> Envelope:
    """Parse one replay-file line (of the file named `file`, which makes its source unique).
    Raises EnvelopeError with a readable reason."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"line {line_no}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"line {line_no}: an envelope must be a JSON object")
    topic = doc.get("topic")
    if not isinstance(topic, str) or not topic:
        raise EnvelopeError(f"line {line_no}: 'topic' must be a non-empty string")
    value = doc.get("value")
    if isinstance(value, dict | list):
        raw = orjson.dumps(value)  # a value written as a JSON object is accepted too
    elif isinstance(value, str):
        if doc.get("encoding") == "base64":
            try:
                raw = base64.b64decode(value, validate=True)
            except ValueError:
                raise EnvelopeError(f"line {line_no}: 'value' is not valid base64") from None
        else:
            raw = value.encode("utf-8")
    else:
        raise EnvelopeError(f"line {line_no}: 'value' must be a string or a JSON object")
    timestamp = doc.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise EnvelopeError(f"line {line_no}: 'timestamp' must be epoch milliseconds")
    problem = timestamp_problem(timestamp)
    if problem is not None:
        raise EnvelopeError(f"line {line_no}: {problem}")
    headers = doc.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise EnvelopeError(f"line {line_no}: 'headers' must map names to strings")
    key = doc.get("key")
    return Envelope(
        topic=topic,
        value=raw,
        timestamp_ms=timestamp,
        key="" if key is None else str(key),
        headers=headers,
        partition=-1,
        offset=line_no,
        file=file,
    )


class _Line(msgspec.Struct):
    """The common shape of a replay-file line, decoded without building a dict."""

    topic: str
    value: Any
    timestamp: int
    key: Any = None
    headers: dict[str, str] | None = None
    encoding: Any = None


_LINE = msgspec.json.Decoder(_Line)


def envelope_from_json_line_fast(line: bytes, line_no: int, file: str = "") -> Envelope:
    """`envelope_from_json_line` for the common line (a text value, a valid timestamp) at a
    third of the cost; any other line goes to it, for its handling or its reason."""
    try:
        doc = _LINE.decode(line)
        value = doc.value
        if (type(value) is not str or doc.encoding is not None or not doc.topic
                or not 0 <= doc.timestamp < TIMESTAMP_END_MS):
            raise ValueError
        raw = value.encode("utf-8")
    except (msgspec.DecodeError, ValueError):  # UnicodeEncodeError is a ValueError
        return envelope_from_json_line(line, line_no, file)
    key = doc.key
    return Envelope(topic=doc.topic, value=raw, timestamp_ms=doc.timestamp,
                    key="" if key is None else str(key), headers=doc.headers or {},
                    partition=-1, offset=line_no, file=file)
