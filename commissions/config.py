"""The commissions configuration: one YAML file per tenant (broker or white label), validated
at start. A wrong value stops with a message naming the field, e.g.

    commissions config error in examples/commissions.yaml:
      plans.1.versions.0.markup_share: Input should be less than or equal to 1
      ibs.2.parent: master 'IB-9' is not defined (IB 'IB-3')

See docs/commissions.md for every key and examples/commissions.yaml for a full example.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from commissions.money import is_whole_minor
from commissions.plans import Plan, Strict, UtcDatetime
from commissions.symbols import is_fx_pair
from commissions.tree import BEGINNING, IB, PartnerTree, TreeError


class SymbolConfig(Strict):
    group: str | None = Field(default=None, description="symbol group, overriding the lookup")
    quote_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    pip_size: Decimal | None = Field(default=None, gt=0, description="price units per pip/point")
    markup_pips: Decimal = Field(default=Decimal(0), ge=0, description="broker markup in pips/points")


class IBChange(Strict):
    """From `from` on: a new master (`parent`, null = top level) and/or a new `plan`."""

    effective_from: UtcDatetime = Field(alias="from")
    parent: str | None = None
    plan: str | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> IBChange:
        if not self.model_fields_set & {"parent", "plan"}:
            raise ValueError("a change needs `parent` and/or `plan`")
        return self


class IBConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str = ""
    parent: str | None = Field(default=None, description="master since the beginning; none = top level")
    plan: str | None = Field(default=None, description="plan since the beginning")
    changes: list[IBChange] = Field(default_factory=list)
    agent_logins: list[str] = Field(
        default_factory=list,
        description="the IB's own logins as the platforms put them in clients' Agent field "
        "(MT4/MT5 Agent is a login number, while the CRM and this file name the IB)",
    )


class AccountConfig(Strict):
    account: str = Field(pattern=r"^(mt4|mt5|ctrader):[^:]+:\d+$", description="platform:server:login")
    ib: str | None
    effective_from: UtcDatetime = Field(default=BEGINNING, alias="from")


class CommissionConfig(Strict):
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="payout currency")
    symbols: dict[str, SymbolConfig] = Field(default_factory=dict)
    plans: list[Plan] = Field(min_length=1)
    ibs: list[IBConfig] = Field(min_length=1)
    accounts: list[AccountConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> CommissionConfig:
        problems: list[str] = []
        plans = [p.id for p in self.plans]
        for i, plan_id in enumerate(plans):
            if plans.index(plan_id) != i:
                problems.append(f"plans.{i}.id: plan {plan_id!r} is defined twice")
        ib_ids = [ib.id for ib in self.ibs]
        for i, ib in enumerate(self.ibs):
            if ib_ids.index(ib.id) != i:
                problems.append(f"ibs.{i}.id: IB {ib.id!r} is defined twice")
            if ib.parent is not None and ib.parent not in ib_ids:
                problems.append(f"ibs.{i}.parent: master {ib.parent!r} is not defined (IB {ib.id!r})")
            if ib.parent == ib.id:
                problems.append(f"ibs.{i}.parent: IB {ib.id!r} cannot be its own master")
            if ib.plan is not None and ib.plan not in plans:
                problems.append(f"ibs.{i}.plan: plan {ib.plan!r} is not defined (IB {ib.id!r})")
            for j, change in enumerate(ib.changes):
                if change.parent is not None and change.parent not in ib_ids:
                    problems.append(f"ibs.{i}.changes.{j}.parent: master {change.parent!r} is not "
                                    f"defined (IB {ib.id!r})")
                if change.parent == ib.id:
                    problems.append(f"ibs.{i}.changes.{j}.parent: IB {ib.id!r} cannot be its own master")
                if change.plan is not None and change.plan not in plans:
                    problems.append(f"ibs.{i}.changes.{j}.plan: plan {change.plan!r} is not defined "
                                    f"(IB {ib.id!r})")
        for i, account in enumerate(self.accounts):
            if account.ib is not None and account.ib not in ib_ids:
                problems.append(f"accounts.{i}.ib: IB {account.ib!r} is not defined "
                                f"(account {account.account})")
        for i, plan in enumerate(self.plans):
            for j, version in enumerate(plan.versions):
                for cap in ("per_day", "per_month"):
                    value = getattr(version.caps, cap)
                    if value is not None and not is_whole_minor(value, self.currency):
                        problems.append(f"plans.{i}.versions.{j}.caps.{cap}: {value} is not a whole "
                                        f"number of {self.currency} minor units")
        for symbol, conf in self.symbols.items():
            if conf.markup_pips and conf.pip_size is None and not is_fx_pair(symbol):
                problems.append(f"symbols.{symbol}.pip_size: needed with markup_pips (not an FX pair)")
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def plan_index(self) -> dict[str, Plan]:
        return {plan.id: plan for plan in self.plans}

    def build_tree(self) -> PartnerTree:
        """The partner tree the configuration describes; raises TreeError (e.g. a cycle)."""
        tree = PartnerTree(IB(ib.id, ib.name) for ib in self.ibs)
        for ib in self.ibs:
            if ib.parent is not None:
                tree.set_parent(ib.id, ib.parent, BEGINNING)
            if ib.plan is not None:
                tree.set_plan(ib.id, ib.plan, BEGINNING)
            for change in ib.changes:
                if "parent" in change.model_fields_set:
                    tree.set_parent(ib.id, change.parent, change.effective_from)
                if "plan" in change.model_fields_set:
                    tree.set_plan(ib.id, change.plan, change.effective_from)
        tree.validate()
        for account in self.accounts:
            tree.assign(account.account, account.ib, account.effective_from)
        return tree


class CommissionConfigError(ValueError):
    """A commissions configuration that cannot be used, with every offending field named."""


def parse_commissions(doc: object, source: str = "commissions config") -> CommissionConfig:
    """Validate a parsed document (and the partner tree it describes)."""
    try:
        config = CommissionConfig.model_validate(doc)
    except ValidationError as exc:
        lines = [f"commissions config error in {source}:"]
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
        raise CommissionConfigError("\n".join(lines)) from None
    try:
        config.build_tree()
    except TreeError as exc:
        raise CommissionConfigError(f"commissions config error in {source}:\n  ibs: {exc}") from None
    return config


def load_commissions(path: str | Path) -> CommissionConfig:
    """Load and validate a commissions YAML file; raises CommissionConfigError."""
    chosen = Path(path)
    try:
        doc = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommissionConfigError(f"commissions config file not found: {chosen}") from None
    except yaml.YAMLError as exc:
        raise CommissionConfigError(f"commissions config file {chosen} is not valid YAML: {exc}") from None
    return parse_commissions(doc, str(chosen))
