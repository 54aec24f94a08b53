"""Small helpers shared by tests: building envelopes as bridges send them."""

from __future__ import annotations

import os
from typing import Any

import orjson

from schemas.envelope import Envelope

T0 = 1_732_406_400_000  # 2024-11-24 00:00:00 UTC


def bound(seconds: float) -> float:
    """A hang bound of `seconds` on a quiet machine, stretched by how busy this one is now
    (load per core, at least 1; times BROKERSTREAM_TEST_TIMEOUT_SCALE): a bound, never a speed check."""
    busy = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    return seconds * busy * float(os.environ.get("BROKERSTREAM_TEST_TIMEOUT_SCALE", "1"))


def mt5_deal(**fields: Any) -> dict[str, str]:
    """An MT5 Web API deal with every value as a string (as the Web API sends it)."""
    doc: dict[str, Any] = {
        "Deal": "5001", "ExternalID": "", "Login": "70001", "Dealer": "0", "Order": "9001",
        "Action": "0", "Entry": "0", "Reason": "0", "Digits": "5", "DigitsCurrency": "2",
        "ContractSize": "100000.00", "Time": str(T0 // 1000), "TimeMsc": str(T0),
        "Symbol": "EURUSD.r", "Price": "1.08500", "Volume": "10000", "VolumeExt": "100000000",
        "Profit": "0.00", "Storage": "0.00", "Commission": "-7.00", "Fee": "0.00",
        "Value": "108500.00", "PositionID": "5001", "Comment": "", "Flags": "0",
        "ModificationFlags": "0",
    }
    doc.update({k: v if isinstance(v, str) or v is None else str(v) for k, v in fields.items()})
    return {k: v for k, v in doc.items() if v is not None}


def envelope(
    value: dict[str, Any] | bytes,
    *,
    topic: str = "mt5.deals",
    server: str | None = "ACME-MT5-Live",
    event: str | None = None,
    ts: int = T0,
    offset: int = 0,
) -> Envelope:
    headers = {}
    if server is not None:
        headers["server"] = server
    if event is not None:
        headers["event"] = event
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Envelope(topic=topic, value=raw, timestamp_ms=ts, key="70001", headers=headers,
                    partition=0, offset=offset)
