"""Who is in the simulated brokerage: tenants and their servers, the IB hierarchy, clients (a
person with a home country, a home IP range and a few devices) and their trading accounts.

Built once from the configuration and the seed, before any event is generated; the time of
everything that happens later is decided by the scheduler in `brokerage.py`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from devtools.simulator.geo import (
    COUNTRIES,
    EMAIL_DOMAINS,
    GEOIP,
    NAMES,
    Country,
    IpBlock,
    ascii_fold,
)
from devtools.simulator.market import DAY_MS, Market, Symbol
from schemas.identity import account_key

if TYPE_CHECKING:
    from devtools.simulator.trading import Position


# -- servers ------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Server:
    """One platform server of a tenant, with the ticket counters the platform keeps."""

    index: int
    name: str
    platform: str  # mt5 / mt4 / ctrader
    tenant: str
    currency: str
    offset_ms: int  # the server's clock minus UTC (MT4 and some MT5 servers stamp local time)
    std_suffix: str  # symbol decoration of standard accounts ("" or ".s")
    spread_mult: float  # the server's markup on raw spreads
    symbols: list[Symbol] = field(default_factory=list)  # instruments it quotes
    next_login: int = 0
    next_deal: int = 0
    next_order: int = 0
    next_position: int = 0
    next_balance: int = 0  # cTrader balanceHistoryId
    next_session: int = 0
    bridge_ctid: int = 0  # cTrader: the account the price bridge subscribes with
    broker_name: str = ""

    def ticket(self) -> int:
        self.next_deal += 1
        return self.next_deal

    def order(self) -> int:
        self.next_order += 1
        return self.next_order


_LOGIN_BASES = {"mt5": 100_000, "mt4": 2_000_000, "ctrader": 4_400_000}
_SERVER_WEIGHT = {"mt5": 1.0, "mt4": 0.75, "ctrader": 0.45}


def build_servers(tenants: Sequence[tuple[str, Sequence[object]]], market: Market,
                  rng: random.Random) -> list[Server]:
    """Servers from (tenant id, [ServerConfig-like]) pairs, in configuration order."""
    out: list[Server] = []
    per_platform: dict[str, int] = {}
    ctrader_ids = [s for s in market.symbols if s.ctrader_id]
    for t_index, (tenant, configs) in enumerate(tenants):
        for cfg in configs:
            platform = str(getattr(cfg, "platform"))  # noqa: B009 - ServerConfig or a look-alike
            k = per_platform.get(platform, 0)
            per_platform[platform] = k + 1
            base = _LOGIN_BASES[platform] + k * (200_000 if platform == "mt5" else 1_000_000)
            srv = Server(
                index=len(out), name=str(getattr(cfg, "name")),  # noqa: B009
                platform=platform, tenant=tenant,
                currency=str(getattr(cfg, "currency", "USD")),
                offset_ms=int(getattr(cfg, "utc_offset_minutes", 0)) * 60_000,
                std_suffix="" if t_index % 2 == 0 else ".s",
                spread_mult=1.0 + 0.15 * t_index + 0.05 * rng.random(),
                symbols=list(ctrader_ids) if platform == "ctrader" else list(market.symbols),
                next_login=base + rng.randrange(100, 900),
                next_deal=rng.randrange(10_000_000, 12_000_000) if platform != "mt4"
                else rng.randrange(40_000_000, 60_000_000),
                next_order=rng.randrange(20_000_000, 30_000_000),
                next_position=rng.randrange(30_000_000, 40_000_000),
                next_balance=rng.randrange(1_000_000, 2_000_000),
                next_session=rng.randrange(100_000_000, 900_000_000),
                broker_name=tenant.upper(),
            )
            if platform == "mt4":
                srv.next_order = srv.next_deal  # one ticket sequence for trades and balance
            if platform == "ctrader":
                srv.bridge_ctid = base - 1
            out.append(srv)
    return out


# -- IBs ----------------------------------------------------------------------------------------

_IB_WORDS = ("Alpha", "Atlas", "Summit", "Orion", "Blue Harbor", "Crescent", "Pinnacle",
             "Vertex", "Meridian", "Northstar", "Sterling", "Falcon", "Evergreen", "Lighthouse",
             "Silverline", "Keystone", "Horizon", "Granite", "Redwood", "Aurora", "Beacon",
             "Cobalt", "Delta", "Ember", "Frontier", "Golden Gate", "Ironwood", "Juniper")
_IB_KINDS = ("Capital", "Partners", "Trading Academy", "Markets", "Invest", "Signals",
             "Wealth", "FX Club", "Traders", "Financial")


@dataclass(slots=True, eq=False)
class IB:
    ib_id: str  # "IB-1001"
    number: int  # 1001: the IB's agent login on every server of its tenant
    tenant: str
    name: str
    level: int  # 1 = master
    parent: IB | None
    children: list[IB] = field(default_factory=list)

    def chain(self) -> list[str]:
        """This IB and its masters, nearest first."""
        out: list[str] = []
        node: IB | None = self
        while node is not None:
            out.append(node.ib_id)
            node = node.parent
        return out


def build_ibs(tenant_ids: Sequence[str], rng: random.Random, first: int = 1001) -> list[IB]:
    """A 3-4 level tree per tenant: masters, their sub-IBs, sub-sub-IBs, a few at level 4."""
    out: list[IB] = []
    number = first

    def make(tenant: str, level: int, parent: IB | None) -> IB:
        nonlocal number
        name = f"{rng.choice(_IB_WORDS)} {rng.choice(_IB_KINDS)}"
        ib = IB(f"IB-{number}", number, tenant, name, level, parent)
        number += rng.randint(1, 4)
        out.append(ib)
        if parent is not None:
            parent.children.append(ib)
        return ib

    for tenant in tenant_ids:
        for _ in range(rng.randint(2, 3)):
            master = make(tenant, 1, None)
            for _ in range(rng.randint(2, 4)):
                sub = make(tenant, 2, master)
                for _ in range(rng.choice((0, 1, 2, 2, 3))):
                    subsub = make(tenant, 3, sub)
                    for _ in range(rng.choice((0, 0, 0, 1, 2))):
                        make(tenant, 4, subsub)
    return out


# -- clients and accounts -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """How a kind of client trades."""

    name: str
    share: float
    sessions_per_day: float  # median across clients of this kind
    trades_per_session: float  # mean
    hold_median_s: float
    hold_sigma: float  # of the log-normal holding time
    lot_median: float
    deposit_median: float  # in USD
    favourites: int  # how many instruments they keep coming back to


PROFILES: tuple[Profile, ...] = (
    Profile("casual", 0.42, 0.30, 1.8, 3 * 3600, 1.6, 0.05, 300, 2),
    Profile("active", 0.25, 0.90, 3.2, 40 * 60, 1.5, 0.20, 1_500, 3),
    Profile("scalper", 0.08, 1.30, 8.0, 150, 1.1, 0.50, 3_000, 2),
    Profile("swing", 0.18, 0.30, 1.6, 1.5 * 86400, 1.0, 0.30, 2_500, 4),
    Profile("whale", 0.07, 0.60, 2.8, 8 * 3600, 1.4, 3.00, 40_000, 3),
)
_PROFILE_BY_NAME = {p.name: p for p in PROFILES}


@dataclass(slots=True, eq=False)
class Device:
    device_id: str  # MT5 ComputerID
    client_type: int  # MT5 IMTOnline Type: 0 desktop, 4 iPhone, 5 Android, 11 web
    build: int


@dataclass(slots=True, eq=False)
class Instrument:
    """A payment instrument a client pays with (or is paid out to)."""

    kind: str  # card / ewallet / crypto / bank
    normalised: str  # what the payment connectors fingerprint ("card:411111:1111:12/2027")
    holder: str = ""
    email: str = ""
    bin: str = ""
    last4: str = ""
    exp_month: int = 0
    exp_year: int = 0
    brand: str = ""
    issuer_country: str = ""
    address: str = ""  # crypto address
    coin: str = ""  # BTC / USDT / ETH
    iban: str = ""


@dataclass(slots=True, eq=False)
class Client:
    cid: int  # the CRM's client number (MT5 ClientID); CRM id "C-<cid>"
    tenant: str
    first: str
    last: str
    country: Country
    city: str
    dob: str
    email: str
    home: IpBlock
    home_net: int  # the home /24 (as an integer with the last octet 0)
    mobile: IpBlock
    devices: list[Device]
    instruments: list[Instrument] = field(default_factory=list)
    accounts: list[SimAccount] = field(default_factory=list)
    phone: str = ""

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def crm_id(self) -> str:
        return f"C-{self.cid}"


@dataclass(slots=True, eq=False)
class SimAccount:
    client: Client
    server: Server
    login: int
    key: str  # platform:server:login
    group: str
    leverage: int
    ib: IB | None
    profile: Profile
    rate: float  # sessions per day (this account's own)
    raw: bool  # raw-spread account (tight spreads, commission per lot)
    hedging: bool  # MT5 hedging (else netting) mode
    hedger: bool  # opens opposite positions on purpose
    suffix: str
    favourites: list[Symbol]
    lot_median: float
    state: str  # active / dormant / new / closed
    opened_frac: float = 0.0  # new accounts: when in the horizon they open (0..1)
    registered_ms: int = 0
    last_access_ms: int = 0
    kyc: str = "approved"
    balance: float = 0.0
    credit: float = 0.0
    balance_version: int = 0
    positions: list[Position] = field(default_factory=list)
    trader_login: int = 0  # cTrader: the number the client sees
    flagged: str = ""  # "owned": a typology drives it; "case": in a case; others: see flag_until
    flag_until: int = 0  # until then the ordinary routine neither trades nor pays
    deposits: int = 0
    trades: int = 0
    next_session_at: int = 0
    margin_at: int = 0  # when the next margin check is due (0: none scheduled)
    stopped_out: int = 0
    preferred_method: str = "card"
    country_text: str = ""  # MT4: the country as the dealer typed it, when not the ISO code
    was_dormant: bool = False  # woke in the window after months without activity


def _luhn_tail(prefix: str) -> str:
    """A card number's check digit for a 15-digit prefix (so BIN+last4 look real)."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


