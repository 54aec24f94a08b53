"""An independent reference for positions and P&L, computed in plain Python from the RAW MT5
payloads of a simulated brokerage (the bytes the bridges publish: IMTDeal Web API JSON on
`mt5.deals`, MqlTick JSON on `mt5.ticks`), not from any table or canonical record the engine
makes. It shares no code with `connectors/` or `risk_rules/`; only the platform's documented
formats (/work/shared/reference/platform-formats.md) and the rules of docs/exposure.md:

- a deal is (server header, `Deal`); versions order its add/update/delete (envelope ms x 4 +
  0/1/2), the latest wins, a delete removes it; `Action` 0/1 trade (13/14 canceled: nothing);
- hedging: a position per (server, `Login`, `PositionID`); its deals replayed by (`TimeMsc`,
  IN before OUT, deal key); average-cost open price; an episode starts when volume opens from
  flat (or a reversal opens the other side): realised = Profit + Storage + Commission + Fee of
  its deals, gross = closed units x (close - average open);
- lots from `VolumeExt` (1/10^8 lot), units = lots x `ContractSize`;
- prices per feed: (server header, tick `symbol`), the latest bid and ask of that feed; a
  position is marked by its own feed, else the canonical symbol's feed on its server (the feed
  named as the canonical symbol, else the one that ticked last), else the canonical symbol's
  latest feed on any server; the canonical symbol is the platform symbol without its suffix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from schemas.envelope import Envelope

RANK = {"add": 0, "update": 1, "delete": 2}
ENTRY_ORDER = {"0": 0, "2": 1, "1": 2, "3": 2}  # IN, INOUT, OUT, OUT_BY
Q8 = Decimal("0.00000001")


def canonical(platform_symbol: str) -> str:
    """The simulated brokers' decorations: `.r` (raw), `.s` (standard accounts)."""
    return platform_symbol.split(".", 1)[0]


def q8(value: Decimal) -> Decimal:
    return value.quantize(Q8, rounding=ROUND_HALF_EVEN)


@dataclass
class RefPosition:
    server: str
    login: int
    position_id: str
    platform_symbol: str = ""
    net_units: Decimal = Decimal(0)
    net_lots: Decimal = Decimal(0)
    avg: Decimal = Decimal(0)
    realised: Decimal = Decimal(0)
    gross: Decimal = Decimal(0)
    deal_keys: list[str] = field(default_factory=list)

    @property
    def symbol(self) -> str:
        return canonical(self.platform_symbol)


@dataclass
class RawReference:
    deals: dict[str, tuple[int, str, dict[str, str]]] = field(default_factory=dict)  # key -> (v, server, doc)
    deleted: dict[str, int] = field(default_factory=dict)
    feeds: dict[tuple[str, str], tuple[Decimal, Decimal]] = field(default_factory=dict)
    server_last: dict[tuple[str, str], tuple[Decimal, Decimal]] = field(default_factory=dict)
    any_last: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    def feed(self, envelopes: Iterable[Envelope]) -> None:
        for env in envelopes:
            if env.topic == "mt5.deals":
                doc = json.loads(env.value)
                if not isinstance(doc, dict) or "Deal" not in doc:
                    continue
                event = env.headers.get("event", "add")
                server = env.headers.get("server", "")
                key = f"mt5:{server}:{doc['Deal']}"
                version = env.timestamp_ms * 4 + RANK.get(event, 0)
                held = self.deals.get(key)
                if (held is not None and held[0] >= version) or self.deleted.get(key, -1) >= version:
                    continue
                if event == "delete":
                    self.deleted[key] = version
                    self.deals.pop(key, None)
                else:
                    self.deals[key] = (version, server, doc)
            elif env.topic == "mt5.ticks":
                doc = json.loads(env.value)
                server = env.headers.get("server", "")
                psym = doc["symbol"]
                price = (Decimal(doc["bid"]), Decimal(doc["ask"]))
                self.feeds[(server, psym)] = price
                self.server_last[(server, canonical(psym))] = price
                self.any_last[canonical(psym)] = price

    def mark(self, server: str, psym: str) -> tuple[tuple[Decimal, Decimal] | None, str]:
        symbol = canonical(psym)
        if (server, psym) in self.feeds:
            return self.feeds[(server, psym)], "own"
        same = self.feeds.get((server, symbol)) or self.server_last.get((server, symbol))
        if same is not None:
            return same, "canonical"
        if symbol in self.any_last:
            return self.any_last[symbol], "other_server"
        return None, ""

    def positions(self) -> dict[str, RefPosition]:
        """Every position (open or flat) by `mt5:server:login:position id`."""
        by_position: dict[str, list[tuple[tuple[int, int, str], str, dict[str, str]]]] = {}
        for key, (_version, server, doc) in self.deals.items():
            if doc["Action"] not in ("0", "1"):
                continue  # balance operations, canceled deals (13/14)
            ref = doc["PositionID"] if doc["PositionID"] not in ("", "0") else doc["Order"]
            order = (int(doc["TimeMsc"]), ENTRY_ORDER[doc["Entry"]], key)
            by_position.setdefault(f"mt5:{server}:{doc['Login']}:{ref}", []).append((order, server, doc))
        out = {}
        for pkey, deals in by_position.items():
            first = deals[0][2]
            pos = RefPosition(deals[0][1], int(first["Login"]), pkey.rsplit(":", 1)[1])
            for _order, _server, doc in sorted(deals, key=lambda d: d[0]):
                _walk(pos, doc)
            out[pkey] = pos
        return out


def _walk(pos: RefPosition, doc: dict[str, str]) -> None:
    lots = Decimal(doc["VolumeExt"]) / Decimal(10**8)
    size = Decimal(doc["ContractSize"])
    buy = doc["Action"] == "0"
    units = lots * size if buy else -lots * size
    signed_lots = lots if buy else -lots
    price = Decimal(doc["Price"])
    money = Decimal(doc["Profit"]) + Decimal(doc["Storage"]) + Decimal(doc["Commission"]) + Decimal(
        doc.get("Fee", "0"))
    pos.platform_symbol = doc["Symbol"]
    pos.deal_keys.append(doc["Deal"])
    net = pos.net_units
    closing = doc["Entry"] in ("1", "3")
    if not units:
        pos.realised += money
        return
    same_way = net == 0 or (net > 0) == (units > 0)
    if closing and same_way:  # closes nothing: moves nothing
        pos.realised += money
        return
    if same_way:
        if net == 0:
            pos.realised, pos.gross, pos.avg = Decimal(0), Decimal(0), price
        else:
            avg = (abs(net) * pos.avg + abs(units) * price) / (abs(net) + abs(units))
            pos.avg = avg.quantize(Decimal("1E-12"), rounding=ROUND_HALF_EVEN)
        pos.realised += money
        pos.net_units += units
        pos.net_lots += signed_lots
        return
    pos.realised += money
    closed = min(abs(units), abs(net))
    pos.gross += closed * (price - pos.avg) * (1 if net > 0 else -1)
    if abs(units) < abs(net):
        pos.net_units += units
        pos.net_lots += signed_lots
    elif abs(units) > abs(net) and not closing:
        pos.net_units += units
        pos.net_lots += signed_lots
        pos.realised, pos.gross, pos.avg = Decimal(0), Decimal(0), price
    else:
        pos.net_units = pos.net_lots = pos.avg = Decimal(0)
