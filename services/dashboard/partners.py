"""Partner logins of the built-in page (issue 16): an IB sees its own tree and nothing else.

A `dashboard.users` entry with `role: partner`, one tenant and `ib: <ib id>` logs in like any
user, and the server (never the browser) limits it:

- it sees only the partner dashboard (`dashboards/partner.json`); every other dashboard is a 403;
- the `ib` variable offers only its tree — its own IB first, then every IB below it in the
  tree in force now (`ib_tree`) — and any other value is a 403;
- every query of its runs with ClickHouse `additional_table_filters` that limit each table and
  view to its tenant and, further, to its tree: commission rows, payouts, the tree and
  `ib_clients` to its IBs; accounts and deals to its tree's clients (`ib_clients`); plan tiers
  to its tree's plans; `exposure_history` (the symbols' USD prices for notional) to the
  tenant; everything else (payments, logins, alerts, positions, issues, ...) to nothing.
  So even a panel that forgot its `ib` filter shows only the tree's rows.

The tree and its clients are read (with the tenant's filters) when the partner's first query
needs them, and again after `SCOPE_TTL_S`, so an IB added under it, or a client newly assigned,
appears within a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from commissions import load_commissions
from pipelines.config import Settings
from schemas.identity import ACCOUNT_KEY_SQL
from services.dashboard.auth import Identity
from services.dashboard.definitions import quote

PARTNER_ROLE = "partner"
PARTNER_DASHBOARD = "brokerstream-partner"
IB_VARIABLE = "ib"
SCOPE_TTL_S = 60.0

TREE_SQL = "SELECT ib_id, path, plan_id FROM ib_tree WHERE tenant = {tenant} ORDER BY path"
CLIENTS_SQL = ("SELECT DISTINCT account_key FROM ib_clients WHERE tenant = {tenant} AND ib_id IN ({ibs}) "
               "ORDER BY account_key")

# object name -> what limits it to the partner's tree, besides the tenant
_BY_IB = ("ib_commissions_store", "ib_commissions", "ib_payouts_daily", "ib_payouts_monthly",
          "ib_tree_store", "ib_tree_history", "ib_tree", "ib_clients")
_BY_ACCOUNT = ("accounts_store", "accounts")
_BY_DEAL_ACCOUNT = ("deals_store", "deals")
_BY_PLAN = ("ib_plan_tiers_store", "ib_plan_tiers")
_TENANT_ONLY = ("exposure_history",)  # prices only: the partner panels read USD per unit from it


@dataclass(frozen=True)
class PartnerScope:
    """What one partner login may see: its tenant, its tree, its tree's clients and plans."""

    tenant: str
    ib: str
    tree: tuple[str, ...]  # its own IB first, then the IBs below it in path order
    accounts: tuple[str, ...]
    plans: tuple[str, ...]


def is_partner(who: Identity) -> bool:
    return who.role == PARTNER_ROLE


def subtree(ib: str, rows: Iterable[Sequence[Any]]) -> tuple[list[str], list[str]]:
    """The IB and every IB whose path from the top passes through it (own first), and their
    plans, from `ib_tree` rows (ib_id, path, plan_id)."""
    ibs: list[str] = []
    plans: list[str] = []
    for ib_id, path, plan_id in rows:
        if ib in str(path).split(">"):
            ibs.append(str(ib_id))
            if plan_id and str(plan_id) not in plans:
                plans.append(str(plan_id))
    if ib in ibs:
        ibs.remove(ib)
    return [ib, *ibs], plans


def _in(values: Sequence[str]) -> str:
    return ",".join(quote(v) for v in values) or "NULL"


def table_filters(database: str, objects: Iterable[Sequence[Any]], scope: PartnerScope) -> str:
    """`additional_table_filters` (a ClickHouse Map literal) for a partner: `objects` are
    (name, has a tenant column) of every object of the database."""
    tenant = f"tenant = {quote(scope.tenant)}"
    ibs, accounts, plans = _in(scope.tree), _in(scope.accounts), _in(scope.plans)
    entries = []
    for name, has_tenant in objects:
        name = str(name)
        if not has_tenant:
            condition = "0"
        elif name in _BY_IB:
            condition = f"{tenant} AND ib_id IN ({ibs})"
        elif name in _BY_ACCOUNT:
            condition = f"{tenant} AND account_key IN ({accounts})"
        elif name in _BY_DEAL_ACCOUNT:
            condition = f"{tenant} AND {ACCOUNT_KEY_SQL} IN ({accounts})"
        elif name in _BY_PLAN:
            condition = f"{tenant} AND plan_id IN ({plans})"
        elif name in _TENANT_ONLY:
            condition = tenant
        else:
            condition = "0"
        entries.append(f"{quote(f'{database}.{name}')}: {quote(condition)}")
    return "{" + ", ".join(entries) + "}"


class PartnerScopes:
    """The scopes of the logged-in partners, read through `query` (which runs a SELECT limited
    to the partner's tenant) and kept SCOPE_TTL_S seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, PartnerScope]] = {}

    def scope(self, who: Identity, query: Callable[[str], list[tuple[Any, ...]]]) -> PartnerScope:
        tenant = who.tenants[0] if who.tenants else ""
        key = (tenant, who.ib)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self._clock() - cached[0] < SCOPE_TTL_S:
                return cached[1]
        tree, plans = subtree(who.ib, query(TREE_SQL.format(tenant=quote(tenant))))
        accounts = [str(r[0]) for r in query(CLIENTS_SQL.format(tenant=quote(tenant), ibs=_in(tree)))]
        found = PartnerScope(tenant, who.ib, tuple(tree), tuple(accounts), tuple(plans))
        with self._lock:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = (self._clock(), found)
        return found


def check_partner_logins(settings: Settings) -> list[str]:
    """Problems with the partner logins of `settings`: each partner's IB must be in its tenant's
    commissions file. Each problem names the field (`dashboard.users.<name>.ib`)."""
    partners = [u for u in settings.dashboard.users if u.role == PARTNER_ROLE]
    if not partners:
        return []
    ibs: dict[str, set[str]] = {}
    for path in settings.commissions:
        config = load_commissions(path)
        ibs.setdefault(config.tenant, set()).update(ib.id for ib in config.ibs)
    problems = []
    for user in partners:
        tenant = user.tenants[0]
        if tenant not in ibs:
            problems.append(f"dashboard.users.{user.name}.ib: tenant {tenant!r} has no commissions file "
                            f"(`commissions:`), so it has no IB {user.ib!r}")
        elif user.ib not in ibs[tenant]:
            problems.append(f"dashboard.users.{user.name}.ib: no IB {user.ib!r} in tenant {tenant!r}'s "
                            "commissions file")
    return problems