_BINS = (("VISA", "4"), ("VISA", "4"), ("MASTERCARD", "5"), ("MASTERCARD", "2"))
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def card_for(rng: random.Random, holder: str, issuer_country: str, start_year: int) -> Instrument:
    brand, first = rng.choice(_BINS)
    if first == "2":
        bin_ = "2" + str(rng.randint(22100, 72099))
    else:
        bin_ = first + "".join(str(rng.randrange(10)) for _ in range(5))
    body = bin_ + "".join(str(rng.randrange(10)) for _ in range(9))
    number = body + _luhn_tail(body)
    month, year = rng.randint(1, 12), start_year + rng.randint(1, 5)
    return Instrument(
        kind="card", normalised=f"card:{number[:6]}:{number[-4:]}:{month:02d}/{year}",
        holder=ascii_fold(holder).upper(), bin=number[:6], last4=number[-4:], exp_month=month,
        exp_year=year, brand=brand, issuer_country=issuer_country,
    )


def ewallet_for(email: str) -> Instrument:
    return Instrument(kind="ewallet", normalised=f"ewallet:{email.lower()}", email=email.lower())


def crypto_for(rng: random.Random) -> Instrument:
    coin = rng.choices(("USDT", "BTC", "ETH"), (6, 3, 1))[0]
    if coin == "BTC":
        address = "bc1q" + "".join(rng.choice(_B32) for _ in range(38))
    elif coin == "ETH":
        address = "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))
    else:
        address = "T" + "".join(rng.choice(_B58) for _ in range(33))
    return Instrument(kind="crypto", normalised=f"crypto:{address}", address=address, coin=coin)


