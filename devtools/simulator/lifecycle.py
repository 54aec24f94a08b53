"""Accounts through their life: the CRM opens them (`account_opened`), the platform creates
the user (MT5 IMTUser / MT4 UserRecord / cTrader trader update), an IB is assigned (CRM
`ib_assigned`, platform Agent field), KYC moves from pending to approved (or rejected, and the
account is closed), and now and then an IB, leverage or contact detail changes.

When the simulation starts, the bridges and the CRM first publish what already exists (an
initial sync): existing accounts' `account_opened` with their past registration time, their
KYC state and IB, and their platform user records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.ctrader_proto import openapi_subset_pb2 as pb
from devtools.simulator import emit
from devtools.simulator.geo import ip_text
from devtools.simulator.world import IB, Client, Profile, Server, SimAccount, make_account

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage
    from devtools.simulator.typologies import Case

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


class Lifecycle:
    def __init__(self, sim: Brokerage) -> None:
        self.sim = sim
        self.crm_seq = 0x7F3A0000 + sim.rng.randrange(0x10000)

    # -- messages -------------------------------------------------------------------------------

    def crm(self, acc: SimAccount, event: str, t_event: int, case: Case | None = None,
            **fields: Any) -> str:
        """A `crm.accounts` event published now about something that happened at t_event."""
        sim = self.sim
        srv = acc.server
        self.crm_seq += sim.rng.randint(1, 40)
        event_id = f"crm-{self.crm_seq:08x}"
        doc = emit.crm_event(event, event_id, t_event, srv.tenant, srv.platform, srv.name,
                             acc.login, **fields)
        sim.emit("crm.accounts", str(acc.login), doc, {"server": srv.name}, case, event_id)
        return event_id

    def user(self, acc: SimAccount, event: str = "add", case: Case | None = None,
             enabled: bool = True) -> str:
        """The platform's user record (cTrader: a trader-updated event) now."""
        sim = self.sim
        srv = acc.server
        client = acc.client
        key = str(acc.login)
        agent = acc.ib.number if acc.ib is not None else 0
        reg_s = (acc.registered_ms + srv.offset_ms) // 1000
        last_s = (acc.last_access_ms + srv.offset_ms) // 1000 if acc.last_access_ms else 0
        if srv.platform == "mt5":
            doc = emit.mt5_user(
                login=acc.login, group=acc.group,
                rights=emit.RIGHTS_ENABLED if enabled else emit.RIGHTS_DISABLED,
                registration_s=reg_s, last_access_s=last_s,
                last_ip=ip_text(client.home_net | 17) if last_s else "", first=client.first,
                last=client.last, country_name=client.country.name, city=client.city,
                email=client.email, phone=client.phone, client_id=client.cid,
                leverage=acc.leverage, agent=agent, balance=acc.balance, credit=acc.credit,
            )
            sim.emit("mt5.users", key, doc, {"server": srv.name, "event": event}, case, acc.key)
        elif srv.platform == "mt4":
            doc = emit.mt4_user(
                login=acc.login, group=acc.group, enable=1 if enabled else 0, name=client.name,
                country=acc.country_text or client.country.code, city=client.city, email=client.email,
                phone=client.phone, leverage=acc.leverage, agent=agent, regdate_s=reg_s,
                lastdate_s=last_s, balance=acc.balance, credit=acc.credit,
            )
            sim.emit("mt4.users", key, doc, {"server": srv.name, "event": event}, case, acc.key)
        else:
            acc.balance_version += 1
            doc = emit.ctrader_trader(
                ctid=acc.login, balance=round(acc.balance * 100), version=acc.balance_version,
                leverage=acc.leverage, trader_login=acc.trader_login, hedged=acc.hedging,
                broker=srv.broker_name, registered_ms=acc.registered_ms,
                access=pb.FULL_ACCESS if enabled else pb.NO_LOGIN,
            )
            sim.emit("ctrader.events", key, doc, {"server": srv.name}, case, acc.key)
        return acc.key

    def opened_fields(self, acc: SimAccount) -> dict[str, str]:
        client = acc.client
        return {"client_id": client.crm_id, "name": client.name, "email": client.email,
                "country": client.country.code, "date_of_birth": client.dob}

    # -- initial sync ---------------------------------------------------------------------------

    def sync(self, acc: SimAccount) -> None:
        """What the CRM and the platform publish about an existing account at start."""
        rng = self.sim.rng
        reg = acc.registered_ms
        self.crm(acc, "account_opened", reg, None, kyc_status="pending", **self.opened_fields(acc))
        kyc_at = reg + rng.randint(2 * HOUR, 6 * DAY)
        self.crm(acc, "kyc_status", kyc_at, kyc_status="approved")
        if acc.kyc == "expired":
            expired = min(kyc_at + rng.randint(365, 700) * DAY, self.sim.now - rng.randint(1, 60) * DAY)
            self.crm(acc, "kyc_status", max(expired, kyc_at + DAY), kyc_status="expired")
        if acc.ib is not None:
            self.crm(acc, "ib_assigned", reg, ib_id=acc.ib.ib_id)
        self.user(acc, "add")

    # -- new accounts ---------------------------------------------------------------------------

    def create(self, client: Client, server: Server, *, profile: Profile | None = None,
               ib: IB | str | None = "pick", state: str = "new") -> SimAccount:
        """A new account for `client` on `server` (not yet opened: see `open`)."""
        sim = self.sim
        acc = make_account(sim.rng, sim.market, client, server, sim.world.ibs, state, profile)
        if ib != "pick":
            acc.ib = ib if isinstance(ib, IB) else None
        acc.kyc = "pending"
        acc.balance = 0.0
        sim.world.accounts.append(acc)
        sim.world.by_key[acc.key] = acc
        return acc

    def open(self, acc: SimAccount, case: Case | None = None, kyc: str = "", normal: bool = True,
             kyc_after: int = 0) -> None:
        """The account opens now: CRM event, platform user, IB; KYC decided later."""
        sim = self.sim
        rng = sim.rng
        acc.registered_ms = sim.now
        acc.state = "pending"
        self.crm(acc, "account_opened", sim.now, case, kyc_status="pending",
                 **self.opened_fields(acc))
        sim.at(sim.now + rng.randint(400, 8_000), self._platform_user, (acc, case))
        if acc.ib is not None:
            sim.at(sim.now + rng.randint(1_000, 30 * MINUTE), self._ib, (acc, case))
        if not kyc:
            roll = rng.random()
            kyc = "approved" if roll < 0.86 else "rejected" if roll < 0.93 else "pending"
        if kyc != "pending":
            delay = kyc_after or 2 * MINUTE + int(min(rng.lognormvariate(0.0, 1.1) * 6 * HOUR, 6 * DAY))
            sim.at(sim.now + delay, self._kyc, (acc, kyc, case, normal))

    def _platform_user(self, arg: tuple[SimAccount, Case | None]) -> None:
        acc, case = arg
        self.user(acc, "add", case)

    def _ib(self, arg: tuple[SimAccount, Case | None]) -> None:
        acc, case = arg
        if acc.ib is not None:
            self.crm(acc, "ib_assigned", self.sim.now, case, ib_id=acc.ib.ib_id)

    def _kyc(self, arg: tuple[SimAccount, str, Case | None, bool]) -> None:
        acc, status, case, normal = arg
        sim = self.sim
        rng = sim.rng
        acc.kyc = status
        self.crm(acc, "kyc_status", sim.now, case, kyc_status=status)
        if status == "approved":
            acc.state = "active"
            if normal:
                sim.at(sim.now + rng.randint(5 * MINUTE, 2 * DAY), sim.first_deposit, acc)
        else:
            sim.at(sim.now + rng.randint(HOUR, 3 * DAY), self._close, (acc, case))

    def _close(self, arg: tuple[SimAccount, Case | None]) -> None:
        acc, case = arg
        acc.state = "closed"
        self.crm(acc, "account_closed", self.sim.now, case)
        self.sim.at(self.sim.now + self.sim.rng.randint(MINUTE, HOUR), self._disable, (acc, case))

    def _disable(self, arg: tuple[SimAccount, Case | None]) -> None:
        acc, case = arg
        if acc.server.platform == "mt5" and self.sim.rng.random() < 0.5:
            self.user(acc, "delete", case, enabled=False)
        else:
            self.user(acc, "update", case, enabled=False)

    # -- changes --------------------------------------------------------------------------------

    def change(self, _: object) -> None:
        """A random account changes IB, leverage or e-mail (then the next change)."""
        sim = self.sim
        rng = sim.rng
        accounts = sim.world.accounts
        acc = accounts[rng.randrange(len(accounts))]
        if acc.state == "active" and not acc.flagged:
            roll = rng.random()
            if roll < 0.4:
                ibs = [ib for ib in sim.world.ibs if ib.tenant == acc.server.tenant]
                if ibs:
                    acc.ib = rng.choice(ibs)
                    effective = sim.now - sim.now % DAY + DAY
                    self.crm(acc, "ib_assigned", sim.now, ib_id=acc.ib.ib_id,
                             effective_from=emit.iso(effective))
                    sim.at(sim.now + rng.randint(MINUTE, 2 * HOUR), self._user_update, acc)
            elif roll < 0.7:
                acc.leverage = rng.choice((50, 100, 200, 500)) if acc.server.currency != "EUR" \
                    else rng.choice((10, 20, 30))
                self._user_update(acc)
            else:
                client = acc.client
                client.email = f"{client.email.split('@')[0]}.{rng.randint(1, 99)}@" \
                               f"{client.email.split('@')[1]}"
                self.crm(acc, "account_updated", sim.now, email=client.email)
                sim.at(sim.now + rng.randint(MINUTE, DAY), self._user_update, acc)
        sim.at(sim.now + int(rng.expovariate(1.0 / sim.change_gap_ms)) + 1, self.change, None)

    def _user_update(self, acc: SimAccount) -> None:
        self.user(acc, "update")
