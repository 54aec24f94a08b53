"""Fraud rules: shared IP/device, impossible travel, failed-login bursts, latency-arbitrage-style
scalping, mirror trading across linked accounts."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import Field

from risk_rules.engine import Context, GeoPoint, Hit, Rule, register
from risk_rules.rulekit import P, SharedUse, SharedUseParams, prune
from schemas.chunked import ChunkedDict
from schemas.events import BalanceOperation, Deal, Login
from schemas.pickling import utc_from_micros, utc_micros


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


# --------------------------------------------------------------------------- shared IP / device


IpKind = Literal["residential", "mobile", "hosting"]


class SharedParams(SharedUseParams):
    min_accounts: int = Field(default=4, ge=2, description="different clients")
    window_hours: float = Field(default=96, gt=0)
    ignore_kinds: list[IpKind] = Field(
        default_factory=list, description="IP kinds (from the geo data) not counted: a mobile "
        "carrier's address is shared by thousands of subscribers (carrier-grade NAT)")


class _SharedKey(SharedUse):
    """Distinct clients logging in from one IP address or device: the login field `keyed_by` names."""

    category = "fraud"
    Params = SharedParams
    p: SharedParams

    def ignored(self, login: Login) -> bool:
        return False

    def on_login(self, login: Login, account: str) -> list[Hit]:
        k = login.ip if self.keyed_by == "ip" else login.device
        if login.kind != "login" or not k or self.ignored(login):
            return []
        return self.used(login, k, account, login.login_key)

    def summary(self, record: Login | BalanceOperation, key: str, clients: int, accounts: int) -> str:
        return f"{clients} clients ({accounts} accounts) logged in from {self.keyed_by} {key}"


@register
class SharedIP(_SharedKey):
    rule_id = "shared_ip"
    keyed_by = "ip"

    def ignored(self, login: Login) -> bool:
        if not self.p.ignore_kinds or self.ctx.geo is None:
            return False
        point = self.ctx.geo(login.ip)
        return point is not None and point.kind in self.p.ignore_kinds


@register
class SharedDevice(_SharedKey):
    rule_id = "shared_device"
    keyed_by = "device"


# --------------------------------------------------------------------------- impossible travel


class TravelParams(P):
    max_speed_kmh: float = Field(default=1000, gt=0)
    min_distance_km: float = Field(default=500, ge=0)
    ignore_hosting: bool = Field(default=True, description="skip data-centre/VPN addresses")
    ignore_kinds: list[IpKind] = Field(default_factory=list, description="IP kinds also skipped")
    mobile_min_distance_km: float = Field(
        default=2000, ge=0, description="when either address is a mobile carrier's: it is located "
        "where the carrier's gateway is, often hundreds of km from the phone")


@register
class ImpossibleTravel(Rule):
    rule_id = "impossible_travel"
    category = "fraud"
    Params = TravelParams
    p: TravelParams

    def __init__(self, params: TravelParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.last: dict[str, tuple[datetime, GeoPoint, str, str]] = {}

    def on_login(self, login: Login, account: str) -> list[Hit]:
        geo = self.ctx.geo
        if login.kind != "login" or not login.ip or geo is None:
            return []
        point = geo(login.ip)
        if point is None or not point.located or (
                self.p.ignore_hosting and point.kind == "hosting") or (
                point.kind and point.kind in self.p.ignore_kinds):
            return []
        prev = self.last.get(account)
        self.last[account] = (login.time, point, login.login_key, login.ip)
        if prev is None:
            return []
        km = haversine_km(prev[1], point)
        hours = max((login.time - prev[0]).total_seconds() / 3600, 1 / 60)
        speed = km / hours
        mobile = "mobile" in (prev[1].kind, point.kind)
        least = self.p.min_distance_km
        if mobile:
            least = max(least, self.p.mobile_min_distance_km)
        if km < least or speed <= self.p.max_speed_kmh:
            return []
        return [
            Hit(
                account,
                login.tenant,
                f"logins from {prev[1].country} and {point.country} {km:,.0f} km apart "
                f"{hours * 60:.0f} min apart ({speed:,.0f} km/h > {self.p.max_speed_kmh:,.0f})",
                {
                    "distance_km": round(km),
                    "minutes": round(hours * 60, 1),
                    "speed_kmh": round(speed),
                    "max_speed_kmh": self.p.max_speed_kmh,
                    "from_ip": prev[3],
                    "to_ip": login.ip,
                    "from_country": prev[1].country,
                    "to_country": point.country,
                },
                [prev[2], login.login_key],
                login.time,
            )
        ]


# --------------------------------------------------------------------------- failed logins


class FailedParams(P):
    min_failures: int = Field(default=10, ge=2)
    window_minutes: float = Field(default=30, gt=0)


class _FailedBurst(Rule):
    category = "fraud"
    Params = FailedParams
    p: FailedParams

    def __init__(self, params: FailedParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.fails: dict[str, deque[tuple[datetime, str, str]]] = defaultdict(deque)

    def subject(self, login: Login, account: str) -> str:
        raise NotImplementedError

    def on_login(self, login: Login, account: str) -> list[Hit]:
        subject = self.subject(login, account)
        if login.kind != "failed" or not subject:
            return []
        q = self.fails[subject]
        q.append((login.time, login.login_key, account))
        prune(q, login.time, timedelta(minutes=self.p.window_minutes))
        if len(q) < self.p.min_failures:
            return []
        accounts = sorted({a for _, _, a in q})
        return [
            Hit(
                subject,
                login.tenant,
                f"{len(q)} failed logins on {subject} in {(q[-1][0] - q[0][0]).total_seconds() / 60:.0f} min "
                f"(threshold {self.p.min_failures} in {self.p.window_minutes:.0f} min)",
                {
                    "failures": len(q),
                    "min_failures": self.p.min_failures,
                    "window_minutes": self.p.window_minutes,
                    "accounts": accounts,
                },
                [k for _, k, _ in q],
                login.time,
                q[0][0],
            )
        ]


@register
class FailedLoginsAccount(_FailedBurst):
    rule_id = "failed_logins_account"

    def subject(self, login: Login, account: str) -> str:
        return account


@register
class FailedLoginsIP(_FailedBurst):
    rule_id = "failed_logins_ip"
    keyed_by = "ip"

    def subject(self, login: Login, account: str) -> str:
        return f"ip:{login.ip}" if login.ip else ""


# --------------------------------------------------------------------------- card testing


class CardTestingParams(P):
    min_cards: int = Field(default=5, ge=2, description="different cards declined")
    window_minutes: float = Field(default=60, gt=0)


@register
class CardTesting(Rule):
    """Many different cards declined on one account within minutes: stolen card numbers tried
    one after another until one goes through."""

    rule_id = "card_testing"
    category = "fraud"
    Params = CardTestingParams
    p: CardTestingParams

    def __init__(self, params: CardTestingParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.declined: dict[str, deque[tuple[datetime, str, str]]] = defaultdict(deque)

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if (op.platform != "psp" or op.kind != "deposit" or op.status not in ("declined", "failed")
                or op.method != "card" or not op.instrument_fingerprint):
            return []
        q = self.declined[account]
        q.append((op.time, op.instrument_fingerprint, op.op_key))
        prune(q, op.time, timedelta(minutes=self.p.window_minutes))
        cards = {fp for _, fp, _ in q}
        if len(cards) < self.p.min_cards:
            return []
        minutes = (q[-1][0] - q[0][0]).total_seconds() / 60
        return [
            Hit(
                account,
                op.tenant,
                f"{len(cards)} different cards declined in {minutes:.0f} min "
                f"(threshold {self.p.min_cards} in {self.p.window_minutes:.0f} min)",
                {
                    "cards": len(cards),
                    "declines": len(q),
                    "min_cards": self.p.min_cards,
                    "window_minutes": self.p.window_minutes,
                },
                [k for _, _, k in q],
                op.time,
                q[0][0],
            )
        ]


# --------------------------------------------------------------------------- latency arbitrage


class LatencyParams(P):
    max_hold_seconds: float = Field(default=15, gt=0)
    min_trades: int = Field(default=8, ge=2)
    min_win_rate: float = Field(default=0.75, gt=0, le=1)
    window_hours: float = Field(default=72, gt=0)
    max_trades: int = Field(default=200, ge=2, description="the latest short trades per account the "
                            "win rate is measured over (and the evidence lists)")


@register
class LatencyArbitrage(Rule):
    rule_id = "latency_arbitrage"
    category = "fraud"
    Params = LatencyParams
    p: LatencyParams

    def __init__(self, params: LatencyParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.opened: dict[tuple[str, str], int] = {}  # open position -> UTC microseconds
        # account -> its latest short trades in the window: (close time as UTC microseconds, profit,
        # deal key). Bounded by `max_trades`, and plain values: every recovery snapshot pickles it.
        self.trades: dict[str, deque[tuple[int, Decimal, str]]] = {}

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        pos = (account, deal.position_id or deal.order_id)
        if deal.entry == "in":
            self.opened[pos] = utc_micros(deal.time)
            return []
        opened = self.opened.pop(pos, None)
        if opened is None or deal.entry not in ("out", "out_by"):
            return []
        now = utc_micros(deal.time)
        if now - opened > self.p.max_hold_seconds * 1_000_000:
            return []
        q = self.trades.get(account)
        if q is None or q.maxlen != self.p.max_trades:
            q = self.trades[account] = deque(q or (), maxlen=self.p.max_trades)
        q.append((now, deal.profit, deal.deal_key))
        horizon = now - int(self.p.window_hours * 3_600_000_000)
        while q and q[0][0] < horizon:
            q.popleft()
        wins = sum(1 for _, pr, _ in q if pr > 0)
        rate = wins / len(q)
        if len(q) < self.p.min_trades or rate < self.p.min_win_rate:
            return []
        profit = sum(pr for _, pr, _ in q)
        return [
            Hit(
                account,
                deal.tenant,
                f"{len(q)} trades held at most {self.p.max_hold_seconds:.0f} s "
                f"in {self.p.window_hours:.0f} h, "
                f"{rate:.0%} profitable (threshold {self.p.min_win_rate:.0%}), profit {float(profit):,.2f} "
                f"{deal.currency}",
                {
                    "trades": len(q),
                    "wins": wins,
                    "win_rate": round(rate, 3),
                    "profit": float(profit),
                    "min_trades": self.p.min_trades,
                    "min_win_rate": self.p.min_win_rate,
                    "max_hold_seconds": self.p.max_hold_seconds,
                },
                [k for _, _, k in q],
                deal.time,
                utc_from_micros(q[0][0]),
            )
        ]


# --------------------------------------------------------------------------- mirror trades


def agent_id(agent: str) -> str:
    """The IB's number: the CRM says "IB-1023", the platform's Agent field 1023."""
    digits = "".join(c for c in agent if c.isdigit())
    return digits or agent


class MirrorParams(P):
    max_gap_seconds: float = Field(default=10, gt=0)
    lots_tolerance: float = Field(default=0.1, ge=0, description="relative volume difference")
    min_pairs: int = Field(default=3, ge=1, description="between linked accounts")
    min_pairs_unlinked: int = Field(default=6, ge=0, description="between any accounts; 0 = off")
    window_hours: float = Field(default=240, gt=0)


@register
class MirrorTrades(Rule):
    """Opposite opening trades on one symbol within seconds, similar volume, between accounts
    that share an IP, a device, an IB or a payment instrument."""

    rule_id = "mirror_trades"
    keyed_by = "tenant"  # pairs of accounts: links and trades of the whole tenant
    category = "fraud"
    Params = MirrorParams
    p: MirrorParams

    def __init__(self, params: MirrorParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        # (tenant, symbol, side) -> recent opening deals: a deal looks only at the other side.
        # Times here are UTC microseconds: plain ints keep the recovery snapshots cheap.
        self.recent: dict[tuple[str, str, str], deque[tuple[int, str, Decimal, str]]] = defaultdict(deque)
        self.links: dict[str, set[str]] = defaultdict(set)  # account -> "ip:..", "dev:..", "pay:.."
        # every pair of accounts that ever mirrored within the window: grows with the tenant, so
        # it pickles in chunks (a recovery snapshot re-pickles the chunks whose pairs moved)
        self.pairs: ChunkedDict[tuple[str, str], deque[tuple[int, str, str]]] = ChunkedDict(1024)
        self._deals = 0

    def reads(self, record: Deal | BalanceOperation | Login) -> bool:
        if isinstance(record, Deal):
            return record.entry == "in" and record.lots > 0  # opening trades only
        return True

    def on_login(self, login: Login, account: str) -> list[Hit]:
        if login.kind == "login":
            if login.ip:
                self.links[account].add("ip:" + login.ip)
            if login.device:
                self.links[account].add("dev:" + login.device)
        return []

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if op.platform == "psp" and op.instrument_fingerprint:
            self.links[account].add("pay:" + op.instrument_fingerprint)
        return []

    def _linked(self, a: str, b: str) -> str:
        accounts = self.ctx.accounts
        aa, bb = accounts.get(a), accounts.get(b)
        if aa is not None and bb is not None and aa.tenant == bb.tenant:
            ib_a, ib_b = agent_id(aa.agent), agent_id(bb.agent)
            if ib_a and ib_a == ib_b:
                return "ib:" + ib_a
        shared = self.links.get(a, set()) & self.links.get(b, set())
        return min(shared) if shared else ""

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        if deal.entry != "in" or deal.lots <= 0:
            return []
        gap = int(self.p.max_gap_seconds * 1_000_000)
        window = int(self.p.window_hours * 3_600_000_000)
        now = utc_micros(deal.time)
        self._deals += 1
        if self._deals % 50_000 == 0:  # forget pairs whose last mirrored trade left the window
            self.pairs = self.pairs.filtered(lambda _, q: now - q[-1][0] <= window)
        mine = self.recent[(deal.tenant, deal.symbol, deal.side)]
        while mine and now - mine[0][0] > gap:
            mine.popleft()
        q = self.recent[(deal.tenant, deal.symbol, "sell" if deal.side == "buy" else "buy")]
        while q and now - q[0][0] > gap:
            q.popleft()
        hits: list[Hit] = []
        tolerance = Decimal(str(self.p.lots_tolerance))
        for when, other, lots, key in q:
            # records of different accounts may arrive slightly out of event-time order
            if other == account or abs(now - when) > gap:
                continue
            if abs(lots - deal.lots) > tolerance * max(lots, deal.lots):
                continue
            link = self._linked(account, other)
            if not link and not self.p.min_pairs_unlinked:
                continue
            pair = (min(account, other), max(account, other))
            pq = self.pairs.get(pair) or deque()
            pq.append((now, key, deal.deal_key))
            while pq and now - pq[0][0] > window:
                pq.popleft()
            self.pairs[pair] = pq  # changed in place: set again so that its chunk re-pickles
            needed = self.p.min_pairs if link else self.p.min_pairs_unlinked
            if len(pq) >= needed:
                evidence = sorted({k for _, a, b in pq for k in (a, b)})
                how = f"linked by {link.split(':')[0]}" if link else "no known link"
                hits.append(
                    Hit(
                        pair[0],
                        deal.tenant,
                        f"{len(pq)} opposite trades of equal size within {self.p.max_gap_seconds:.0f} s "
                        f"between {pair[0]} and {pair[1]} ({how}; threshold {needed})",
                        {
                            "pairs": len(pq),
                            "min_pairs": needed,
                            "accounts": list(pair),
                            "link": link,
                            "max_gap_seconds": self.p.max_gap_seconds,
                        },
                        evidence,
                        deal.time,
                        utc_from_micros(pq[0][0]),
                    )
                )
            break
        mine.append((now, account, deal.lots, deal.deal_key))
        return hits