def device_for(rng: random.Random) -> Device:
    kind = rng.choices((0, 5, 4, 11), (5, 3, 2, 1.5))[0]
    build = {0: 4755, 5: 4712, 4: 4712, 11: 4730}[kind] - rng.choice((0, 0, 0, 20, 45))
    return Device("".join(rng.choice("0123456789ABCDEF") for _ in range(16)), kind, build)


def new_client(rng: random.Random, cid: int, tenant: str, country: Country,
               start_year: int, first: str = "", last: str = "") -> Client:
    firsts, lasts = NAMES[country.pool]
    first = first or rng.choice(firsts)
    last = last or rng.choice(lasts)
    home = rng.choice(GEOIP.residential[country.code])
    mobile = rng.choice(GEOIP.mobile[country.code])
    handle = ascii_fold(f"{first}.{last}").lower().replace(" ", "")
    email = f"{handle}{rng.choice(('', '', str(rng.randint(1, 99)), str(rng.randint(1960, 2004))))}" \
            f"@{rng.choice(EMAIL_DOMAINS)}"
    year = start_year - rng.randint(19, 68)
    dob = f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    client = Client(
        cid=cid, tenant=tenant, first=first, last=last, country=country,
        city=rng.choice(country.cities), dob=dob, email=email, home=home,
        home_net=home.base | (rng.randrange(256) << 8), mobile=mobile,
        devices=[device_for(rng) for _ in range(rng.choices((1, 2, 3), (5, 4, 1))[0])],
        phone=f"+{rng.randint(20, 99)}{rng.randint(100_000_000, 999_999_999)}",
    )
    return client


