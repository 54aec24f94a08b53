"""A realistic simulated brokerage: a deterministic (seeded) generator of everything a broker's
platforms, payment providers and CRM publish, with known suspicious behaviour injected.

    from devtools.simulator.brokerage import Brokerage
    sim = Brokerage(settings, seed=1, accounts=5_000)
    for env in sim.envelopes(100_000): ...          # time-ordered raw envelopes
    sim.truth()                                      # the injected cases (ground truth)
    sim.write_files(Path("sim.jsonl"), Path("truth.jsonl"), 1_000_000)

It is a discrete-event simulation in event time: every account, instrument and payment
schedules its next action on one heap; each action emits the messages it causes, stamped with
its time, so the output is time-ordered. The same settings, seed and plan (`events`, `days`)
always give the same bytes. See docs/simulator.md.
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib import error as urlerror
from urllib import request as urlrequest

import orjson

from devtools.simulator import emit
from devtools.simulator.cashier import Cashier
from devtools.simulator.clock import SimClock
from devtools.simulator.lifecycle import Lifecycle
from devtools.simulator.logins import Logins
from devtools.simulator.market import DAY_MS, HOUR_MS, Market, Symbol, fx_open, is_open, is_rollover
from devtools.simulator.payments import (
    Psp,
    Webhook,
    build_webhook,
    providers_from,
    simulated_psp_settings,
)
from devtools.simulator.sanctions import with_simulated_reference
from devtools.simulator.trading import Trading
from devtools.simulator.typologies import TYPOLOGIES, Case, Typologies
from devtools.simulator.world import Server, SimAccount, World, build_world, partner_config
from pipelines.config import ServerConfig, Settings, parse_settings
from schemas.envelope import Envelope

DEFAULT_START_MS = 1_732_492_800_000  # Monday 2024-11-25 00:00:00 UTC
DEFAULT_ACCOUNTS = 5_000
DEFAULT_QUOTE_SHARE = 0.4

# How busy clients are by their local hour (mean 1): evenings are the retail peak.
_LOCAL_HOURS = (0.15, 0.08, 0.05, 0.05, 0.05, 0.1, 0.3, 0.7, 1.0, 1.2, 1.3, 1.3, 1.3, 1.3,
                1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 1.9, 1.6, 1.1, 0.5)
_LOCAL_MEAN = sum(_LOCAL_HOURS) / 24
_LOCAL_WEIGHTS = tuple(w / _LOCAL_MEAN for w in _LOCAL_HOURS)
_LOCAL_MAX = max(_LOCAL_WEIGHTS)
_WEEKEND = 0.3


@dataclass(slots=True, eq=False)
class Feed:
    """One price stream of one server: a symbol as the server names it (std or raw group)."""

    srv: Server
    sym: Symbol
    psym: str
    raw: bool
    topic: str
    spread_mult: float
    bid: int = 0
    ask: int = 0
    gap_until: int = 0
    published: int = 0


@dataclass
class Stats:
    """What a run produced."""

    events: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    by_typology: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_ms: int = 0
    last_ms: int = 0
    posted: int = 0
    post_failures: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        days = (self.last_ms - self.first_ms) / DAY_MS
        return (f"{self.events:,} events in {self.seconds:.1f} s ({self.rate:,.0f}/s), "
                f"{days:.1f} simulated days, {self.cases} injected cases")


def _tenants_of(source: Any) -> list[tuple[str, list[ServerConfig]]]:
    if isinstance(source, Settings):
        return [(t.id, list(t.servers)) for t in source.tenants]
    if isinstance(source, Mapping):
        return [(str(k), [s if isinstance(s, ServerConfig) else ServerConfig.model_validate(s)
                          for s in v]) for k, v in source.items()]
    out: dict[str, list[ServerConfig]] = {}
    for item in source:
        tenant, server = item
        out.setdefault(str(tenant), []).append(
            server if isinstance(server, ServerConfig) else ServerConfig.model_validate(server))
    return list(out.items())


class Brokerage:
    """A seeded simulated brokerage. See the module docstring and docs/simulator.md."""

    def __init__(
        self,
        settings_or_servers: Settings | Mapping[str, Sequence[Any]] | Iterable[tuple[str, Any]],
        seed: int,
        accounts: int = DEFAULT_ACCOUNTS,
        start_ms: int = DEFAULT_START_MS,
        *,
        days: float | None = None,
        events: int | None = None,
        quote_share: float = DEFAULT_QUOTE_SHARE,
        typology_rate: float = 1.0,
        recon_breaks: float = 0.0,
        withdrawal_cases: int = 0,
    ) -> None:
        """`settings_or_servers`: the engine Settings, or {tenant: [ServerConfig | dict]}, or
        (tenant, server) pairs. `accounts`: trading accounts in the world. `events` and `days`
        plan the run: with both, clients are made busier or quieter so that about `events`
        messages span about `days`; with `events` only, clients keep their natural pace and the
        span follows; without `events` the first call that asks for n events plans with n.
        `quote_share`: the share of the traffic that is price ticks (0..0.9).
        `typology_rate`: multiplies how often suspicious cases are injected.
        `recon_breaks`: the chance that a payment's booking is given a reconciliation break
        (0: none; see cashier.py and `recon_truth`). `withdrawal_cases`: withdrawal requests
        the withdrawal policy holds or rejects (withdrawal_cases.py)."""
        tenants = _tenants_of(settings_or_servers)
        if not tenants or not any(servers for _, servers in tenants):
            raise ValueError("the simulated brokerage needs at least one tenant with a server")
        if accounts < 1:
            raise ValueError("accounts must be at least 1")
        if isinstance(settings_or_servers, Settings):
            base = settings_or_servers
        else:
            base = parse_settings({"tenants": [
                {"id": t, "servers": [s.model_dump() for s in servers]} for t, servers in tenants
            ]}, "simulator")
        self.psp_settings = simulated_psp_settings([t for t, _ in tenants], base.psp)
        self.settings: Settings = base.model_copy(update={
            "psp": self.psp_settings, "rules": with_simulated_reference(base.rules)})
        self.psp: dict[str, Psp] = providers_from(self.psp_settings)
        self.seed = seed
        self.start_ms = start_ms
        self.days = days
        self.events_hint = events
        self.quote_share = min(max(quote_share, 0.0), 0.9)
        self.typology_rate = typology_rate
        self.withdrawal_cases = withdrawal_cases
        self.rng = random.Random(seed)
        self.now = start_ms
        self.market = Market(self.rng, start_ms)
        self.world: World = build_world(tenants, self.market, self.rng, accounts, start_ms)
        self.servers = self.world.servers
        self.trading = Trading(self)
        self.cashier = Cashier(self)
        self.cashier.recon_rate = recon_breaks
        self.logins = Logins(self)
        self.lifecycle = Lifecycle(self)
        self.typologies = Typologies(self)
        self.feeds: list[list[Feed]] = [[] for _ in self.market.symbols]
        self._feed_of: dict[tuple[int, int, bool], Feed] = {}
        self._build_feeds()
        # spread noise: log-normal multipliers drawn once (cheaper than one draw per quote)
        self._jitter = [self.rng.lognormvariate(0.0, 0.18) for _ in range(256)]
        self.last_snapshot: dict[str, int] = {}
        self.correction_gap_ms = 6.0 * HOUR_MS
        self.change_gap_ms = float(HOUR_MS)
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self._buf: list[tuple[Envelope, Webhook | None]] = []
        self.emitted = 0  # envelopes emitted (their index is the emission order)
        self.yielded = 0  # envelopes handed to the caller
        self.planned = False
        self.horizon_ms = 0
        self.activity = 1.0
        self.tick_rate = [0.0] * len(self.market.symbols)
        self.burst_gap_ms = float(DAY_MS)
        self._gen: Iterator[tuple[Envelope, Webhook | None]] | None = None
        self._keep_hooks = False

    # -- scheduling -----------------------------------------------------------------------------

    def at(self, t: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run fn(arg) at time t (never before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (t if t > self.now else self.now, self._seq, fn, arg))

    def emit(self, topic: str, key: str, value: bytes, headers: dict[str, str],
             case: Case | None = None, event_id: str = "") -> int:
        """Publish one message now; returns its index in the output."""
        index = self.emitted
        self.emitted = index + 1
        self._buf.append((Envelope(topic, value, self.now, key, headers), None))
        if case is not None and event_id:
            case.add(index, self.now, event_id)
        return index

    def emit_webhook(self, hook: Webhook, case: Case | None, event_id: str) -> int:
        index = self.emitted
        self.emitted = index + 1
        env = Envelope(f"psp.{hook.provider}", hook.body, self.now, hook.key, hook.headers)
        self._buf.append((env, hook if self._keep_hooks else None))
        if case is not None and event_id:
            case.add(index, self.now, event_id)
        return index

    # -- prices ---------------------------------------------------------------------------------

    def _build_feeds(self) -> None:
        for srv in self.servers:
            for sym in srv.symbols:
                variants = [(sym.name + srv.std_suffix, False)]
                if srv.platform != "ctrader":
                    variants.append((sym.name + ".r", True))
                else:
                    variants = [(sym.name, False)]
                topic = {"mt5": "mt5.ticks", "mt4": "mt4.ticks", "ctrader": "ctrader.events"}[
                    srv.platform]
                for psym, raw in variants:
                    feed = Feed(srv, sym, psym, raw, topic,
                                srv.spread_mult * (0.5 if raw else 2.0))
                    self.feeds[sym.idx].append(feed)
                    self._feed_of[(srv.index, sym.idx, raw)] = feed

    def _spread(self, feed: Feed, t: int) -> int:
        sym = feed.sym
        spread = sym.spread * feed.spread_mult * self._jitter[int(self.rng.random() * 256)]
        if is_rollover(t):
            spread *= 3.0
        if t < self.market.burst_until[sym.idx]:
            spread *= 1.8
        return max(1, int(spread + 0.5))

    def quote(self, srv: Server, sym: Symbol, raw: bool) -> tuple[int, int]:
        """The server's (bid, ask) in points now: stale while its feed is stuck."""
        feed = self._feed_of[(srv.index, sym.idx, raw and srv.platform != "ctrader")]
        now = self.now
        if now < feed.gap_until and feed.bid:
            return feed.bid, feed.ask
        mid = self.market.advance(sym.idx, now)
        spread = self._spread(feed, now)
        bid = int(mid / sym.point - spread / 2 + 0.5)
        return bid, bid + spread

    def _publish(self, feed: Feed, mid: float) -> None:
        sym = feed.sym
        now = self.now
        spread = self._spread(feed, now)
        bid = int(mid / sym.point - spread / 2 + 0.5)
        ask = bid + spread
        bid_changed = bid != feed.bid
        ask_changed = ask != feed.ask
        if not (bid_changed or ask_changed):
            return
        feed.bid, feed.ask = bid, ask
        feed.published += 1
        srv = feed.srv
        platform = srv.platform
        point = sym.point
        if platform == "mt5":
            digits = sym.digits
            value = emit.mt5_tick(feed.psym, now + srv.offset_ms, f"{bid * point:.{digits}f}",
                                  f"{ask * point:.{digits}f}",
                                  (2 if bid_changed else 0) | (4 if ask_changed else 0))
        elif platform == "mt4":
            value = emit.mt4_tick(feed.psym, now + srv.offset_ms, round(bid * point, sym.digits),
                                  round(ask * point, sym.digits))
        else:
            scale = 10 ** (5 - sym.digits)
            value = emit.ctrader_spot(srv.bridge_ctid, sym.ctrader_id,
                                      bid * scale if bid_changed else None,
                                      ask * scale if ask_changed else None, now)
        index = self.emitted
        self.emitted = index + 1
        self._buf.append((Envelope(feed.topic, value, now, feed.psym, {"server": srv.name}), None))

    def _tick(self, i: int) -> None:
        """The next price of instrument i, published by every server that quotes it."""
        sym = self.market.symbols[i]
        now = self.now
        if not is_open(sym, now):
            self.at(self._reopen(sym, now), self._tick, i)
            return
        self._quote(i, now, 0.85)
        rate = self.tick_rate[i] * sym.session[(now // HOUR_MS) % 24]
        if rate > 0:
            self.at(now + 1 + int(self.rng.expovariate(rate)), self._tick, i)

    def _quote(self, i: int, now: int, share: float) -> None:
        """Move instrument i's price and publish it on each server that quotes it (and is not in
        a feed gap), each with probability `share`."""
        mid = self.market.advance(i, now)
        rnd = self.rng.random
        for feed in self.feeds[i]:
            if now >= feed.gap_until and rnd() < share:
                self._publish(feed, mid)

    def _reopen(self, sym: Symbol, t: int) -> int:
        for _ in range(80):
            t += HOUR_MS // 2
            if is_open(sym, t):
                return t + self.rng.randint(0, 120_000)
        return t

    def burst(self, i: int, duration_ms: int, direction: int, strength: float) -> None:
        """A fast market on instrument i now: prices move quickly and every server ticks."""
        self.market.start_burst(i, self.now, duration_ms, direction, strength)
        self.at(self.now + self.rng.randint(50, 700), self._burst_tick, (i, self.now + duration_ms))

    def _burst_tick(self, arg: tuple[int, int]) -> None:
        i, end = arg
        now = self.now
        sym = self.market.symbols[i]
        if now >= end or not is_open(sym, now):
            return
        self._quote(i, now, 0.95)
        self.at(now + 150 + int(self.rng.expovariate(1.0 / 650.0)), self._burst_tick, arg)

    def _random_burst(self, _: object) -> None:
        """News and session opens: a fast market on a popular instrument, sometimes with a
        server's feed stuck for a few seconds."""
        rng = self.rng
        syms = [s for s in self.market.symbols if is_open(s, self.now)]
        if syms:
            sym = rng.choices(syms, [s.weight for s in syms])[0]
            duration = rng.randint(45_000, 180_000)
            self.burst(sym.idx, duration, rng.choice((-1, 1)), rng.uniform(0.2, 1.2))
            if rng.random() < 0.15 and self.feeds[sym.idx]:
                feed = rng.choice(self.feeds[sym.idx])
                start = self.now + rng.randint(5_000, duration // 2)
                self.at(start, self._gap, (feed, rng.randint(1_500, 6_000)))
        self.at(self.now + 1 + int(rng.expovariate(1.0 / self.burst_gap_ms)), self._random_burst)

    def _gap(self, arg: tuple[Feed, int]) -> None:
        feed, length = arg
        self.stall(feed.srv, feed.sym, length)

    def stall(self, srv: Server, sym: Symbol, length_ms: int) -> None:
        """The server's feed of `sym` (both groups) stops updating for length_ms from now."""
        for raw in (False, True):
            feed = self._feed_of.get((srv.index, sym.idx, raw))
            if feed is not None:
                feed.gap_until = self.now + length_ms

    # -- clients --------------------------------------------------------------------------------

    def with_positions(self) -> list[SimAccount]:
        return [a for a in self.world.accounts if a.positions]

    def schedule_session(self, acc: SimAccount) -> None:
        """The account's next session, more likely in its local daytime and on weekdays."""
        rng = self.rng
        rate = acc.rate * self.activity / DAY_MS
        if rate <= 0:
            return
        t = self.now
        tz = int(acc.client.country.tz * HOUR_MS)
        crypto = any(s.always_open for s in acc.favourites)
        for _ in range(64):
            t += 1 + int(rng.expovariate(rate * _LOCAL_MAX))
            w = _LOCAL_WEIGHTS[((t + tz) // HOUR_MS) % 24]
            if not fx_open(t):
                w *= _WEEKEND if crypto else _WEEKEND / 3
            if rng.random() * _LOCAL_MAX < w:
                break
        acc.next_session_at = t
        self.at(t, self._session, (acc, 0))

    def _session(self, arg: tuple[SimAccount, int]) -> None:
        acc, attempt = arg
        if acc.next_session_at != self.now and attempt == 0:
            return  # superseded
        if acc.state != "active" or acc.flagged == "owned":
            return
        rng = self.rng
        client = acc.client
        device = self.logins.device(client)
        ip, country = self.logins.where(client, device)
        if attempt < 2 and rng.random() < (0.04 if attempt == 0 else 0.2):
            self.logins.login(acc, "failed", ip=ip, country=country, device=device)
            acc.next_session_at = self.now + rng.randint(4_000, 45_000)
            self.at(acc.next_session_at, self._session, (acc, attempt + 1))
            return
        self.logins.login(acc, "login", ip=ip, country=country, device=device)
        profile = acc.profile
        duration = int(min(rng.lognormvariate(0.0, 0.9) * (3 if profile.name == "scalper" else 1)
                           * 20 * 60_000, 10 * HOUR_MS))
        busy = acc.flagged and self.now < acc.flag_until
        if not busy:
            self._session_money(acc)
            channel = "desktop"
            if device.client_type in (4, 5):
                channel = "mobile"
            elif device.client_type == 11:
                channel = "web"
            elif profile.name == "scalper" and acc.login % 3 == 0:
                channel = "expert"
            n = _poisson(rng, profile.trades_per_session)
            for off in sorted(rng.randint(5_000, max(duration, 6_000)) for _ in range(n)):
                self.at(self.now + off, self._trade, (acc, channel))
        if rng.random() < 0.7:
            self.at(self.now + duration, self._logout, (acc, ip, country, device))
        self.schedule_session(acc)

    def _logout(self, arg: tuple[SimAccount, int, str, Any]) -> None:
        acc, ip, country, device = arg
        self.logins.login(acc, "logout", ip=ip, country=country, device=device)

    def _session_money(self, acc: SimAccount) -> None:
        rng = self.rng
        cashier = self.cashier
        typical = acc.profile.deposit_median * self.market.rate("USD", acc.server.currency)
        if acc.balance < 0.25 * typical and not acc.positions:
            if rng.random() < 0.55:
                cashier.deposit(acc, cashier.typical_amount(acc))
        elif rng.random() < 0.012:
            cashier.deposit(acc, cashier.typical_amount(acc))
        elif not acc.positions and acc.balance > 2.5 * typical and rng.random() < 0.1:
            cashier.withdraw(acc, acc.balance * rng.uniform(0.3, 0.8))
        elif acc.balance > 200 and rng.random() < 0.006:
            cashier.withdraw(acc, acc.balance * rng.uniform(0.05, 0.3))

    def first_deposit(self, acc: SimAccount) -> None:
        """A newly approved account funds itself, then starts trading."""
        if acc.state != "active":
            return
        if acc.flagged != "owned":
            self.cashier.deposit(acc, self.cashier.typical_amount(acc))
            acc.rate = max(acc.rate, acc.profile.sessions_per_day * 0.5)
        self.schedule_session(acc)

    def _trade(self, arg: tuple[SimAccount, str]) -> None:
        acc, channel = arg
        if acc.state != "active":
            return
        rng = self.rng
        trading = self.trading
        now = self.now
        syms = [s for s in acc.favourites if is_open(s, now)]
        if not syms:
            return
        sym = rng.choice(syms)
        side = rng.randrange(2)
        if acc.hedger and acc.positions and rng.random() < 0.25:
            pos = rng.choice(acc.positions)
            sym, side = pos.sym, 1 - pos.side
        vol = trading.lots_for(acc, sym)
        if acc.positions:
            equity, margin = trading.margin(acc)
        else:
            equity, margin = acc.balance + acc.credit, 0.0
        free = equity - margin
        need = trading.required_margin(acc, sym, vol)
        u = ((acc.login * 2654435761) % 1000) / 1000.0  # how much of its margin it dares use
        appetite = 0.08 + 0.85 * u * u * u
        if need > free * appetite:
            vol = int(vol * free * appetite / need) if need > 0 else 0
            if vol < 1:
                if free < 0.2 * acc.profile.deposit_median and rng.random() < 0.15:
                    self.cashier.deposit(acc, self.cashier.typical_amount(acc))
                return
        trading.open(acc, sym, side, vol, channel=channel)

    # -- planning -------------------------------------------------------------------------------

    def _per_day(self) -> float:
        """Expected account-driven messages per day at activity 1."""
        total = 0.0
        for acc in self.world.accounts:
            if acc.state == "new":
                weight = 0.5
            elif acc.state in ("active", "dormant"):
                weight = 1.0
            else:
                weight = 0.0
            per_session = 1.9 + acc.profile.trades_per_session * 2.3 + 0.25
            total += weight * acc.rate * 0.8 * per_session
        return total

    def plan(self, events: int | None = None) -> None:
        """Decide the run's pace and span, and schedule what starts it."""
        if self.planned:
            return
        self.planned = True
        rng = self.rng
        world = self.world
        n = self.events_hint or events
        existing = [a for a in world.accounts if a.state in ("active", "dormant")]
        sync_events = sum(3 + (a.ib is not None) for a in existing)
        per_day = max(self._per_day(), 1.0)
        share = self.quote_share
        if n:
            budget = max(n - sync_events, n * 0.2) * (1.0 - share)
            if self.days:
                self.activity = min(max(budget / (per_day * self.days), 0.02), 200.0)
                horizon_days = self.days
            else:
                horizon_days = budget / per_day
        else:
            horizon_days = self.days or 30.0
        self.horizon_ms = int(max(horizon_days, 0.05) * DAY_MS)
        account_rate = per_day * self.activity / DAY_MS  # messages per ms
        tick_total = account_rate * share / max(1.0 - share, 0.1)
        market = self.market
        weights = [math.sqrt(s.weight) for s in market.symbols]
        feeds = [len(f) * 0.85 for f in self.feeds]
        denom = sum(w * f for w, f in zip(weights, feeds, strict=True)) or 1.0
        background = tick_total * 0.75
        self.tick_rate = [background * w / denom for w in weights]
        burst_ticks = 110_000 / 800.0 * (sum(feeds) / max(len(feeds), 1)) * 0.95
        self.burst_gap_ms = max(burst_ticks / max(tick_total * 0.25, 1e-12), 60_000.0)
        self.correction_gap_ms = max(DAY_MS / max(per_day * self.activity * 0.0008, 1e-9), 60_000.0)
        self.change_gap_ms = max(DAY_MS / max(len(world.accounts) * 0.01, 1e-9), 60_000.0)
        start = self.start_ms
        # the initial sync: what already exists, published in the first minutes
        spread = max(len(existing) * 40, 60_000)
        for acc in existing:
            self.at(start + rng.randint(0, spread), self.lifecycle.sync, acc)
        for acc in world.accounts:
            if acc.state == "new":
                self.at(start + spread + int(acc.opened_frac * self.horizon_ms), self._open_new, acc)
            elif acc.state in ("active", "dormant"):
                if acc.state == "dormant":
                    acc.state = "active" if rng.random() < 0.5 else "dormant-quiet"
                    acc.was_dormant = True
                    if acc.state == "dormant-quiet":
                        continue
                self.now = start + spread
                self.schedule_session(acc)
        self.now = start
        self.logins.plan_travel(world.clients, self.horizon_ms, start)
        for sym in market.symbols:
            self.at(start + spread + rng.randint(0, 60_000), self._tick, sym.idx)
        self.at(start + spread + int(rng.expovariate(1.0 / self.burst_gap_ms)), self._random_burst)
        first_rollover = start - start % DAY_MS + 22 * HOUR_MS
        self.at(first_rollover if first_rollover > start else first_rollover + DAY_MS,
                self.trading.rollover)
        self.at(start + spread + int(rng.expovariate(1.0 / self.correction_gap_ms)),
                self.trading.dealer_correction)
        self.at(start + spread + int(rng.expovariate(1.0 / self.change_gap_ms)), self.lifecycle.change)
        self.typologies.plan(start + spread, self.horizon_ms, self.typology_rate)
        if self.withdrawal_cases > 0:  # opt-in: other histories stay as they were
            from devtools.simulator.withdrawal_cases import WithdrawalCases

            WithdrawalCases(self).plan(start + spread, self.horizon_ms, self.withdrawal_cases)

    def _open_new(self, acc: SimAccount) -> None:
        self.lifecycle.open(acc)

    # -- output ---------------------------------------------------------------------------------

    def _run(self) -> Iterator[tuple[Envelope, Webhook | None]]:
        heap = self._heap
        pop = heapq.heappop
        buf = self._buf
        while heap:
            t, _, fn, arg = pop(heap)
            self.now = t
            fn(arg)
            if buf:
                yield from buf
                buf.clear()

    def stream(self, n: int) -> Iterator[tuple[Envelope, Webhook | None]]:
        """The next n envelopes, each with its HTTP webhook when it is one (and webhooks are
        kept: `keep_webhooks()`); n = 0 runs until the world runs out (never, in practice)."""
        self.plan(n or None)
        if self._gen is None:
            self._gen = self._run()
        gen = self._gen
        for count, item in enumerate(gen, start=1):
            self.yielded += 1
            yield item
            if count == n:
                return

    def keep_webhooks(self) -> None:
        """Keep the HTTP form of each webhook envelope (tests, live posting)."""
        self._keep_hooks = True

    def envelopes(self, n: int) -> Iterator[Envelope]:
        """The next n raw envelopes, time-ordered and deterministic."""
        for env, _ in self.stream(n):
            yield env

    def partner_configs(self) -> dict[str, dict[str, Any]]:
        """Per tenant, the simulated IB tree as a commissions configuration (the layout of
        examples/commissions.yaml), with the existing accounts assigned to their IBs."""
        out: dict[str, dict[str, Any]] = {}
        for srv in self.servers:
            if srv.tenant not in out:
                out[srv.tenant] = partner_config(self.world, srv.tenant, srv.currency)
        return out

    def truth(self) -> list[dict[str, Any]]:
        """The injected cases seen so far (events not yet handed out are left out)."""
        return self.typologies.truth(self.yielded)

    def recon_truth(self, every: bool = False) -> list[dict[str, Any]]:
        """The reconciliation breaks the simulation made (injected, and the natural ones: Nuvei
        reversals), each {kind, break_id, tenant, psp_op_key, platform_op_key, basis, injected};
        those whose events have not been handed out yet are left out unless `every`."""
        return [t for i, t in self.cashier.recon_truth if every or i < self.yielded]

    def write_files(self, out: Path, truth: Path, n: int,
                    progress: Callable[[int], None] | None = None) -> Stats:
        """n envelopes to `out` (JSON Lines replay file) and the ground truth to `truth`."""
        stats = Stats()
        started = time.perf_counter()
        by_topic: dict[str, int] = {}
        first = last = 0
        count = 0
        with open(out, "wb", buffering=1 << 20) as fh:
            write = fh.write
            for env in self.envelopes(n):
                write(env.to_json_line())
                write(b"\n")
                topic = env.topic
                by_topic[topic] = by_topic.get(topic, 0) + 1
                if not count:
                    first = env.timestamp_ms
                last = env.timestamp_ms
                count += 1
                if progress is not None and count % 100_000 == 0:
                    progress(count)
        cases = self.truth()
        write_truth(truth, cases)
        stats.events = count
        stats.by_topic = dict(sorted(by_topic.items()))
        stats.cases = len(cases)
        stats.by_typology = count_typologies(cases)
        stats.first_ms, stats.last_ms = first, last
        stats.seconds = time.perf_counter() - started
        return stats

    def run_live(self, publish_fn: Callable[[Iterable[Envelope]], Any], rate: float, n: int = 0,
                 bursts: bool = False, *, post_url: str = "", max_in_flight: int = 32,
                 progress: Callable[[int, Stats], None] | None = None,
                 progress_every_s: float = 5.0, clock: SimClock | None = None,
                 resign: bool = True, stats: Stats | None = None) -> Stats:
        """Hand envelopes to `publish_fn` (an iterable of envelopes, e.g. a wrapper around
        `brokerstream.publish.publish`) paced at `rate` per second (0: as fast as possible);
        `bursts` makes the pace uneven, as real traffic is. With `post_url`, payment webhooks
        are posted (re-signed with the wall clock) to the receiver at
        `{post_url}/webhooks/{provider}` instead, with at most `max_in_flight` requests open.

        `clock`: advanced to each envelope's time as it is handed out, for everything else
        that must share the simulated time (a demo's receiver, engine and page). `resign`:
        sign each posted webhook afresh with the wall clock, for a receiver that checks
        freshness against it; without, a webhook is posted as the simulation made it (its
        simulated time: the receiver must judge it by the same `clock`). `stats`: filled as
        it runs (a caller may read it meanwhile), and returned."""
        stats = stats if stats is not None else Stats()
        if post_url:
            self.keep_webhooks()
        poster = _Poster(post_url.rstrip("/"), max_in_flight, self, resign) if post_url else None
        started = time.perf_counter()

        sim_clock = clock

        def paced() -> Iterator[Envelope]:
            rng = random.Random(self.seed ^ 0x5EED)
            due = time.monotonic()
            factor, factor_until = 1.0, 0.0
            last_report = time.monotonic()
            for env, hook in self.stream(n):
                stats.events += 1
                stats.by_topic[env.topic] = stats.by_topic.get(env.topic, 0) + 1
                if not stats.first_ms:
                    stats.first_ms = env.timestamp_ms
                stats.last_ms = env.timestamp_ms
                if rate > 0:
                    clock = time.monotonic()
                    if bursts and clock >= factor_until:
                        factor = min(max(rng.lognormvariate(-0.3, 0.8), 0.1), 8.0)
                        factor_until = clock + rng.uniform(2.0, 20.0)
                    due += 1.0 / (rate * factor)
                    ahead = due - clock
                    if ahead > 0.002:
                        time.sleep(ahead)
                    elif ahead < -1.0:
                        due = clock  # fell behind: do not try to catch up in a burst
                if sim_clock is not None:
                    sim_clock.advance(env.timestamp_ms)
                if poster is not None and hook is not None:
                    poster.post(hook)
                else:
                    yield env
                if progress is not None and time.monotonic() - last_report >= progress_every_s:
                    last_report = time.monotonic()
                    stats.seconds = time.perf_counter() - started
                    progress(stats.events, stats)

        try:
            publish_fn(paced())
        finally:
            if poster is not None:
                stats.posted, stats.post_failures = poster.close()
        cases = self.truth()
        stats.cases = len(cases)
        stats.by_typology = count_typologies(cases)
        stats.seconds = time.perf_counter() - started
        return stats


class _Poster:
    """Posts webhooks to a receiver: bounded in-flight requests, a few retries like PSPs do."""

    def __init__(self, base: str, max_in_flight: int, sim: Brokerage, resign: bool = True) -> None:
        self.base = base
        self.sim = sim
        self.resign = resign
        self.pool = ThreadPoolExecutor(max_workers=min(8, max(1, max_in_flight)),
                                       thread_name_prefix="sim-webhook")
        self.slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self.ok = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.futures: list[Future[None]] = []

    def post(self, hook: Webhook) -> None:
        signed = hook
        if self.resign:  # a receiver on the wall clock: signed now, stamped now
            signed = build_webhook(hook.txn, hook.status, int(time.time() * 1000), extra=hook.extra)
        self.slots.acquire()
        self.futures.append(self.pool.submit(self._send, signed))
        if len(self.futures) > 1024:
            self.futures = [f for f in self.futures if not f.done()]

    def _send(self, hook: Webhook) -> None:
        try:
            url = f"{self.base}/webhooks/{hook.provider}"
            for attempt in range(3):
                req = urlrequest.Request(url, data=hook.posted or hook.body,
                                         headers=hook.http_headers, method="POST")
                try:
                    with urlrequest.urlopen(req, timeout=10) as resp:
                        resp.read()
                    with self.lock:
                        self.ok += 1
                    return
                except urlerror.HTTPError as exc:
                    if exc.code < 500:
                        break
                except (urlerror.URLError, OSError):
                    pass
                time.sleep(0.2 * (attempt + 1))
            with self.lock:
                self.failed += 1
        finally:
            self.slots.release()

    def close(self) -> tuple[int, int]:
        self.pool.shutdown(wait=True)
        return self.ok, self.failed


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit = math.exp(-mean)
    k, p = 0, rng.random()
    while p > limit and k < 200:
        k += 1
        p *= rng.random()
    return k


def count_typologies(cases: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(TYPOLOGIES, 0)
    for case in cases:
        counts[case["typology"]] = counts.get(case["typology"], 0) + 1
    return counts


def write_truth(path: Path, cases: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    with open(path, "wb") as fh:
        for case in cases:
            fh.write(orjson.dumps(case))
            fh.write(b"\n")
            n += 1
    return n
