"""Builders shared by the exposure tests (canonical deals, quotes, accounts). No tests here."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.contract_sizes import contract_size_for
from schemas.events import Account, BalanceOperation, Deal, Quote
from schemas.identity import account_key

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SERVER = "ACME-MT5-Live"
TENANT = "acme"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_deal(
    deal_id: int | str,
    side: str,
    entry: str,
    lots: str | Decimal,
    price: str | Decimal,
    *,
    position: str | None = None,
    symbol: str = "EURUSD",
    login: int = 70001,
    server: str = SERVER,
    tenant: str = TENANT,
    platform: str = "mt5",
    contract_size: str | Decimal | None = None,
    t: float = 0,
    version: int = 1,
    event: str = "add",
    canceled: bool = False,
    currency: str = "USD",
    profit: str | Decimal = "0",
    swap: str | Decimal = "0",
    commission: str | Decimal = "0",
    fee: str | Decimal = "0",
    **extra: Any,
) -> Deal:
    """A fully validated canonical deal."""
    size = Decimal(contract_size) if contract_size is not None else contract_size_for(symbol)
    lots_d = Decimal(lots)
    units = lots_d * size
    price_d = Decimal(price)
    return Deal.model_validate({
        "deal_key": f"{platform}:{server}:{deal_id}",
        "tenant": tenant,
        "platform": platform,
        "server": server,
        "login": login,
        "deal_id": str(deal_id),
        "order_id": str(deal_id),
        "position_id": str(deal_id) if position is None else position,
        "symbol": symbol,
        "platform_symbol": symbol,
        "side": side,
        "entry": entry,
        "lots": lots_d,
        "signed_lots": Decimal(0) if canceled else (lots_d if side == "buy" else -lots_d),
        "contract_size": size,
        "units": units,
        "price": price_d,
        "notional": units * price_d,
        "profit": Decimal(profit),
        "swap": Decimal(swap),
        "commission": Decimal(commission),
        "fee": Decimal(fee),
        "currency": currency,
        "reason": "client",
        "canceled": canceled,
        "time": at(t),
        "event": event,
        "version": version,
        "is_deleted": event == "delete",
        "source": "test/0/0",
        **extra,
    })


def revise(deal: Deal, *, version: int, **changes: Any) -> Deal:
    """A new version of a deal (dealer update, or delete with event="delete")."""
    values = deal.model_dump()
    if "lots" in changes:
        lots = Decimal(changes["lots"])
        changes["lots"] = lots
        changes.setdefault("units", lots * deal.contract_size)
        changes.setdefault("signed_lots", lots if deal.side == "buy" else -lots)
    for name in ("price", "profit", "swap", "commission", "fee"):
        if name in changes:
            changes[name] = Decimal(changes[name])
    values.update(changes)
    values["version"] = version
    values["is_deleted"] = values["event"] == "delete"
    values["notional"] = values["units"] * values["price"]
    return Deal.model_validate(values)


def make_quote(symbol: str, bid: str | None, ask: str | None, *, server: str = SERVER, t: float = 0,
               tenant: str = TENANT) -> Quote:
    return Quote.model_validate({
        "tenant": tenant, "platform": "mt5", "server": server, "symbol": symbol,
        "platform_symbol": symbol, "bid": None if bid is None else Decimal(bid),
        "ask": None if ask is None else Decimal(ask), "time": at(t), "source": "test/0/0",
    })


def make_account(login: int = 70001, *, group: str = "real\\B-std", currency: str = "USD",
                 leverage: int = 100, balance: str | None = "10000", credit: str | None = "0",
                 server: str = SERVER, tenant: str = TENANT, platform: str = "mt5", t: float = 0,
                 version: int = 1) -> Account:
    return Account.model_validate({
        "account_key": account_key(platform, server, login), "tenant": tenant, "platform": platform,
        "server": server, "login": login, "group": group, "currency": currency, "leverage": leverage,
        "balance": None if balance is None else Decimal(balance),
        "credit": None if credit is None else Decimal(credit),
        "first_seen": T0, "updated_at": at(t), "version": version, "source": "test/0/0",
    })


def make_balance_op(op_id: int, amount: str, *, login: int = 70001, kind: str = "balance", t: float = 0,
                    version: int = 1, event: str = "add", server: str = SERVER) -> BalanceOperation:
    return BalanceOperation.model_validate({
        "op_key": f"mt5:{server}:{op_id}", "tenant": TENANT, "platform": "mt5", "server": server,
        "login": login, "op_id": str(op_id), "kind": kind, "amount": Decimal(amount),
        "currency": "USD", "time": at(t), "event": event, "version": version,
        "is_deleted": event == "delete", "source": "test/0/0",
    })


# ---- random trading histories -----------------------------------------------------------------
#
# A seeded generator of realistic event streams: hedging accounts open positions (one IN deal
# each, as on MT5/MT4/cTrader) and close them in parts, by close-by pairs or at once; netting
# accounts trade signed volumes labelled in / out / inout from their running net position.
# Noise on top: redeliveries, dealer price and volume corrections, deals later deleted,
# canceled deals, late-arriving closes, quotes with a side left out.

GEN_SYMBOLS: dict[str, tuple[str, int]] = {  # symbol -> (start mid, price decimals)
    "EURUSD": ("1.08500", 5), "USDJPY": ("150.000", 3), "EURJPY": ("162.750", 3),
    "GBPUSD": ("1.27000", 5), "XAUUSD": ("2000.00", 2), "GER40": ("18000.0", 1),
    "US30": ("38000.0", 1),
}
GEN_SERVERS: dict[str, str] = {"S1": "acme", "S2": "acme", "S3": "zenith"}


@dataclass
class History:
    events: list[Deal | Quote]
    modes: dict[str, str]  # account_key -> hedging / netting
    books: dict[str, str]  # account_key -> A / B

    def final_deals(self) -> list[Deal]:
        """Latest version of every deal; deleted and canceled ones left out."""
        latest: dict[str, Deal] = {}
        for event in self.events:
            if isinstance(event, Deal):
                held = latest.get(event.deal_key)
                if held is None or event.version > held.version:
                    latest[event.deal_key] = event
        return [d for d in latest.values() if not d.is_deleted and not d.canceled]

    def quotes(self) -> list[Quote]:
        return [e for e in self.events if isinstance(e, Quote)]


@dataclass
class _GenPosition:
    account: tuple[str, int]
    symbol: str
    side: str
    lots: Decimal  # still open, with every correction applied
    opening: Deal
    opened_ms: int


def random_history(seed: int, steps: int, *, accounts: int = 12, close_all: bool = False,
                   noise: bool = True) -> History:
    rng = random.Random(seed)
    clock = 0
    deal_ids = itertools.count(1)
    mids = {s: Decimal(p) for s, (p, _) in GEN_SYMBOLS.items()}
    ticks = {s: Decimal(1).scaleb(-d) for s, (_, d) in GEN_SYMBOLS.items()}
    events: list[Deal | Quote] = []
    deals: list[Deal] = []  # latest version of every deal emitted (for corrections)
    logins = [(sorted(GEN_SERVERS)[i % 3], 1000 + i) for i in range(accounts)]
    modes = {f"mt5:{s}:{lg}": ("netting" if lg % 2 == 0 else "hedging") for s, lg in logins}
    books = {f"mt5:{s}:{lg}": ("A" if lg % 4 == 1 else "B") for s, lg in logins}
    hedging = [a for a in logins if modes[f"mt5:{a[0]}:{a[1]}"] == "hedging"]
    netting = [a for a in logins if modes[f"mt5:{a[0]}:{a[1]}"] == "netting"]
    positions: dict[str, _GenPosition] = {}  # open hedging positions by position id
    nets: dict[tuple[tuple[str, int], str], tuple[Decimal, str, bool]] = {}  # -> (lots, id, reduced)
    ghosts: list[list[Deal]] = []

    def lots_between(low: str, high: Decimal) -> Decimal:
        cents = rng.randint(int(Decimal(low) * 100), max(int(high * 100), int(Decimal(low) * 100)))
        return Decimal(cents).scaleb(-2)

    def fill_price(symbol: str, side: str) -> Decimal:
        spread = ticks[symbol] * rng.randint(0, 3)
        return mids[symbol] + spread if side == "buy" else mids[symbol] - spread

    def emit(account: tuple[str, int], side: str, entry: str, lots: Decimal, symbol: str,
             position: str | None, *, ms: int | None = None, canceled: bool = False) -> Deal:
        """A new deal; `position` None: the deal opens a position named after itself."""
        deal_id = next(deal_ids)
        closing = entry != "in"
        deal = make_deal(
            deal_id, side, entry, lots, fill_price(symbol, side), position=position, symbol=symbol,
            login=account[1], server=account[0], tenant=GEN_SERVERS[account[0]],
            t=(clock if ms is None else ms) / 1000, version=clock * 4, canceled=canceled,
            commission=-(lots * 7),
            profit=Decimal(rng.randint(-50000, 50000)).scaleb(-2) if closing else Decimal(0),
            swap=Decimal(rng.randint(-500, 0)).scaleb(-2) if closing else Decimal(0),
        )
        events.append(deal)
        deals.append(deal)
        return deal

    def quote(server: str, symbol: str, *, whole: bool = False) -> None:
        spread = ticks[symbol] * rng.randint(1, 4)
        bid: str | None = str(mids[symbol] - spread)
        ask: str | None = str(mids[symbol] + spread)
        if not whole and rng.random() < 0.05:
            bid, ask = (None, ask) if rng.random() < 0.5 else (bid, None)
        events.append(make_quote(symbol, bid, ask, server=server, t=clock / 1000,
                                 tenant=GEN_SERVERS[server]))

    def revise_latest(deal: Deal, **changes: Any) -> Deal:
        new = revise(deal, version=clock * 4 + (2 if changes.get("event") == "delete" else 1), **changes)
        events.append(new)
        deals[deals.index(deal)] = new
        return new

    for _ in range(steps):
        clock += rng.randint(1, 400)
        symbol = rng.choice(list(GEN_SYMBOLS))
        mids[symbol] = max(mids[symbol] + ticks[symbol] * rng.randint(-40, 40), ticks[symbol] * 1000)
        roll = rng.random()
        if roll < 0.30:
            quote(rng.choice(sorted(GEN_SERVERS)), symbol)
        elif roll < 0.45 and hedging:  # open a hedged position
            account = rng.choice(hedging)
            side = rng.choice(["buy", "sell"])
            lots = lots_between("0.01", Decimal(5))
            deal = emit(account, side, "in", lots, symbol, None)
            positions[deal.deal_id] = _GenPosition(account, symbol, side, lots, deal, clock)
        elif roll < 0.60 and positions:  # close part or all of a hedged position
            pos = positions[rng.choice(sorted(positions))]
            lots = pos.lots if rng.random() < 0.4 else lots_between("0.01", pos.lots)
            late = noise and rng.random() < 0.1  # a close delivered after later events
            ms = rng.randint(pos.opened_ms, clock) if late else None
            emit(pos.account, "sell" if pos.side == "buy" else "buy", "out", lots, pos.symbol,
                 pos.opening.deal_id, ms=ms)
            pos.lots -= lots
            if not pos.lots:
                del positions[pos.opening.deal_id]
        elif roll < 0.65 and positions:  # close-by of two opposite positions
            pos = positions[rng.choice(sorted(positions))]
            others = [p for p in positions.values() if p.account == pos.account and p.symbol == pos.symbol
                      and p.side != pos.side]
            if others:
                other = others[0]
                lots = min(pos.lots, other.lots)
                for p in (pos, other):
                    emit(p.account, "sell" if p.side == "buy" else "buy", "out_by", lots, p.symbol,
                         p.opening.deal_id)
                    p.lots -= lots
                    if not p.lots:
                        del positions[p.opening.deal_id]
        elif roll < 0.85 and netting:  # netting trade
            account = rng.choice(netting)
            held, episode, reduced = nets.get((account, symbol), (Decimal(0), "", False))
            side = rng.choice(["buy", "sell"])
            lots = lots_between("0.01", Decimal(4))
            signed = lots if side == "buy" else -lots
            if held and reduced and (held > 0) == (signed > 0):  # no increase after a reduction
                side, signed = ("sell", -lots) if side == "buy" else ("buy", lots)
            after = held + signed
            if not held or (held > 0) == (signed > 0):
                entry = "in"
            elif after == 0 or (after > 0) == (held > 0):
                entry = "out"
            else:
                entry = "inout"
            deal = emit(account, side, entry, lots, symbol, episode or None)
            if not held:
                episode = deal.deal_id
            nets[(account, symbol)] = (after, episode if after else "", entry == "out" and bool(after))
            if entry == "inout":
                nets[(account, symbol)] = (after, episode, False)
        elif noise and roll < 0.90 and deals:  # redelivery of a deal already seen
            events.append(rng.choice(deals))
        elif noise and roll < 0.95 and deals:  # dealer correction
            deal = rng.choice(deals)
            if deal.is_deleted or deal.canceled:
                continue
            new_price = fill_price(deal.symbol, deal.side)
            corrected = positions.get(deal.position_id)
            if deal.entry == "in" and corrected is not None and corrected.opening.deal_key == deal.deal_key:
                extra = lots_between("0.01", Decimal(1))
                corrected.opening = revise_latest(deal, price=new_price, lots=deal.lots + extra,
                                                  event="update")
                corrected.lots += extra
            else:
                revise_latest(deal, price=new_price, profit=deal.profit + 1, event="update")
        elif noise and roll < 0.98 and hedging:  # a ghost: traded, then deleted by the dealer
            if ghosts and rng.random() < 0.5:
                for deal in ghosts.pop(0):
                    revise_latest(next(d for d in deals if d.deal_key == deal.deal_key), event="delete")
            else:
                account = rng.choice(hedging)
                opening = emit(account, "buy", "in", Decimal("1.5"), symbol, position=f"g{clock}")
                ghost = [opening]
                if rng.random() < 0.5:
                    ghost.append(emit(account, "sell", "out", Decimal("0.5"), symbol, position=f"g{clock}"))
                ghosts.append(ghost)
        elif noise and hedging:  # canceled deal
            emit(rng.choice(hedging), "buy", "in", Decimal(1), symbol, position=f"c{clock}", canceled=True)
    for ghost in ghosts:
        for deal in ghost:
            clock += 1
            revise_latest(next(d for d in deals if d.deal_key == deal.deal_key), event="delete")
    if close_all:
        for pos in list(positions.values()):
            clock += 1
            emit(pos.account, "sell" if pos.side == "buy" else "buy", "out", pos.lots, pos.symbol,
                 pos.opening.deal_id)
        for (account, symbol), (held, episode, _) in sorted(nets.items()):
            if held:
                clock += 1
                emit(account, "sell" if held > 0 else "buy", "out", abs(held), symbol, episode)
    for server in sorted(GEN_SERVERS):
        for symbol in GEN_SYMBOLS:
            clock += 1
            quote(server, symbol, whole=True)
    return History(events, modes, books)