def payment_methods(client: Client, eu: bool, rng: random.Random, start_year: int) -> str:
    """Give the client the instruments it pays with; returns its preferred method."""
    if eu:
        method = rng.choices(("card", "ewallet", "bank"), (60, 25, 15))[0]
    else:
        method = rng.choices(("card", "ewallet", "crypto", "bank"), (40, 25, 25, 10))[0]
    card = card_for(rng, client.name, client.country.code, start_year)
    client.instruments.append(card)
    if rng.random() < 0.15:
        client.instruments.append(card_for(rng, client.name, client.country.code, start_year))
    wallet_email = client.email if rng.random() < 0.7 else \
        f"{ascii_fold(client.first).lower()}{rng.randint(10, 9999)}@{rng.choice(EMAIL_DOMAINS)}"
    client.instruments.append(ewallet_for(wallet_email))
    if method == "crypto" or rng.random() < 0.1:
        client.instruments.append(crypto_for(rng))
    return method


def instrument_of(client: Client, kind: str) -> Instrument | None:
    for inst in client.instruments:
        if inst.kind == kind:
            return inst
    return None


@dataclass(slots=True, eq=False)
class World:
    servers: list[Server]
    ibs: list[IB]
    clients: list[Client]
    accounts: list[SimAccount]
    by_key: dict[str, SimAccount]
    next_cid: int


def _pick_ib(rng: random.Random, ibs: list[IB]) -> IB | None:
    if not ibs or rng.random() < 0.3:
        return None  # a direct client
    weights = [{1: 0.4, 2: 1.0, 3: 1.6, 4: 1.6}[ib.level] for ib in ibs]
    ib = rng.choices(ibs, weights)[0]
    return ib


