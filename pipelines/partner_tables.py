"""The partner tree and the plans' tiers of the commissions files, written to ClickHouse
(`ib_tree_store`, `ib_plan_tiers_store`, migration 0011) so that SQL can show an IB's tree and
its progress to the next volume tier (dashboards/partner.json, docs/client-partner-views.md).

The engine writes them at start (`brokerstream.engine.prepare_store`) from `commissions:`; each
load writes a complete set stamped `loaded_at`, and the views read each tenant's latest load.
The rows come from the same `CommissionConfig` the commission engine runs on (its
`build_tree()`), so the tree shown is the tree that pays.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal

from commissions.config import CommissionConfig
from commissions.tree import chain_text
from pipelines.store import Store


@dataclass(frozen=True)
class TreeRow:
    """One IB in the tree as it is from `effective_from` on (`ib_tree_store`)."""

    tenant: str
    effective_from: datetime
    ib_id: str
    name: str
    parent: str  # '' = top level
    plan_id: str  # '' = no plan
    path: str  # the chain from the top, "IB-1>IB-2>IB-3" (as ib_commissions.tier_chain)
    depth: int  # 0 = top level
    agent_logins: tuple[str, ...]  # the IB's logins as the platforms' Agent field names them
    loaded_at: datetime

    def values(self) -> tuple[object, ...]:
        """The row in TREE_COLUMNS order (the agent logins as a list: an Array column)."""
        return tuple(list(v) if isinstance(v, tuple) else v for v in astuple(self))


@dataclass(frozen=True)
class TierRow:
    """One per-lot rate of one plan version from one volume tier on (`ib_plan_tiers_store`)."""

    tenant: str
    plan_id: str
    plan_name: str
    plan_version: int
    effective_from: datetime
    distribution: str
    charge: str
    tier: int  # 0 = base rates
    from_lots: Decimal
    symbol_group: str
    per_lot: Decimal
    set_at_tier: bool  # the tier itself sets this rate (the others carry over from below)
    currency: str
    loaded_at: datetime


TREE_COLUMNS = tuple(f.name for f in fields(TreeRow))
TIER_COLUMNS = tuple(f.name for f in fields(TierRow))


def tree_rows(config: CommissionConfig, loaded_at: datetime) -> list[TreeRow]:
    """The whole tree at every moment one of its links (a master, a plan) changes."""
    tree = config.build_tree()
    agents = {ib.id: tuple(ib.agent_logins) for ib in config.ibs}
    moments = sorted({m for ib in tree.ibs for m, _ in tree.parent_links(ib) + tree.plan_links(ib)}
                     or {datetime(1970, 1, 1, tzinfo=UTC)})
    if moments[0] > datetime(1970, 1, 1, tzinfo=UTC):  # before any link: every IB at the top
        moments.insert(0, datetime(1970, 1, 1, tzinfo=UTC))
    out = []
    for moment in moments:
        for ib_id, ib in tree.ibs.items():
            chain = tree.chain(ib_id, moment)
            out.append(TreeRow(config.tenant, moment, ib_id, ib.name, tree.parent(ib_id, moment) or "",
                               tree.plan_of(ib_id, moment) or "", chain_text(chain), len(chain) - 1,
                               agents.get(ib_id, ()), loaded_at))
    return out


def tier_rows(config: CommissionConfig, loaded_at: datetime) -> list[TierRow]:
    """Every plan version's per-lot rates at each volume tier (tier 0: the base rates)."""
    out = []
    for plan in config.plans:
        for version in plan.versions:
            starts = [Decimal(0)] + [t.from_lots for t in version.volume_tiers]
            for tier, from_lots in enumerate(starts):
                own = version.per_lot if tier == 0 else version.volume_tiers[tier - 1].per_lot
                for group, rate in sorted(version.rates_at_tier(tier).items()):
                    out.append(TierRow(config.tenant, plan.id, plan.name, version.version,
                                       version.effective_from, version.distribution, version.charge,
                                       tier, from_lots, group, rate, group in own, config.currency,
                                       loaded_at))
    return out


def write_partner_tables(store: Store, configs: list[CommissionConfig],
                         loaded_at: datetime | None = None) -> tuple[int, int]:
    """Write the trees and tiers of `configs` as one load; returns (tree rows, tier rows)."""
    stamp = loaded_at or datetime.now(UTC)
    trees = [r for c in configs for r in tree_rows(c, stamp)]
    tiers = [r for c in configs for r in tier_rows(c, stamp)]
    store.insert_rows("ib_tree_store", TREE_COLUMNS, [r.values() for r in trees])
    store.insert_rows("ib_plan_tiers_store", TIER_COLUMNS, [astuple(r) for r in tiers])
    return len(trees), len(tiers)
