"""Known suspicious behaviour, injected at low rates, each a named typology, with the ground
truth of every case.

Each injector makes ordinary-looking clients, accounts, logins, payments and trades behave the
way the typology looks in reality (see docs/simulator.md); nothing is shaped after a detection
rule. A case records the ids of the events it caused (canonical keys where the connectors have
them: deal keys, `psp:<provider>:<txn>` op keys, login keys, CRM event ids), and `truth()` turns
the cases into one JSON object each:

    {"case_id", "typology", "tenant", "subject", "subject_kind", "accounts", "start", "end",
     "event_ids", "details"}

with `start`/`end` the first/last event's time (ISO 8601 UTC) and `subject` the account key
(`platform:server:login`), IP address, device id or instrument fingerprint the case is about.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devtools.simulator import emit
from devtools.simulator.geo import (
    BY_CODE,
    GEOIP,
    HIGH_RISK_COUNTRIES,
    NAMES,
    Country,
    ascii_fold,
    haversine_km,
    ip_text,
)
from devtools.simulator.market import DAY_MS, HOUR_MS, fx_open, is_open
from devtools.simulator.payments import CARD_PROVIDERS, Psp, instrument_fingerprint
from devtools.simulator.sanctions import account_name_for, load_list
from devtools.simulator.world import (
    IB,
    Client,
    Device,
    Instrument,
    Server,
    SimAccount,
    card_for,
    crypto_for,
    device_for,
    ewallet_for,
    instrument_of,
    new_client,
    payment_methods,
    profile_named,
    year_of,
)

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage

MINUTE = 60_000

# Expected cases per 1,000 accounts per simulated day (multiplied by `typology_rate`).
RATES: dict[str, float] = {
    "structuring": 0.06,
    "deposit_withdraw_no_trading": 0.12,
    "shared_instrument": 0.04,
    "shared_ip_device": 0.04,
    "impossible_travel": 0.10,
    "failed_login_burst": 0.15,
    "latency_arbitrage": 0.025,
    "mirror_trades": 0.025,
    "sanctioned_name": 0.02,
    "large_transaction": 0.12,
    "payer_name_mismatch": 0.15,
    "chargeback": 0.08,
    "dormant_reactivation": 0.04,
    "high_risk_country": 0.05,
    "structuring_across_accounts": 0.05,
    "split_withdrawal": 0.08,
    "card_testing": 0.06,
    "mt4_country_name": 0.05,
}
TYPOLOGIES: tuple[str, ...] = tuple(RATES)
REPORTING_THRESHOLD = 10_000.0  # structuring: deposits kept just under it
FAR_KM = 500.0  # two places farther apart than this can't both be "home" within minutes
DORMANT_MS = 180 * DAY_MS  # the usual regulatory meaning of a dormant account
LARGE_THRESHOLD = 50_000.0  # large_transaction: a single payment at or above it


@dataclass(slots=True, eq=False)
class Case:
    case_id: str
    typology: str
    tenant: str
    subject: str
    subject_kind: str  # account / ip / device / instrument
    accounts: list[str]
    details: dict[str, Any]
    events: list[tuple[int, int, str]] = field(default_factory=list)
    due_ms: int = 0  # when the last event planned for the case is due (e.g. a chargeback days later)
    # other typologies the case's behaviour is by construction, with the accounts showing it (a
    # ring member logging in from the ring's far address and from home also travels impossibly)
    also: dict[str, list[str]] = field(default_factory=dict)

    def add(self, index: int, t: int, event_id: str) -> None:
        self.events.append((index, t, event_id))

    def exhibits(self, typology: str, account: str) -> None:
        accounts = self.also.setdefault(typology, [])
        if account not in accounts:
            accounts.append(account)

    def to_dict(self, yielded: int) -> dict[str, Any] | None:
        seen = [e for e in self.events if e[0] < yielded]
        if not seen:
            return None
        ids: list[str] = []
        known: set[str] = set()
        for _, _, eid in seen:
            if eid not in known:
                known.add(eid)
                ids.append(eid)
        return {
            "case_id": self.case_id,
            "typology": self.typology,
            "tenant": self.tenant,
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "accounts": list(dict.fromkeys(self.accounts)),
            "start": emit.iso(min(e[1] for e in seen)),
            "end": emit.iso(max(e[1] for e in seen)),
            "event_ids": ids,
            "due": emit.iso(self.due_ms) if self.due_ms else None,
            "details": self.details,
            "also": self.also,
        }


def _plan(case: Case | None, t: int) -> None:
    """A case is complete when the last event planned for it is due."""
    if case is not None:
        case.due_ms = max(case.due_ms, t)


class Typologies:
    def __init__(self, sim: Brokerage) -> None:
        self.sim = sim
        self.cases: list[Case] = []
        self.end_ms = 0
        self.rates: dict[str, float] = {}
        self.injectors: dict[str, Callable[[], Case | None]] = {
            name: getattr(self, f"_{name}") for name in TYPOLOGIES
        }

    # -- planning -------------------------------------------------------------------------------

    def plan(self, start: int, horizon_ms: int, rate: float) -> None:
        """The first case of every typology early in the window, then a Poisson stream."""
        sim = self.sim
        if rate <= 0:
            return
        # the span is an estimate: keep injecting a while past it rather than stop short
        self.end_ms = start + int(horizon_ms * 1.3)
        n = len(sim.world.accounts)
        for name in TYPOLOGIES:
            per_ms = RATES[name] * rate * n / 1000.0 / DAY_MS
            self.rates[name] = per_ms
            first = start + int(sim.rng.uniform(0.04, 0.4) * horizon_ms)
            sim.at(first, self._inject, (name, 0))

    def _inject(self, arg: tuple[str, int]) -> None:
        name, retries = arg
        sim = self.sim
        case = self.injectors[name]()
        if case is None and retries < 6:
            sim.at(sim.now + sim.rng.randint(HOUR_MS, 6 * HOUR_MS), self._inject, (name, retries + 1))
            return
        per_ms = self.rates.get(name, 0.0)
        if per_ms > 0:
            nxt = sim.now + 1 + int(sim.rng.expovariate(per_ms))
            if nxt < self.end_ms:
                sim.at(nxt, self._inject, (name, 0))

    def new_case(self, typology: str, tenant: str, subject: str, kind: str,
                 accounts: list[str], **details: Any) -> Case:
        case = Case(f"TC-{len(self.cases) + 1:06d}", typology, tenant, subject, kind,
                    accounts, details)
        self.cases.append(case)
        return case

    def truth(self, yielded: int) -> list[dict[str, Any]]:
        out = []
        for case in self.cases:
            doc = case.to_dict(yielded)
            if doc is not None:
                out.append(doc)
        return out

    # -- helpers --------------------------------------------------------------------------------

    @property
    def rng(self) -> random.Random:
        return self.sim.rng

    def pick(self, ok: Callable[[SimAccount], bool], tries: int = 400) -> SimAccount | None:
        accounts = self.sim.world.accounts
        rng = self.rng
        now = self.sim.now
        for _ in range(tries):
            acc = accounts[rng.randrange(len(accounts))]
            # a live account: one not logged in for half a year is dormant_reactivation's to wake
            awake = not acc.was_dormant and (not acc.last_access_ms
                                             or now - acc.last_access_ms < DORMANT_MS)
            if acc.state == "active" and not acc.flagged and acc.kyc == "approved" and awake and ok(acc):
                return acc
        return None

    def has_logins(self, acc: SimAccount) -> bool:
        return acc.server.platform in ("mt4", "mt5")

    def psps(self, tenant: str) -> list[Psp]:
        return self.sim.cashier.by_tenant.get(tenant, [])

    def card_psps(self, tenant: str) -> list[Psp]:
        return [p for p in self.psps(tenant) if p.name in CARD_PROVIDERS]

    def own(self, acc: SimAccount, until: int, owner: str = "case") -> None:
        """Keep the account's ordinary routine from trading or paying until `until`."""
        acc.flagged = owner
        acc.flag_until = until
        self.sim.at(until, self._release, acc)

    def _release(self, acc: SimAccount) -> None:
        if acc.flagged != "owned":
            acc.flagged = ""

    def fresh_client(self, tenant: str, country: Country | None = None, first: str = "",
                     last: str = "") -> Client:
        sim = self.sim
        rng = self.rng
        if country is None:
            eu = any(s.currency == "EUR" for s in sim.servers if s.tenant == tenant)
            pool = [c for c in BY_CODE.values() if (c.w_eu if eu else c.w_global) > 0]
            country = rng.choices(pool, [c.w_eu if eu else c.w_global for c in pool])[0]
        sim.world.next_cid += rng.randint(1, 3)
        year = year_of(sim.now)
        client = new_client(rng, sim.world.next_cid, tenant, country, year, first, last)
        payment_methods(client, False, rng, year)
        sim.world.clients.append(client)
        return client

    def open_account(self, client: Client, server: Server, case: Case | None,
                     profile: str = "", normal: bool = False, ib: IB | str | None = "pick") -> SimAccount:
        """A new account opened now with KYC approved quickly (active within the hour). With
        `normal` it then lives like any client; otherwise the case drives everything it does."""
        sim = self.sim
        acc = sim.lifecycle.create(client, server, profile=profile_named(profile) if profile
                                   else None, ib=ib)
        acc.rate = max(acc.rate, 0.4)
        acc.flagged = "case" if normal else "owned"
        sim.lifecycle.open(acc, case, kyc="approved", normal=normal, kyc_after=self.rng.randint(
            10 * MINUTE, 50 * MINUTE))
        return acc

    def login_at(self, t: int, acc: SimAccount, kind: str, ip: int, country: str, device: Device,
                 case: Case | None) -> None:
        _plan(case, t)
        self.sim.at(t, self._login, (acc, kind, ip, country, device, case))

    def _login(self, arg: tuple[SimAccount, str, int, str, Device, Case | None]) -> None:
        acc, kind, ip, country, device, case = arg
        self.sim.logins.login(acc, kind, ip=ip, country=country, device=device, case=case)

    def deposit_at(self, t: int, acc: SimAccount, amount: float, case: Case | None,
                   psp: Psp | None = None, instrument: Instrument | None = None,
                   payer: tuple[str, str] | None = None, country: str = "",
                   chargeback_after: int = 0, method: str = "", outcome: str = "approved") -> None:
        _plan(case, t + chargeback_after)
        self.sim.at(t, self._deposit, (acc, amount, case, psp, instrument, payer, country,
                                       chargeback_after, method, outcome))

    def _deposit(self, arg: tuple[Any, ...]) -> None:
        acc, amount, case, psp, instrument, payer, country, chargeback_after, method, outcome = arg
        self.sim.cashier.deposit(acc, amount, psp=psp, instrument=instrument, payer=payer,
                                 country=country, case=case, outcome=outcome,
                                 chargeback_after=chargeback_after, method=method)

    def withdraw_at(self, t: int, acc: SimAccount, amount: float | str, case: Case | None,
                    psp: Psp | None = None, instrument: Instrument | None = None,
                    approve_after: int = 0, method: str = "") -> None:
        """A withdrawal request at t (`amount` "all": what the account holds then), booked when
        the back office approves it (`approve_after`, else within 36 h: `Cashier.withdraw`)."""
        _plan(case, t + (approve_after or 36 * HOUR_MS))
        self.sim.at(t, self._withdraw, (acc, amount, case, psp, instrument, approve_after, method))

    def _withdraw(self, arg: tuple[Any, ...]) -> None:
        acc, amount, case, psp, instrument, approve_after, method = arg
        if amount == "all":
            amount = acc.balance * self.rng.uniform(0.9, 1.0)
        self.sim.cashier.withdraw(acc, amount, psp=psp, instrument=instrument, case=case,
                                  approve_after=approve_after, method=method)

    def trade_at(self, t: int, acc: SimAccount, symbol: str, side: int, vol: int, hold_ms: int,
                 case: Case | None, channel: str = "desktop") -> None:
        _plan(case, t + hold_ms)
        self.sim.at(t, self._trade, (acc, symbol, side, vol, hold_ms, case, channel))

    def _trade(self, arg: tuple[Any, ...]) -> None:
        acc, symbol, side, vol, hold_ms, case, channel = arg
        sym = self.sim.market.by_name[symbol]
        if sym not in acc.server.symbols or not is_open(sym, self.sim.now):
            return
        self.sim.trading.open(acc, sym, side, vol, hold_ms=hold_ms, channel=channel, case=case,
                              partial_close=False, close_reason="client")

    def other_instrument(self, acc: SimAccount, not_kind: str) -> tuple[Psp | None, Instrument | None]:
        """A provider and instrument of another kind than `not_kind` (a new one if needed)."""
        rng = self.rng
        client = acc.client
        options = []
        for psp in self.psps(acc.server.tenant):
            from devtools.simulator.payments import METHODS

            for kind in ("ewallet", "crypto", "card"):
                if kind != not_kind and kind in METHODS[psp.name]:
                    options.append((psp, kind))
        if not options:
            return None, None
        psp, kind = rng.choice(options)
        inst = instrument_of(client, kind)
        if inst is None or rng.random() < 0.5:
            if kind == "crypto":
                inst = crypto_for(rng)
            elif kind == "ewallet":
                inst = ewallet_for(f"{ascii_fold(client.first[:1]).lower()}"
                                   f"{rng.randint(1000, 99999)}@proton.me")
            else:
                inst = card_for(rng, client.name, client.country.code, year_of(self.sim.now))
            client.instruments.append(inst)
        return psp, inst

    def market_time(self, t: int) -> int:
        """t, or the next FX-open time after it."""
        for _ in range(100):
            if fx_open(t):
                return t
            t += HOUR_MS
        return t

    # -- the typologies -------------------------------------------------------------------------

    def _structuring(self) -> Case | None:
        """Several deposits just under the reporting threshold within a day."""
        rng = self.rng
        acc = self.pick(lambda a: a.profile.name != "casual")
        if acc is None:
            return None
        now = self.sim.now
        k = rng.randint(3, 6)
        window = rng.uniform(5, 22) * HOUR_MS
        times = sorted(int(rng.uniform(0, window)) for _ in range(k))
        amounts = [float(round(rng.uniform(REPORTING_THRESHOLD * 0.95, REPORTING_THRESHOLD * 0.999)
                               / 10) * 10) for _ in range(k)]
        case = self.new_case("structuring", acc.server.tenant, acc.key, "account", [acc.key],
                             threshold=REPORTING_THRESHOLD, currency=acc.server.currency,
                             amounts=amounts, total=round(sum(amounts), 2), deposits=k,
                             window_hours=round(window / HOUR_MS, 1))
        first_psp, first_inst = self.sim.cashier.choose(acc)
        second = self.other_instrument(acc, first_inst.kind if first_inst else "card")
        for i, (t, amount) in enumerate(zip(times, amounts, strict=True)):
            psp, inst = (second if i % 2 and second[0] is not None and rng.random() < 0.5
                         else (first_psp, first_inst))
            self.deposit_at(now + t, acc, amount, case, psp, inst)
        if rng.random() < 0.6:  # and out again: money in and out
            case.exhibits("deposit_withdraw_no_trading", acc.key)
            self.withdraw_at(now + int(window) + rng.randint(DAY_MS, 5 * DAY_MS), acc,
                             sum(amounts) * rng.uniform(0.5, 0.9), case)
        return case

    def _deposit_withdraw_no_trading(self) -> Case | None:
        """Money in and out again with little or no trading in between."""
        rng = self.rng
        acc = self.pick(lambda a: not a.positions)
        if acc is None:
            return None
        now = self.sim.now
        rate = self.sim.market.rate("USD", acc.server.currency)
        amount = float(min(round(rng.lognormvariate(7.8, 0.9) * rate, -2), 45_000.0) or 500.0)
        hold = int(rng.uniform(2, 60) * HOUR_MS)
        trades = rng.choice((0, 0, 0, 1, 2))
        self.own(acc, now + hold + 2 * DAY_MS)
        case = self.new_case("deposit_withdraw_no_trading", acc.server.tenant, acc.key, "account",
                             [acc.key], deposit=amount, currency=acc.server.currency,
                             hours_held=round(hold / HOUR_MS, 1), trades=trades)
        psp, inst = self.sim.cashier.choose(acc)
        self.deposit_at(now, acc, amount, case, psp, inst)
        for _ in range(trades):
            t = self.market_time(now + int(rng.uniform(0.1, 0.8) * hold))
            sym = rng.choice([s for s in acc.server.symbols if s.asset_class.startswith("fx")]
                             or acc.server.symbols)
            self.trade_at(t, acc, sym.name, rng.randrange(2), 1, rng.randint(MINUTE, 30 * MINUTE),
                          case)
        if rng.random() < 0.5:
            other_psp, other_inst = self.other_instrument(acc, inst.kind if inst else "card")
        else:
            other_psp, other_inst = psp, inst
        self.withdraw_at(now + hold, acc, "all", case, other_psp, other_inst,
                         approve_after=rng.randint(20 * MINUTE, 8 * HOUR_MS))
        return case

    def _shared_instrument(self) -> Case | None:
        """One card, wallet or crypto address used by the accounts of many different people."""
        sim = self.sim
        rng = self.rng
        tenants = [t for t in sim.cashier.by_tenant if any(
            s.platform for s in sim.servers if s.tenant == t)]
        if not tenants:
            return None
        tenant = rng.choice(tenants)
        psps = self.psps(tenant)
        card_psps = self.card_psps(tenant)
        wallet_psps = [p for p in psps if p.name in ("skrill", "praxis", "nuvei")]
        crypto_psps = [p for p in psps if p.name == "coinspaid"]
        roll = rng.random()
        holder_client = self.fresh_client(tenant)
        if card_psps and (roll < 0.7 or not (wallet_psps or crypto_psps)):
            kind, psp = "card", rng.choice(card_psps)
            inst = card_for(rng, holder_client.name, holder_client.country.code, year_of(sim.now))
        elif wallet_psps and (roll < 0.9 or not crypto_psps):
            kind, psp = "ewallet", rng.choice(wallet_psps)
            inst = ewallet_for(f"{holder_client.first[:1].lower()}{holder_client.last.lower()}"
                               f"{rng.randint(10, 99)}@{rng.choice(('gmail.com', 'proton.me'))}")
        elif crypto_psps:
            kind, psp = "crypto", crypto_psps[0]
            inst = crypto_for(rng)
        else:
            return None
        servers = [s for s in sim.servers if s.tenant == tenant]
        k = rng.randint(4, 9)
        accounts: list[SimAccount] = []
        for _ in range(k):
            existing = self.pick(lambda a: a.server.tenant == tenant) if rng.random() < 0.4 else None
            if existing is None:
                existing = self.open_account(self.fresh_client(tenant), rng.choice(servers), None,
                                             profile="casual")
            accounts.append(existing)
        fp = instrument_fingerprint(tenant, sim.psp_settings, inst)
        case = self.new_case("shared_instrument", tenant, fp, "instrument",
                             [a.key for a in accounts], instrument=inst.normalised, method=kind,
                             provider=psp.name, holder=inst.holder or inst.email or inst.address)
        span = rng.uniform(0.3, 4.0) * DAY_MS
        for acc in accounts:
            t = sim.now + HOUR_MS + int(rng.uniform(0, span))
            amount = float(rng.choice((100, 200, 250, 300, 500, 500, 1000, 1500)))
            if kind == "crypto":  # a withdrawal address shared between accounts
                self.deposit_at(t, acc, amount, case)
                self.withdraw_at(t + rng.randint(2 * HOUR_MS, DAY_MS), acc, amount * 0.9, case,
                                 psp, inst, approve_after=rng.randint(30 * MINUTE, 4 * HOUR_MS))
            else:
                for j in range(rng.choice((1, 1, 2))):
                    self.deposit_at(t + j * rng.randint(HOUR_MS, DAY_MS), acc, amount, case, psp,
                                    inst)
        return case

    def _shared_ip_device(self) -> Case | None:
        """Many accounts of different people connecting from one address and one computer."""
        sim = self.sim
        rng = self.rng
        servers = [s for s in sim.servers if s.platform in ("mt4", "mt5")]
        if not servers:
            return None
        tenant = rng.choice(servers).tenant
        servers = [s for s in servers if s.tenant == tenant]
        if rng.random() < 0.5:
            code = rng.choice(tuple(GEOIP.hosting))
            block = rng.choice(GEOIP.hosting[code])
            ip_kind = "hosting"
        else:
            country = rng.choice([c for c in BY_CODE.values() if c.w_global > 0])
            code = country.code
            block = rng.choice(GEOIP.residential[code])
            ip_kind = "residential"
        ip = block.base | (rng.randrange(256) << 8) | rng.randrange(2, 250)
        device = device_for(rng)
        device.client_type = 0
        k = rng.randint(5, 12)
        accounts: list[SimAccount] = []
        for _ in range(k):
            existing = self.pick(lambda a: a.server in servers) if rng.random() < 0.3 else None
            if existing is None:
                existing = self.open_account(self.fresh_client(tenant), rng.choice(servers), None,
                                             profile="casual")
            accounts.append(existing)
        case = self.new_case("shared_ip_device", tenant, ip_text(ip), "ip",
                             [a.key for a in accounts], ip=ip_text(ip), ip_country=code,
                             ip_kind=ip_kind, device=device.device_id)
        for acc in accounts:  # members who also log in from home, far from the ring's address
            if ip_kind == "residential" and haversine_km(acc.client.country, BY_CODE[code]) >= FAR_KM:
                case.exhibits("impossible_travel", acc.key)
        span = rng.uniform(1.0, 4.0) * DAY_MS
        for acc in accounts:
            if acc.flagged != "owned":  # an existing member's account is the ring's meanwhile
                self.own(acc, sim.now + int(span) + DAY_MS, "case")
            t0 = sim.now + HOUR_MS + int(rng.uniform(0, span))
            for j in range(rng.randint(2, 6)):
                t = t0 + j * rng.randint(20 * MINUTE, 10 * HOUR_MS)
                self.login_at(t, acc, "login", ip, code, device, case)
                if j == 0:
                    self.deposit_at(t + rng.randint(MINUTE, 20 * MINUTE), acc,
                                    float(rng.choice((50, 100, 100, 200, 250, 500))), case)
                elif rng.random() < 0.6:
                    sym = rng.choice(acc.server.symbols[:8])
                    self.trade_at(self.market_time(t + rng.randint(MINUTE, 10 * MINUTE)), acc,
                                  sym.name, rng.randrange(2), rng.randint(1, 20),
                                  rng.randint(2 * MINUTE, 3 * HOUR_MS), case)
        return case

    def _far_country(self, home: Country, min_km: float = 3_000.0) -> Country:
        rng = self.rng
        options = [c for c in BY_CODE.values() if c.w_global > 0 and c.code != home.code
                   and haversine_km(home, c) >= min_km]
        return rng.choice(options)

    def _impossible_travel(self) -> Case | None:
        """Logins from two places that no one could travel between in the time between them."""
        rng = self.rng
        sim = self.sim
        acc = self.pick(self.has_logins)
        if acc is None:
            return None
        client = acc.client
        far = self._far_country(client.country)
        device = sim.logins.device(client)
        home_ip, home_code = sim.logins.where(client, device)
        if home_code != client.country.code:
            home_ip, home_code = client.home_net | rng.randrange(2, 250), client.country.code
        block = rng.choice(GEOIP.residential[far.code] + GEOIP.mobile[far.code])
        far_ip = block.base | rng.randrange(1, 65_535)
        minutes = rng.randint(4, 50)
        distance = haversine_km(client.country, far)
        other_device = device if rng.random() < 0.4 else device_for(rng)
        case = self.new_case("impossible_travel", acc.server.tenant, acc.key, "account", [acc.key],
                             first_ip=ip_text(home_ip), first_country=home_code,
                             second_ip=ip_text(far_ip), second_country=far.code,
                             minutes=minutes, distance_km=round(distance),
                             same_device=other_device is device)
        now = sim.now
        self.login_at(now, acc, "login", home_ip, home_code, device, case)
        second = now + minutes * MINUTE + rng.randint(0, 50_000)
        self.login_at(second, acc, "login", far_ip, far.code, other_device, case)
        if rng.random() < 0.3 and acc.balance > 100:
            self.withdraw_at(second + rng.randint(2 * MINUTE, 30 * MINUTE), acc,
                             acc.balance * rng.uniform(0.5, 0.95), case)
        return case

    def _failed_login_burst(self) -> Case | None:
        """Password guessing: a burst of failed logins, sometimes followed by a takeover."""
        rng = self.rng
        sim = self.sim
        acc = self.pick(self.has_logins)
        if acc is None:
            return None
        ips = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if rng.random() < 0.6:
                code = rng.choice(tuple(GEOIP.hosting))
                block = rng.choice(GEOIP.hosting[code])
            else:
                code = self._far_country(acc.client.country, 1_000).code
                block = rng.choice(GEOIP.residential[code])
            ips.append((block.base | (rng.randrange(256) << 8) | rng.randrange(2, 250), code))
        attempts = rng.randint(10, 40)
        span = rng.uniform(3, 25) * MINUTE
        gap = span / attempts
        device = device_for(rng)
        succeeded = rng.random() < 0.3
        case = self.new_case("failed_login_burst", acc.server.tenant, acc.key, "account",
                             [acc.key], attempts=attempts, ips=[ip_text(i) for i, _ in ips],
                             countries=sorted({c for _, c in ips}),
                             minutes=round(span / MINUTE, 1), succeeded=succeeded)
        t = sim.now
        for _ in range(attempts):
            ip, code = rng.choice(ips)
            self.login_at(t, acc, "failed", ip, code, device, case)
            t += max(1_300, int(gap * rng.uniform(0.4, 1.6)))
        if succeeded:
            ip, code = ips[-1]
            if code in GEOIP.residential and haversine_km(acc.client.country, BY_CODE[code]) >= FAR_KM:
                case.exhibits("impossible_travel", acc.key)  # the owner logs in from home too
            if acc.last_access_ms and sim.now - acc.last_access_ms >= DORMANT_MS:
                case.exhibits("dormant_reactivation", acc.key)  # a taken-over dormant account
            self.login_at(t + rng.randint(2_000, 60_000), acc, "login", ip, code, device, case)
            if acc.balance > 50:
                psp, inst = self.other_instrument(acc, "card")
                self.withdraw_at(t + rng.randint(3 * MINUTE, 40 * MINUTE), acc,
                                 acc.balance * rng.uniform(0.6, 0.98), case, psp, inst,
                                 approve_after=rng.randint(30 * MINUTE, 12 * HOUR_MS))
        return case

    def _latency_arbitrage(self) -> Case | None:
        """Short, mostly winning trades opened on a price the server has not updated yet."""
        sim = self.sim
        rng = self.rng
        wanted = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30", "NAS100", "GER40", "BTCUSD")
        servers = [s for s in sim.servers if any(sym.name in wanted for sym in s.symbols)]
        if not servers:
            return None
        server = rng.choice(servers)
        symbols = [s for s in server.symbols if s.name in wanted]
        acc = self.pick(lambda a: a.server is server and a.profile.name == "scalper") \
            if rng.random() < 0.4 else None
        if acc is None:
            acc = self.open_account(self.fresh_client(server.tenant), server, None,
                                    profile="scalper")
            acc.raw = acc.server.platform != "ctrader"
            acc.suffix = ".r" if acc.raw else acc.suffix
            acc.leverage = max(acc.leverage, 100 if server.currency != "EUR" else 30)
        vps = rng.choice(GEOIP.hosting[rng.choice(tuple(GEOIP.hosting))])
        ip = vps.base | (rng.randrange(64) << 8) | rng.randrange(2, 250)
        device = device_for(rng)
        device.client_type = 0
        episodes = rng.randint(8, 24)
        case = self.new_case("latency_arbitrage", server.tenant, acc.key, "account", [acc.key],
                             server=server.name, symbols=sorted({s.name for s in symbols}),
                             episodes=episodes, ip=ip_text(ip))
        start = sim.now + HOUR_MS
        rate = sim.market.rate("USD", server.currency)
        self.deposit_at(start - 20 * MINUTE, acc, float(rng.choice((5_000, 10_000, 20_000))) * rate,
                        case)
        span = rng.uniform(1.0, 3.0) * DAY_MS
        times = sorted(start + int(rng.uniform(0, span)) for _ in range(episodes))
        for t in times:
            t = self.market_time(t)
            self.login_at(t - rng.randint(MINUTE, 10 * MINUTE), acc, "login", ip,
                          GEOIP.block_of(ip).country, device, case)
            sim.at(t, self._arb_episode, (acc, rng.choice(symbols).name, case))
        if rng.random() < 0.8:
            self.withdraw_at(times[-1] + rng.randint(HOUR_MS, DAY_MS), acc, "all", case)
        return case

    def _arb_episode(self, arg: tuple[SimAccount, str, Case]) -> None:
        acc, name, case = arg
        sim = self.sim
        rng = self.rng
        sym = sim.market.by_name[name]
        if not is_open(sym, sim.now):
            return
        direction = rng.choice((-1, 1))
        duration = rng.randint(25_000, 45_000)
        sim.burst(sym.idx, duration, direction, rng.uniform(0.8, 1.8))
        gap_start = sim.now + rng.randint(4_000, 12_000)
        gap = rng.randint(2_000, 7_000)
        sim.at(gap_start, self._stall, (acc.server, sym, gap))
        for _ in range(rng.choice((1, 1, 2))):
            open_at = gap_start + gap - rng.randint(200, min(1_500, gap - 100))
            hold = (gap_start + gap - open_at) + rng.randint(800, 12_000)
            lots = rng.randint(100, 500)
            sim.at(open_at, self._arb_trade, (acc, sym.name, 0 if direction > 0 else 1, lots, hold,
                                              case))

    def _stall(self, arg: tuple[Server, Any, int]) -> None:
        server, sym, length = arg
        self.sim.stall(server, sym, length)

    def _arb_trade(self, arg: tuple[SimAccount, str, int, int, int, Case]) -> None:
        acc, name, side, lots, hold, case = arg
        sim = self.sim
        sym = sim.market.by_name[name]
        if not is_open(sym, sim.now) or acc.state != "active":
            return
        equity, margin = sim.trading.margin(acc) if acc.positions else (acc.balance, 0.0)
        need = sim.trading.required_margin(acc, sym, lots)
        if need > (equity - margin) * 0.8:
            lots = int(lots * (equity - margin) * 0.8 / need) if need > 0 else 0
        if lots < 1:
            return
        sim.trading.open(acc, sym, side, lots, hold_ms=hold, channel="expert", case=case,
                         magic=20_240_001, partial_close=False, close_reason="client")

    def _mirror_trades(self) -> Case | None:
        """Two accounts of different people taking opposite sides of the same trades."""
        sim = self.sim
        rng = self.rng
        first = self.pick(lambda a: a.profile.name in ("active", "scalper", "casual"))
        if first is None:
            return None
        tenant = first.server.tenant
        servers = [s for s in sim.servers if s.tenant == tenant]
        server = first.server if rng.random() < 0.6 else rng.choice(servers)
        second = self.open_account(self.fresh_client(tenant), server, None, profile="active",
                                   ib=first.ib)
        common = [s.name for s in first.server.symbols if s in server.symbols]
        common = [n for n in common if n in ("EURUSD", "GBPUSD", "XAUUSD", "USDJPY", "US30",
                                             "NAS100", "BTCUSD", "GER40")] or common
        pairs = rng.randint(8, 25)
        case = self.new_case("mirror_trades", tenant, first.key, "account",
                             [first.key, second.key], pairs=pairs,
                             ib=first.ib.ib_id if first.ib else "",
                             counterparty=second.key)
        rate = sim.market.rate("USD", server.currency)
        amount = float(rng.choice((1_000, 2_000, 5_000))) * rate
        start = sim.now + 2 * HOUR_MS
        self.deposit_at(start - HOUR_MS + rng.randint(0, 30 * MINUTE), second, amount, case)
        if first.balance < amount / 2:
            self.deposit_at(start - HOUR_MS, first, amount, case)
        span = rng.uniform(2.0, 8.0) * DAY_MS
        symbols = set()
        for _ in range(pairs):
            t = self.market_time(start + int(rng.uniform(0, span)))
            name = rng.choice(common)
            symbols.add(name)
            side = rng.randrange(2)
            vol = rng.randint(5, 60) * 5
            hold = int(rng.lognormvariate(0, 1.0) * 30 * MINUTE) + MINUTE
            lag = rng.randint(300, 8_000)
            self.trade_at(t, first, name, side, vol, hold, case)
            self.trade_at(t + lag, second, name, 1 - side, vol,
                          hold - lag + rng.randint(-3_000, 6_000), case)
        case.details["symbols"] = sorted(symbols)
        return case

    def _sanctioned_name(self) -> Case | None:
        """A client whose name (and date of birth) matches an entry of the sanctions list."""
        sim = self.sim
        rng = self.rng
        entries = [e for e in load_list() if e.individual]
        entry = rng.choice(entries)
        first, last, match = account_name_for(entry, rng)
        from connectors.countries import country_code

        code = country_code(entry.nationality) or ""
        country = BY_CODE.get(code)
        if country is None or code in HIGH_RISK_COUNTRIES or country.w_global + country.w_eu == 0:
            country = BY_CODE[rng.choice(("AE", "CY", "TR", "GB"))]
        server = rng.choice(sim.servers)
        client = self.fresh_client(server.tenant, country, first, last)
        client.dob = entry.dob or client.dob
        case = self.new_case("sanctioned_name", server.tenant, "", "account", [],
                             list_entry=entry.ent_num, listed_name=entry.name,
                             account_name=f"{first} {last}", match=match,
                             date_of_birth=client.dob, program=entry.program)
        acc = self.open_account(client, server, case, normal=True)
        case.subject = acc.key
        case.accounts.append(acc.key)
        return case

    def _large_transaction(self) -> Case | None:
        """A single deposit or withdrawal far above what the client usually moves."""
        sim = self.sim
        rng = self.rng
        acc = self.pick(lambda a: a.profile.name == "whale") if rng.random() < 0.6 else None
        acc = acc or self.pick(lambda a: True)
        if acc is None:
            return None
        rate = sim.market.rate("USD", acc.server.currency)
        amount = float(round(min(LARGE_THRESHOLD * rng.lognormvariate(0.5, 0.6), 600_000.0)
                             * max(rate, 1.0), -3))
        amount = max(amount, LARGE_THRESHOLD)
        tenant = acc.server.tenant
        options: list[tuple[Psp | None, Instrument | None, str]] = [(None, None, "bank_wire")]
        for option in self.psps(tenant):
            if option.name == "praxis":
                iban = f"DE{rng.randint(10, 99)}{rng.randint(10**17, 10**18 - 1)}"
                options.append((option, Instrument(kind="bank", normalised=f"bank:{iban}",
                                                   iban=iban), "bank"))
            if option.name == "coinspaid":
                wallet = instrument_of(acc.client, "crypto") or crypto_for(rng)
                wallet.coin = "USDT"
                options.append((option, wallet, "crypto"))
        psp, inst, method = rng.choice(options)
        withdraw_too = rng.random() < 0.3
        case = self.new_case("large_transaction", tenant, acc.key, "account", [acc.key],
                             amount=amount, currency=acc.server.currency,
                             threshold=LARGE_THRESHOLD, method=method,
                             provider=psp.name if psp else "",
                             direction="deposit+withdrawal" if withdraw_too else "deposit")
        wire = "wire" if psp is None else ""
        self.deposit_at(sim.now, acc, amount, case, psp, inst, method=wire)
        if withdraw_too:  # in and out again: the in/out pattern whatever the trading in between
            case.exhibits("deposit_withdraw_no_trading", acc.key)
            self.withdraw_at(sim.now + rng.randint(DAY_MS, 6 * DAY_MS), acc,
                             amount * rng.uniform(0.85, 1.0), case, psp, inst, method=wire)
        return case

    def _payer_name_mismatch(self) -> Case | None:
        """Deposits paid with someone else's card or wallet."""
        sim = self.sim
        rng = self.rng
        acc = self.pick(lambda a: bool(self.card_psps(a.server.tenant)))
        if acc is None:
            return None
        client = acc.client
        psp = rng.choice(self.card_psps(acc.server.tenant))
        relation = "family" if rng.random() < 0.4 else "third_party"
        if relation == "family":
            firsts = NAMES[client.country.pool][0]
            payer = (rng.choice([f for f in firsts if f != client.first] or firsts), client.last)
        else:
            pool = rng.choice(tuple(NAMES.values()))
            payer = (rng.choice(pool[0]), rng.choice(pool[1]))
        payer_name = f"{payer[0]} {payer[1]}"
        inst = card_for(rng, payer_name, client.country.code, year_of(sim.now))
        deposits = rng.choice((1, 1, 2, 3))
        case = self.new_case("payer_name_mismatch", acc.server.tenant, acc.key, "account",
                             [acc.key], payer_name=payer_name, account_name=client.name,
                             relation=relation, provider=psp.name, deposits=deposits)
        for j in range(deposits):
            amount = float(rng.choice((100, 250, 500, 500, 1000, 2000, 3000)))
            self.deposit_at(sim.now + j * rng.randint(HOUR_MS, 3 * DAY_MS), acc, amount, case, psp,
                            inst, payer)
        return case

    def _chargeback(self) -> Case | None:
        """A card deposit disputed later, often after the money was withdrawn another way."""
        sim = self.sim
        rng = self.rng
        # Nuvei's chargeback DMN names the payment only outside its checksum: the connector
        # refuses it (confirmed through Nuvei's reports), so these cases use the other card PSPs
        acc = self.pick(lambda a: any(p.name != "nuvei" for p in self.card_psps(a.server.tenant)))
        if acc is None:
            return None
        psp = rng.choice([p for p in self.card_psps(acc.server.tenant) if p.name != "nuvei"])
        inst = instrument_of(acc.client, "card")
        if inst is None:
            return None
        amount = float(rng.choice((300, 500, 1000, 1500, 2000, 3000, 5000)))
        days = rng.uniform(3, 25)
        cash_out = rng.random() < 0.6
        case = self.new_case("chargeback", acc.server.tenant, acc.key, "account", [acc.key],
                             provider=psp.name, amount=amount, currency=acc.server.currency,
                             days_to_chargeback=round(days, 1), withdrew_first=cash_out)
        self.deposit_at(sim.now, acc, amount, case, psp, inst,
                        chargeback_after=int(days * DAY_MS))
        if cash_out:  # in and out again before the dispute
            case.exhibits("deposit_withdraw_no_trading", acc.key)
            other_psp, other_inst = self.other_instrument(acc, "card")
            self.withdraw_at(sim.now + rng.randint(DAY_MS, max(int(days * DAY_MS) - DAY_MS,
                                                               DAY_MS + 1)),
                             acc, amount * rng.uniform(0.7, 1.0), case, other_psp, other_inst)
        return case

    def _dormant_reactivation(self) -> Case | None:
        """An account silent for months comes back: new device, money in, money out."""
        sim = self.sim
        rng = self.rng
        accounts = [a for a in sim.world.accounts if a.state == "dormant-quiet" and not a.flagged]
        with_logins = [a for a in accounts if self.has_logins(a)]
        if not accounts:
            return None
        acc = rng.choice(with_logins or accounts)
        client = acc.client
        acc.state = "active"
        acc.kyc = "approved"
        self.own(acc, sim.now + 12 * DAY_MS, "case")
        device = device_for(rng)
        client.devices.append(device)
        abroad = rng.random() < 0.4
        country = self._far_country(client.country, 500) if abroad else client.country
        block = rng.choice(GEOIP.residential[country.code])
        ip = block.base | (rng.randrange(256) << 8) | rng.randrange(2, 250)
        dormant_days = (sim.now - acc.last_access_ms) / DAY_MS
        case = self.new_case("dormant_reactivation", acc.server.tenant, acc.key, "account",
                             [acc.key], dormant_days=round(dormant_days),
                             last_access=emit.iso(acc.last_access_ms), ip=ip_text(ip),
                             ip_country=country.code, new_device=device.device_id)
        now = sim.now
        self.login_at(now, acc, "login", ip, country.code, device, case)
        if rng.random() < 0.4:
            sim.at(now + rng.randint(10 * MINUTE, 3 * HOUR_MS), self._contact_change, (acc, case))
        rate = sim.market.rate("USD", acc.server.currency)
        amount = float(round(rng.uniform(2_000, 30_000) * rate, -2))
        t = now + rng.randint(HOUR_MS, 6 * HOUR_MS)
        self.login_at(t - MINUTE, acc, "login", ip, country.code, device, case)
        psp, inst = self.other_instrument(acc, "")
        self.deposit_at(t, acc, amount, case, psp, inst)
        for _ in range(rng.choice((0, 1, 2))):
            sym = rng.choice(acc.favourites or acc.server.symbols)
            self.trade_at(self.market_time(t + rng.randint(HOUR_MS, DAY_MS)), acc, sym.name,
                          rng.randrange(2), rng.randint(1, 50), rng.randint(5 * MINUTE, 5 * HOUR_MS),
                          case)
        out_psp, out_inst = self.other_instrument(acc, inst.kind if inst else "card")
        self.withdraw_at(t + rng.randint(DAY_MS, 6 * DAY_MS), acc, "all", case, out_psp, out_inst)
        case.exhibits("deposit_withdraw_no_trading", acc.key)  # all of it out again
        return case

    def _contact_change(self, arg: tuple[SimAccount, Case]) -> None:
        acc, case = arg
        client = acc.client
        client.email = f"{client.first[:1].lower()}.{client.last.lower().replace(' ', '')}" \
                       f"{self.rng.randint(100, 999)}@proton.me"
        self.sim.lifecycle.crm(acc, "account_updated", self.sim.now, case, email=client.email)

    def _high_risk_country(self) -> Case | None:
        """A client living in, connecting from, or paying from a high-risk jurisdiction."""
        sim = self.sim
        rng = self.rng
        code = rng.choice(HIGH_RISK_COUNTRIES)
        country = BY_CODE[code]
        roll = rng.random()
        if roll < 0.4:
            server = rng.choice(sim.servers)
            client = self.fresh_client(server.tenant, country)
            case = self.new_case("high_risk_country", server.tenant, "", "account", [],
                                 country=code, via="residence")
            acc = self.open_account(client, server, case, normal=True)
            case.subject = acc.key
            case.accounts.append(acc.key)
            return case
        found = self.pick(lambda a: self.has_logins(a) and bool(self.card_psps(a.server.tenant))) \
            if roll < 0.75 else self.pick(lambda a: bool(self.card_psps(a.server.tenant)))
        if found is None:
            return None
        acc = found
        via = "login_ip_and_card" if roll < 0.75 else "payment"
        case = self.new_case("high_risk_country", acc.server.tenant, acc.key, "account",
                             [acc.key], country=code, via=via)
        now = sim.now
        if via == "login_ip_and_card":
            block = rng.choice(GEOIP.residential[code] + GEOIP.mobile[code])
            ip = block.base | rng.randrange(1, 65_535)
            device = sim.logins.device(acc.client)
            for j in range(rng.randint(1, 4)):
                self.login_at(now + j * rng.randint(HOUR_MS, DAY_MS), acc, "login", ip, code,
                              device, case)
            if haversine_km(acc.client.country, country) >= FAR_KM:
                case.exhibits("impossible_travel", acc.key)  # and from home in between
            case.details["ip"] = ip_text(ip)
        psp = rng.choice(self.card_psps(acc.server.tenant))
        inst = card_for(rng, acc.client.name, code, year_of(now))
        acc.client.instruments.append(inst)
        self.deposit_at(now + rng.randint(10 * MINUTE, 6 * HOUR_MS), acc,
                        float(rng.choice((200, 500, 1000, 2500, 5000))), case, psp, inst,
                        country=code)
        return case

    def _structuring_across_accounts(self) -> Case | None:
        """Deposits just under the reporting threshold spread over two or three accounts of one
        client (opened for it on other servers of the brand), at most two per account, so that
        no account alone looks like structuring."""
        sim = self.sim
        rng = self.rng
        acc = self.pick(lambda a: a.profile.name != "casual" and any(
            s is not a.server and s.tenant == a.server.tenant and s.currency == a.server.currency
            for s in sim.servers))
        if acc is None:
            return None
        client = acc.client
        others = [s for s in sim.servers if s.tenant == acc.server.tenant
                  and s.currency == acc.server.currency]
        case = self.new_case("structuring_across_accounts", acc.server.tenant, acc.key, "account",
                             [acc.key], threshold=REPORTING_THRESHOLD, currency=acc.server.currency)
        accounts = [acc]
        for _ in range(rng.choice((1, 1, 2))):
            server = rng.choice([s for s in others if s is not acc.server] or others)
            accounts.append(self.open_account(client, server, case, normal=True))
            case.accounts.append(accounts[-1].key)
        now = sim.now + HOUR_MS  # the new accounts are open and approved by then
        k = rng.randint(max(3, len(accounts)), 2 * len(accounts))
        window = rng.uniform(6, 40) * HOUR_MS
        times = sorted(int(rng.uniform(0, window)) for _ in range(k))
        chosen = list(accounts)  # every account gets one, none more than two
        while len(chosen) < k:
            a = rng.choice(accounts)
            if chosen.count(a) < 2:
                chosen.append(a)
        rng.shuffle(chosen)
        amounts = [float(round(rng.uniform(REPORTING_THRESHOLD * 0.93, REPORTING_THRESHOLD * 0.999)
                               / 10) * 10) for _ in range(k)]
        case.details.update(amounts=amounts, total=round(sum(amounts), 2), deposits=k,
                            accounts=len(accounts), window_hours=round(window / HOUR_MS, 1))
        for a in accounts:
            self.own(a, now + int(window) + HOUR_MS, "case")
        for t, a, amount in zip(times, chosen, amounts, strict=True):
            psp, inst = sim.cashier.choose(a)
            if psp is None or inst is None:  # paid through a provider: credited within the window
                psp, inst = self.other_instrument(a, "")
            self.deposit_at(now + t, a, amount, case, psp, inst)
        return case

    def _split_withdrawal(self) -> Case | None:
        """One deposit taken out again in three to five smaller withdrawals over a few days,
        with no trading: each part well under the deposit."""
        sim = self.sim
        rng = self.rng
        acc = self.pick(lambda a: not a.positions)
        if acc is None:
            return None
        now = sim.now
        rate = sim.market.rate("USD", acc.server.currency)
        amount = float(round(rng.uniform(1_500, 25_000) * rate, -2))
        parts = rng.randint(3, 5)
        share = rng.uniform(0.85, 0.98)
        # every part well under the deposit (at most 60 % of what goes out), none trivially small
        weights = [rng.uniform(1.0, 3.0) for _ in range(parts)]
        fractions = [w / sum(weights) for w in weights]
        while max(fractions) > 0.6:
            fractions = [min(f, 0.6) for f in fractions]
            fractions = [f / sum(fractions) for f in fractions]
        span = rng.uniform(12, 96) * HOUR_MS
        self.own(acc, now + int(span) + 2 * DAY_MS)
        case = self.new_case("split_withdrawal", acc.server.tenant, acc.key, "account", [acc.key],
                             deposit=amount, currency=acc.server.currency, parts=parts,
                             withdrawn_share=round(share, 3), span_hours=round(span / HOUR_MS, 1))
        case.exhibits("deposit_withdraw_no_trading", acc.key)  # in and out again, in parts
        psp, inst = sim.cashier.choose(acc)
        if psp is None or inst is None:  # not a bank wire: the parts must follow the credit
            psp, inst = self.other_instrument(acc, "")
        self.deposit_at(now, acc, amount, case, psp, inst)
        for i, f in enumerate(fractions):
            t = now + int(span * (i + 1) / parts) + rng.randint(0, HOUR_MS)
            self.withdraw_at(t, acc, round(amount * share * f, 2), case, psp, inst,
                             approve_after=rng.randint(20 * MINUTE, 3 * HOUR_MS))
        return case

    def _card_testing(self) -> Case | None:
        """Stolen card numbers tried one after another on one account: small deposits declined
        on many different cards within minutes, sometimes one going through at the end."""
        sim = self.sim
        rng = self.rng
        acc = self.pick(lambda a: bool(self.card_psps(a.server.tenant)))
        if acc is None:
            return None
        psp = rng.choice(self.card_psps(acc.server.tenant))
        cards = rng.randint(6, 14)
        span = rng.randint(5, 40) * MINUTE
        works = rng.random() < 0.3
        case = self.new_case("card_testing", acc.server.tenant, acc.key, "account", [acc.key],
                             provider=psp.name, cards=cards, minutes=span // MINUTE,
                             one_went_through=works)
        now = sim.now
        year = year_of(now)
        pool = rng.choice(tuple(NAMES.values()))
        for i in range(cards):
            holder = f"{rng.choice(pool[0])} {rng.choice(pool[1])}"
            card = card_for(rng, holder, acc.client.country.code, year)
            t = now + int(span * i / cards) + rng.randint(0, 30_000)
            last = works and i == cards - 1
            self.deposit_at(t, acc, float(rng.choice((1, 5, 10, 20, 25, 50))), case, psp, card,
                            outcome="approved" if last else "declined")
        return case

    def _mt4_country_name(self) -> Case | None:
        """The dealer updates an MT4 client's country to a high-risk jurisdiction (the client
        moved), typed as the country's name, as MT4 keeps free text."""
        sim = self.sim
        rng = self.rng
        acc = self.pick(lambda a: a.server.platform == "mt4")
        if acc is None:
            return None
        code = rng.choice(HIGH_RISK_COUNTRIES)
        typed = rng.choice(COUNTRY_SPELLINGS[code])
        acc.country_text = typed
        case = self.new_case("mt4_country_name", acc.server.tenant, acc.key, "account", [acc.key],
                             country=code, typed=typed)
        _plan(case, sim.now)
        sim.lifecycle.user(acc, "update", case)
        return case


# How dealers type the high-risk jurisdictions in MT4's free-text country.
COUNTRY_SPELLINGS: dict[str, tuple[str, ...]] = {
    "IR": ("Iran", "Iran, Islamic Republic of", "IRAN"),
    "KP": ("North Korea", "Korea, Democratic People's Republic of"),
    "MM": ("Myanmar", "Burma"),
    "SY": ("Syria", "Syrian Arab Republic"),
    "YE": ("Yemen", "YEMEN"),
    "HT": ("Haiti",),
    "SS": ("South Sudan",),
}