def make_account(rng: random.Random, market: Market, client: Client, server: Server,
                 ibs: list[IB], state: str, profile: Profile | None = None) -> SimAccount:
    profile = profile or rng.choices(PROFILES, [p.share for p in PROFILES])[0]
    eu = server.currency == "EUR"
    raw = rng.random() < (0.35 if profile.name in ("scalper", "whale") else 0.12)
    hedging = server.platform != "mt5" or rng.random() < 0.85
    server.next_login += rng.choice((1, 1, 1, 2, 3))
    login = server.next_login
    syms = server.symbols
    weights = [s.weight * (1.6 if eu and s.quote_ccy == "EUR" else 1.0) for s in syms]
    favourites: list[Symbol] = []
    for _ in range(profile.favourites + rng.randint(0, 2)):
        sym = rng.choices(syms, weights)[0]
        if sym not in favourites:
            favourites.append(sym)
    ccy = server.currency.lower()
    kind = "raw" if raw else "std"
    if server.platform == "mt5":
        group = f"real\\{server.tenant}\\{kind}-{ccy}" + ("" if hedging else "-net")
    else:
        group = f"real\\{kind}-{ccy}"
    leverage = 30 if eu else rng.choice((100, 200, 200, 500, 500, 500, 1000))
    if profile.name == "whale" and not eu:
        leverage = rng.choice((100, 200))
    rate = profile.sessions_per_day * rng.lognormvariate(0.0, 0.7)
    acc = SimAccount(
        client=client, server=server, login=login,
        key=account_key(server.platform, server.name, login), group=group, leverage=leverage,
        ib=_pick_ib(rng, [ib for ib in ibs if ib.tenant == server.tenant]),
        profile=profile, rate=rate, raw=raw, hedging=hedging,
        hedger=hedging and rng.random() < 0.12,
        suffix=".r" if raw and server.platform != "ctrader" else server.std_suffix
        if server.platform != "ctrader" else "",
        favourites=favourites, lot_median=profile.lot_median * rng.lognormvariate(0.0, 0.6),
        state=state,
    )
    if server.platform == "ctrader":
        acc.trader_login = 3_000_000 + (login - _LOGIN_BASES["ctrader"]) * 7 % 1_000_000
    client.accounts.append(acc)
    return acc


def build_world(
    tenants: Sequence[tuple[str, Sequence[object]]],
    market: Market,
    rng: random.Random,
    n_accounts: int,
    start_ms: int,
) -> World:
    servers = build_servers(tenants, market, rng)
    ibs = build_ibs([t for t, _ in tenants], rng)
    start_year = year_of(start_ms)
    clients: list[Client] = []
    accounts: list[SimAccount] = []
    server_weights = [_SERVER_WEIGHT[s.platform] for s in servers]
    client_countries = [c for c in COUNTRIES if c.w_global or c.w_eu]
    cid = 100_000 + rng.randrange(1000)
    while len(accounts) < n_accounts:
        first_server: Server = rng.choices(servers, server_weights)[0]
        eu = first_server.currency == "EUR"
        weights = [c.w_eu if eu else c.w_global for c in client_countries]
        country = rng.choices(client_countries, weights)[0]
        cid += rng.choice((1, 1, 2, 3))
        client = new_client(rng, cid, first_server.tenant, country, start_year)
        method = payment_methods(client, eu, rng, start_year)
        clients.append(client)
        n = rng.choices((1, 2, 3), (75, 20, 5))[0]
        tenant_servers = [s for s in servers if s.tenant == first_server.tenant]
        roll = rng.random()
        state = "active" if roll < 0.55 else "dormant" if roll < 0.80 else "new"
        profile = rng.choices(PROFILES, [p.share for p in PROFILES])[0]
        for k in range(n):
            if len(accounts) >= n_accounts:
                break
            server = first_server if k == 0 else rng.choice(tenant_servers)
            acc = make_account(rng, market, client, server, ibs, state, profile)
            acc.preferred_method = method
            if k and client.accounts[0].ib is not None:
                acc.ib = client.accounts[0].ib  # a client's accounts share its IB
            _history(rng, acc, start_ms)
            accounts.append(acc)
    return World(servers, ibs, clients, accounts, {a.key: a for a in accounts}, cid + 10)


