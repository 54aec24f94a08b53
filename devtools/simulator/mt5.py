"""Seeded generator of MT5 deal traffic as a bridge publishes it (Web API JSON, string values).

Accounts open and close positions (partial closes included), deposit and withdraw; a dealer
now and then corrects or deletes a deal; optionally a share of messages is malformed the ways
real feeds break. The same seed always gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import orjson

from schemas.envelope import Envelope

# name, contract size, digits, start price, per-step volatility
SYMBOLS: list[tuple[str, int, int, float, float]] = [
    ("EURUSD", 100_000, 5, 1.0850, 0.00008),
    ("GBPUSD", 100_000, 5, 1.2650, 0.0001),
    ("USDJPY", 100_000, 3, 151.20, 0.01),
    ("EURJPY", 100_000, 3, 164.10, 0.012),
    ("AUDUSD", 100_000, 5, 0.6550, 0.00007),
    ("XAUUSD", 100, 2, 2650.00, 0.4),
    ("US30", 1, 1, 43800.0, 4.0),
    ("BTCUSD", 1, 2, 96500.0, 25.0),
]
SUFFIXES = ["", ".r", ".e", "m"]
LOT_CHOICES = [1, 2, 5, 10, 10, 20, 50, 100, 100, 200, 500, 1000]  # in 1/100 lot


@dataclass
class _Position:
    position_id: int
    symbol: int
    side: int  # 0 buy, 1 sell
    volume: int  # MT5 Volume units (1/10000 lot)


@dataclass
class _Account:
    login: int
    server: str
    suffix: str
    positions: list[_Position] = field(default_factory=list)


class Mt5DealSimulator:
    def __init__(
        self,
        servers: list[str],
        accounts: int = 500,
        seed: int = 1,
        start_ms: int = 1_732_406_400_000,  # 2024-11-24 00:00 UTC
        malformed_rate: float = 0.0,
        correction_rate: float = 0.002,
        first_deal: int = 1_000_000,
    ) -> None:
        if not servers:
            raise ValueError("the simulator needs at least one MT5 server name")
        self.rng = random.Random(seed)
        self.servers = servers
        self.now_ms = start_ms
        self.malformed_rate = malformed_rate
        self.correction_rate = correction_rate
        self.prices = [s[3] for s in SYMBOLS]
        self.next_deal = first_deal
        self.next_order = first_deal * 5
        self.accounts = [
            _Account(100_000 + i, servers[i % len(servers)], self.rng.choice(SUFFIXES))
            for i in range(accounts)
        ]
        self.recent: list[tuple[dict[str, str], str]] = []
        self.malformed = 0

    def _price(self, idx: int) -> float:
        _, _, digits, _, vol = SYMBOLS[idx]
        self.prices[idx] = max(self.prices[idx] * 0.5, self.prices[idx] + self.rng.gauss(0, vol))
        return round(self.prices[idx], digits)

    def _deal(self, acc: _Account, action: int, **fields: str) -> dict[str, str]:
        self.next_deal += 1
        doc = {
            "Deal": str(self.next_deal),
            "ExternalID": "",
            "Login": str(acc.login),
            "Dealer": "0",
            "Order": "0",
            "Action": str(action),
            "Entry": "0",
            "Reason": "0",
            "Digits": "0",
            "DigitsCurrency": "2",
            "ContractSize": "0.00",
            "Time": str(self.now_ms // 1000),
            "TimeMsc": str(self.now_ms),
            "Symbol": "",
            "Price": "0.00000",
            "Volume": "0",
            "VolumeExt": "0",
            "Profit": "0.00",
            "Storage": "0.00",
            "Commission": "0.00",
            "Fee": "0.00",
            "Value": "0.00",
            "PositionID": "0",
            "Comment": "",
            "Flags": "0",
            "ModifyFlags": "0",
        }
        doc.update(fields)
        return doc

    def _trade(self, acc: _Account) -> dict[str, str]:
        rng = self.rng
        close = acc.positions and rng.random() < 0.48
        if close:
            pos = acc.positions[rng.randrange(len(acc.positions))]
            partial = pos.volume >= 200 and rng.random() < 0.2
            volume = (pos.volume // 200) * 100 if partial else pos.volume
            action, entry = 1 - pos.side, 1
            idx = pos.symbol
            pos.volume -= volume
            if pos.volume == 0:
                acc.positions.remove(pos)
            position_id = pos.position_id
        else:
            idx = rng.randrange(len(SYMBOLS))
            volume = rng.choice(LOT_CHOICES) * 100
            action, entry = rng.randrange(2), 0
            position_id = self.next_deal + 1
            acc.positions.append(_Position(position_id, idx, action, volume))
        name, contract, digits, _, _ = SYMBOLS[idx]
        price = self._price(idx)
        profit = round(rng.gauss(0, 40), 2) if entry == 1 else 0.0
        self.next_order += 1
        return self._deal(
            acc, action,
            Order=str(self.next_order), Entry=str(entry), Reason=str(rng.choice([0, 0, 0, 1, 16, 17])),
            Digits=str(digits), ContractSize=f"{contract:.2f}", Symbol=name + acc.suffix,
            Price=f"{price:.{digits}f}", Volume=str(volume), VolumeExt=str(volume * 10_000),
            Profit=f"{profit:.2f}", Commission=f"{-volume / 10_000 * 7:.2f}" if entry == 0 else "0.00",
            PositionID=str(position_id),
        )

    def _undo(self, doc: dict[str, str]) -> None:
        """A dealer deleted this trade: the account's books lose what it did (a deleted open
        never opened its position; a deleted close leaves the position open)."""
        if doc.get("Action") not in ("0", "1"):
            return
        acc = next(a for a in self.accounts if str(a.login) == doc["Login"])
        position_id, volume = int(doc["PositionID"]), int(doc["Volume"])
        pos = next((p for p in acc.positions if p.position_id == position_id), None)
        if doc["Entry"] == "0":
            if pos is not None:
                pos.volume -= volume
                if pos.volume <= 0:
                    acc.positions.remove(pos)
        elif pos is not None:
            pos.volume += volume
        else:
            name = doc["Symbol"][:len(doc["Symbol"]) - len(acc.suffix)]
            index = next(i for i, row in enumerate(SYMBOLS) if row[0] == name)
            acc.positions.append(_Position(position_id, index, 1 - int(doc["Action"]), volume))

    def _money(self, acc: _Account) -> dict[str, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            amount, action, comment = rng.choice([100, 250, 500, 1000, 5000]), 2, "Deposit"
        elif roll < 0.9:
            amount, action, comment = -rng.choice([50, 100, 300, 1000]), 2, "Withdrawal"
        else:
            amount, action, comment = rng.choice([50, 100]), 3, "Credit bonus"
        return self._deal(acc, action, Profit=f"{amount:.2f}", Comment=comment)

    def _malformed(self, acc: _Account) -> tuple[bytes, str, str]:
        """(value, server header, event header) broken one of the ways real feeds break."""
        self.malformed += 1
        # the broken message never reaches the platform's books: the account keeps the
        # positions it had (else a later close would name a position no stored deal opened)
        held = [replace(p) for p in acc.positions]
        good = self._trade(acc)
        acc.positions = held
        kind = self.rng.randrange(5)
        if kind == 0:
            return orjson.dumps(good)[:-7], acc.server, "add"  # truncated JSON
        if kind == 1:
            del good["Login"]
        elif kind == 2:
            good["Volume"], good["VolumeExt"] = "12x", ""
        elif kind == 3:
            good["Action"] = "99"
        else:
            return orjson.dumps(good), "UNKNOWN-SERVER", "add"
        return orjson.dumps(good), acc.server, "add"

    def envelopes(self, n: int) -> Iterator[Envelope]:
        rng = self.rng
        for _ in range(n):
            self.now_ms += rng.randint(1, 40)
            acc = self.accounts[rng.randrange(len(self.accounts))]
            event = "add"
            if self.malformed_rate and rng.random() < self.malformed_rate:
                value, server, event = self._malformed(acc)
            elif self.recent and rng.random() < self.correction_rate:
                pick = rng.randrange(len(self.recent))
                old, server = self.recent[pick]
                event = "delete" if rng.random() < 0.4 else "update"
                if event == "delete":
                    self.recent.pop(pick)  # a deleted deal is not corrected afterwards
                    self._undo(old)
                doc = dict(old)
                if event == "update":
                    doc["Comment"] = "dealer correction"
                    doc["Price"] = old["Price"]
                    doc["Profit"] = f"{float(old['Profit']) + 1.5:.2f}"
                value = orjson.dumps(doc)
            else:
                doc = self._money(acc) if rng.random() < 0.04 else self._trade(acc)
                server = acc.server
                value = orjson.dumps(doc)
                self.recent.append((doc, server))
                if len(self.recent) > 1000:
                    self.recent.pop(0)
            yield Envelope(
                topic="mt5.deals",
                key=str(acc.login),
                value=value,
                headers={"server": server, "event": event},
                timestamp_ms=self.now_ms,
            )
