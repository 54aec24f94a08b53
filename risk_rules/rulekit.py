"""What the AML, fraud and sanctions rules share: the base of their parameters, time windows of
recent records, and the one check both the AML and the fraud rules make: how many different
clients use one key (a payment instrument, an IP address, a device) within a window."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from risk_rules.engine import Context, Hit, Rule
from schemas.events import BalanceOperation, Login


class P(BaseModel):
    """Base of a rule's parameters: an unknown key is a configuration error, values are fixed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Row = TypeVar("Row", bound=tuple[Any, ...])


def prune(q: deque[Row], now: datetime, window: timedelta) -> None:
    """Drop entries (event time first) older than `window` before `now`."""
    while q and now - q[0][0] > window:
        q.popleft()


Uses = dict[str, tuple[datetime, str]]  # who (or what) -> (last use, the key of that record)


def note_use(uses: Uses, who: str, t: datetime, key: str, window_hours: float) -> None:
    """Remember `who`'s latest use and forget the uses older than the window before `t`."""
    uses[who] = (t, key)
    horizon = t - timedelta(hours=window_hours)
    for k in [k for k, v in uses.items() if v[0] < horizon]:
        del uses[k]


class SharedUseParams(P):
    """What `SharedUse` reads; each rule sets its own defaults."""

    min_accounts: int = Field(ge=2, description="different clients")
    window_hours: float = Field(gt=0)


class SharedUse(Rule):
    """Distinct clients (`Context.person`: CRM id, else name + birth date, else the account)
    behind one key within a window: the subject is `keyed_by:key` (instrument:..., ip:...,
    device:...). Subclasses say who used what (`summary`); the sentence ends with the window and
    the threshold."""

    p: SharedUseParams

    def __init__(self, params: Any, ctx: Context) -> None:
        super().__init__(params, ctx)
        # key -> account -> (last use, its record's key); the clients behind the accounts are
        # counted when the rule looks
        self.users: dict[str, Uses] = defaultdict(dict)

    def summary(self, record: Login | BalanceOperation, key: str, clients: int, accounts: int) -> str:
        raise NotImplementedError

    def used(self, record: Login | BalanceOperation, key: str, account: str, record_key: str) -> list[Hit]:
        """`account` used `key` in `record`: a hit when enough different clients did."""
        users = self.users[key]
        note_use(users, account, record.time, record_key, self.p.window_hours)
        if len(users) < self.p.min_accounts:
            return []
        clients = {self.ctx.person(a) for a in users}
        if len(clients) < self.p.min_accounts:
            return []
        accounts = sorted(users)
        return [
            Hit(
                f"{self.keyed_by}:{key}",
                record.tenant,
                f"{self.summary(record, key, len(clients), len(accounts))} "
                f"within {self.p.window_hours:.0f} h (threshold {self.p.min_accounts})",
                {
                    "clients": len(clients),
                    "accounts": accounts,
                    "min_accounts": self.p.min_accounts,
                    "window_hours": self.p.window_hours,
                },
                sorted(v[1] for v in users.values()),
                record.time,
            )
        ]