def _history(rng: random.Random, acc: SimAccount, start_ms: int) -> None:
    """Registration, last access and the balance an account brings into the window."""
    if acc.state == "active":
        acc.registered_ms = start_ms - int(rng.uniform(20, 1100) * DAY_MS)
        acc.last_access_ms = start_ms - int(rng.uniform(0.02, 20) * DAY_MS)
        acc.balance = round(acc.profile.deposit_median * rng.lognormvariate(0.0, 0.9), 2)
        acc.kyc = "approved"
    elif acc.state == "dormant":
        acc.registered_ms = start_ms - int(rng.uniform(400, 1800) * DAY_MS)
        acc.last_access_ms = start_ms - int(rng.uniform(190, 380) * DAY_MS)
        acc.balance = round(rng.choice((0.0, 0.0, rng.uniform(0.5, 60.0))), 2)
        acc.kyc = rng.choice(("approved", "approved", "expired"))
        acc.rate *= 0.03  # most dormant accounts stay dormant
    else:
        acc.opened_frac = rng.random()
        acc.kyc = "pending"
        acc.balance = 0.0


def year_of(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, UTC).year


def profile_named(name: str) -> Profile:
    return _PROFILE_BY_NAME[name]


# Commission plans the simulated partner tree uses, by IB level (payout currency per lot).
_PLANS: tuple[tuple[str, str, str, dict[str, float]], ...] = (
    ("sim-master", "Master partner (simulated)", "differential",
     {"fx_major": 10, "fx_minor": 12, "fx_exotic": 15, "metal": 7, "index": 3, "energy": 5,
      "crypto": 2}),
    ("sim-sub", "Sub-partner (simulated)", "differential",
     {"fx_major": 7, "fx_minor": 8, "fx_exotic": 11, "metal": 5, "index": 2, "energy": 3,
      "crypto": 1.5}),
    ("sim-introducer", "Introducer (simulated)", "differential",
     {"fx_major": 5, "fx_minor": 6, "fx_exotic": 8, "metal": 3.5, "index": 1, "energy": 2,
      "crypto": 1}),
)


# Monthly volume tiers (issue 16: the partner view shows the progress to the next one): FX
# majors pay more from 500 and 1,500 lots of the IB's month (its whole downline's deals).
_TIERS: dict[str, list[dict[str, object]]] = {
    "sim-master": [{"from_lots": 500, "per_lot": {"fx_major": 11}},
                   {"from_lots": 1500, "per_lot": {"fx_major": 12}}],
    "sim-sub": [{"from_lots": 500, "per_lot": {"fx_major": 7.5}},
                {"from_lots": 1500, "per_lot": {"fx_major": 8}}],
    "sim-introducer": [{"from_lots": 500, "per_lot": {"fx_major": 5.5}},
                       {"from_lots": 1500, "per_lot": {"fx_major": 6}}],
}


def partner_config(world: World, tenant: str, currency: str, since: str = "2020-01-01") -> dict[str, object]:
    """The tenant's IB tree as a commissions configuration (docs/commissions.md): plans by
    level, each IB under its master, and the accounts the world starts with assigned to their
    IBs. IB `IB-<n>` is the platform Agent login `<n>`."""
    plans = [{"id": pid, "name": name, "versions": [{
        "version": 1, "effective_from": since, "distribution": dist, "per_lot": rates,
        "volume_tiers": _TIERS[pid]}]}
        for pid, name, dist, rates in _PLANS]
    level_plan = {1: "sim-master", 2: "sim-sub"}
    ibs = [{"id": ib.ib_id, "name": ib.name, "agent_logins": [str(ib.number)],
            **({"parent": ib.parent.ib_id} if ib.parent is not None else {}),
            "plan": level_plan.get(ib.level, "sim-introducer")}
           for ib in world.ibs if ib.tenant == tenant]
    accounts = [{"account": acc.key, "ib": acc.ib.ib_id,
                 "from": datetime.fromtimestamp(acc.registered_ms / 1000, UTC).strftime("%Y-%m-%d")}
                for acc in world.accounts
                if acc.server.tenant == tenant and acc.ib is not None and acc.registered_ms]
    return {"tenant": tenant, "currency": currency, "plans": plans, "ibs": ibs,
            "accounts": accounts}
