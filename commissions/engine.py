"""The IB commission engine: deals in, commission rows out, one deal at a time.

    engine = CommissionEngine(load_commissions("examples/commissions.yaml"), rates=rates)
    engine.on_account(account_update)          # Agent field / CRM: who the account belongs to
    rows = engine.on_deal(deal)                 # list[CommissionRow]

For each deal event the engine

1. ignores it if it already has this or a newer version of the deal (replays, redeliveries);
2. reverses every row the previous version earned (`reversal` rows, never an overwrite);
3. re-checks the minimum holding time of the deal's position: deals whose status flips are
   reversed (a quick close makes the opening earn nothing) or restored (a correction undoes
   that: the held-back rows are paid again, as they were);
4. prices the new version (unless deleted, held back or not eligible): the direct IB's chain
   at the deal's time, each level's plan version at the deal's time, volume tiers from the
   IB's lots this month before the deal, the split (differential or cascade), per-row
   rounding, then daily and monthly caps.

The same events in the same order always give the same rows with the same ids; see
`state.py` for what is kept and how it is keyed, and docs/commissions.md for the rules.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from commissions.config import CommissionConfig
from commissions.distribution import Split, cascade, differential
from commissions.money import (
    ZERO,
    FixedRates,
    MissingRate,
    RateFunction,
    round_minor,
    split_rounded,
    to_usd,
    usd_rate,
)
from commissions.plans import (
    CLOSING_ENTRIES,
    DealFacts,
    PlanVersion,
    Priced,
    PricingError,
    excluded_by,
    pays_on,
    price,
)
from commissions.rows import CommissionRow, commission_id
from commissions.state import CommissionState, DealRecord, Level, bump
from commissions.symbols import (
    SymbolGroupLookup,
    SymbolReference,
    default_pip_size,
    default_quote_currency,
    default_symbol_group,
)
from commissions.tree import BEGINNING, PartnerTree, TreeError, utc
from schemas.events import Account, AccountUpdate, Deal
from schemas.identity import account_key_of

EIGHT_DP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class Issue:
    """A deal (or account event) the engine could not price as asked, and why. Drained by the
    dataflow (`drain_issues`) into logs/metrics; nothing is dropped silently."""

    key: str
    version: int
    reason: str


def _month(moment: datetime) -> str:
    """UTC calendar month "YYYY-MM" (times are UTC already)."""
    return f"{moment.year:04d}-{moment.month:02d}"


def _day(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"


class CommissionEngine:
    """Streaming IB commissions for one commissions configuration (one tenant)."""

    def __init__(
        self,
        config: CommissionConfig,
        *,
        rates: RateFunction | None = None,
        symbol_group: SymbolGroupLookup | None = None,
        symbols: SymbolReference | None = None,
        state: CommissionState | None = None,
    ) -> None:
        self.config = config
        # Platforms name an IB by its login (Agent field); the configuration by its id.
        self.agent_ids = {login: ib.id for ib in config.ibs for login in ib.agent_logins}
        self.symbols = symbols
        self.currency = config.currency
        self.rates: RateFunction = rates or FixedRates()
        self.symbol_group = symbol_group
        self.state = state if state is not None else CommissionState()
        self.issues: list[Issue] = []
        self._versions: dict[tuple[str, int], PlanVersion] = {
            (plan.id, v.version): v for plan in config.plans for v in plan.versions
        }
        self._plans = config.plan_index()
        self.tree: PartnerTree = config.build_tree()
        # Run-time changes recorded in the state are applied on top of the configuration.
        for (ib_id, moment), parent in list(self.state.moves.items()):
            try:
                self.tree.move(ib_id, parent, moment)
            except TreeError as exc:
                self.issues.append(Issue(ib_id, 0, f"run-time move not applied: {exc}"))
        for (account_key, moment), ib in list(self.state.assignments.items()):
            try:
                self.tree.assign(account_key, ib, moment)
            except TreeError as exc:
                self.issues.append(Issue(account_key, 0, f"run-time assignment not applied: {exc}"))

    # -- the partner tree at run time ------------------------------------------------------

    def assign(self, account_key: str, ib_id: str | None, effective_from: datetime) -> None:
        """Assign an account to an IB (None: to no IB) from `effective_from`. Deals already
        priced are not re-priced; the assignment applies to deals processed from now on."""
        self.tree.assign(account_key, ib_id, effective_from)
        self.state.assignments[(account_key, utc(effective_from))] = ib_id

    def move(self, ib_id: str, parent: str | None, effective_from: datetime) -> None:
        """Move an IB under another master (None: to the top) from `effective_from`."""
        self.tree.move(ib_id, parent, effective_from)
        self.state.moves[(ib_id, utc(effective_from))] = parent

    def on_account(self, update: AccountUpdate | Account) -> None:
        """Take the IB assignment (Agent field / CRM `ib_assigned`) and the group of an account.

        `agent_from` dates the assignment; without it, an account's first assignment holds from
        the beginning and a change holds from the update's time.
        """
        if update.group:
            self.state.account_groups[update.account_key] = update.group
        agent = update.agent
        if agent is None:
            return
        ib_id = self.agent_ids.get(agent, agent) or None
        known = self.tree.account_link(update.account_key)
        seen_at = update.time if isinstance(update, AccountUpdate) else update.updated_at
        moment = update.agent_from or (seen_at if known else BEGINNING)
        if known and known[-1][1] == ib_id and known[-1][0] <= utc(moment):
            return  # nothing new
        try:
            self.assign(update.account_key, ib_id, moment)
        except TreeError as exc:
            self.issues.append(Issue(update.account_key, update.version, str(exc)))

    # -- deals -----------------------------------------------------------------------------

    def on_deal(
        self,
        deal: Deal,
        account_ib: str | None = None,
        *,
        account_group: str | None = None,
        markup: Decimal | None = None,
    ) -> list[CommissionRow]:
        """The commission rows this deal event produces: reversals of what the previous version
        earned, then rows of other deals of the position whose holding status flipped
        (reversed or restored), then the new version's rows.

        `account_ib`: the direct IB when the dataflow has resolved it (for example from the
        merged account's Agent field); None lets the engine use its effective-dated
        assignments at the deal's time. `account_group`: the account's platform group (for
        excluded account groups); None uses the latest group `on_account` saw. `markup`: the
        deal's own spread markup in price units, when known; None uses the configured one.
        """
        state = self.state
        if deal.tenant != self.config.tenant:
            self._issue(deal, f"tenant {deal.tenant!r} is not this configuration's ({self.config.tenant!r})")
            return []
        old = state.deals.get(deal.deal_key)
        if old is not None and deal.version <= old.version:
            return []  # a replay, a redelivery, or an older version arriving late
        moment = utc(deal.time)
        if old is None and state.pruned_before is not None and moment < state.pruned_before:
            self._issue(deal, "deal older than the retained state (pruned): not applied")
            return []
        caused_by = f"{deal.deal_key}@{deal.version}"
        deleted = deal.is_deleted or deal.event == "delete"
        record = self._record(deal, moment, deleted, account_ib, account_group, markup)
        if old is not None and not deleted and self._same_for_commissions(old, record):
            old.version = deal.version  # e.g. a comment edited: nothing to reverse or re-price
            self._touch([deal.deal_key])
            return []

        rows: list[CommissionRow] = []
        if old is not None:
            rows += self._reverse(old.live_rows, "delete" if deleted else "update", caused_by)
        state.deals[deal.deal_key] = record
        affected: list[tuple[str, str]] = []
        new_key = (record.account_key, record.position_id)
        if old is not None and old.position_id and (deleted or (old.account_key, old.position_id) != new_key):
            old_key = (old.account_key, old.position_id)
            members = state.positions.get(old_key, [])
            if deal.deal_key in members:
                members.remove(deal.deal_key)
            if not members:
                state.positions.pop(old_key, None)
            affected.append(old_key)
        if record.position_id and not deleted:
            members = state.positions.setdefault(new_key, [])
            if deal.deal_key not in members:
                members.append(deal.deal_key)
            if new_key not in affected:
                affected.append(new_key)
        for position in affected:
            rows += self._rehold(position, deal.deal_key, caused_by)
        if not deleted:
            record.blocked = self._holds(record)
            if not record.blocked:
                rows += self._earn(record, "update" if old is not None else "new", caused_by)
        return rows

    def _touch(self, keys: Sequence[str]) -> None:
        """Mark deal records about to change in place, so the next snapshot re-pickles them."""
        deals = self.state.deals
        for key in keys:
            deals[key] = deals[key]

    def drain_issues(self) -> list[Issue]:
        issues, self.issues = self.issues, []
        return issues

    def snapshot(self) -> CommissionState:
        """A deep copy of the state (for recovery); `CommissionEngine(config, state=...)` resumes."""
        return copy.deepcopy(self.state)

    def prune(self, before: datetime) -> None:
        """Forget deals, positions and counters older than `before` (keep at least the longest
        correction horizon, e.g. 90 days). Events for forgotten deals are refused as issues
        instead of being priced again."""
        cut = utc(before)
        state = self.state
        keep_positions = {
            key: members for key, members in state.positions.items()
            if any(state.deals[m].time >= cut for m in members)
        }
        kept_deals = {m for members in keep_positions.values() for m in members}
        state.positions = keep_positions
        state.deals = state.deals.filtered(lambda k, r: r.time >= cut or k in kept_deals)
        month, day = _month(cut), _day(cut)
        state.month_lots = {k: v for k, v in state.month_lots.items() if k[1] >= month}
        state.month_paid = {k: v for k, v in state.month_paid.items() if k[1] >= month}
        state.day_paid = {k: v for k, v in state.day_paid.items() if k[1] >= day}
        state.pruned_before = max(cut, state.pruned_before or cut)

    # -- resolving a deal version ------------------------------------------------------------

    def _record(
        self,
        deal: Deal,
        moment: datetime,
        deleted: bool,
        account_ib: str | None,
        account_group: str | None,
        markup: Decimal | None,
    ) -> DealRecord:
        account_key = account_key_of(deal)
        record = DealRecord(
            deal_key=deal.deal_key, account_key=account_key, version=deal.version, deleted=deleted,
            time=moment, entry=deal.entry, lots=deal.lots, canceled=deal.canceled, login=deal.login,
            position_id=deal.position_id, levels=(), facts=None,
        )
        if deleted:
            return record
        # An explicit account_ib wins ("" = explicitly no IB); None: the effective-dated assignment.
        ib_id = (account_ib or None) if account_ib is not None else self.tree.ib_of(account_key, moment)
        if ib_id is not None:
            try:
                chain = self.tree.chain(ib_id, moment)
            except TreeError as exc:
                self._issue(deal, str(exc))
                chain = []
            record.levels = tuple(self._level(ib.ib_id, moment) for ib in chain)
        symbol = deal.symbol
        conf = self.config.symbols.get(symbol)
        spec = self.symbols.lookup(symbol) if self.symbols is not None else None
        group = (
            (conf.group if conf else None)
            or (self.symbol_group(symbol) if self.symbol_group else None)
            or (spec.asset_class if spec else None)
            or default_symbol_group(symbol)
        )
        if markup is None:
            pip = (conf.pip_size if conf else None) or default_pip_size(symbol) or ZERO
            markup = (conf.markup_pips if conf else ZERO) * pip
        record.facts = DealFacts(
            symbol=symbol,
            group=group,
            account_group=account_group if account_group is not None
            else self.state.account_groups.get(account_key, ""),
            entry=deal.entry,
            lots=deal.lots,
            units=deal.units,
            client_commission=abs(deal.commission),
            account_currency=deal.currency,
            markup=markup,
            quote_currency=(conf.quote_currency if conf else None) or (spec.quote if spec else None)
            or default_quote_currency(symbol),
            time=moment,
        )
        return record

    def _level(self, ib_id: str, moment: datetime) -> Level:
        plan_id = self.tree.plan_of(ib_id, moment)
        version = self._plans[plan_id].at(moment) if plan_id in self._plans else None
        return Level(ib_id, plan_id if version else None, version.version if version else None)

    def _plan(self, level: Level) -> PlanVersion | None:
        if level.plan_id is None or level.plan_version is None:
            return None
        return self._versions.get((level.plan_id, level.plan_version))

    @staticmethod
    def _same_for_commissions(old: DealRecord, new: DealRecord) -> bool:
        return (not old.deleted and old.facts == new.facts and old.levels == new.levels
                and old.position_id == new.position_id and old.canceled == new.canceled
                and old.login == new.login)

    def _not_eligible(self, record: DealRecord) -> str:
        """Why the deal earns nothing for anyone ("" if it can earn)."""
        if record.facts is None or not record.levels:
            return "no IB"
        governing = self._plan(record.levels[0])
        if governing is None:
            return "the direct IB has no plan at the deal's time"
        if record.canceled or record.lots <= 0:
            return "canceled or no volume"
        if not pays_on(governing, record.entry):
            return "round turn: paid on the closing deal"
        return excluded_by(governing, record.facts)

    # -- minimum holding time ----------------------------------------------------------------

    def _min_hold(self, record: DealRecord) -> int:
        governing = self._plan(record.levels[0]) if record.levels else None
        return governing.min_hold_seconds if governing else 0

    def _held_in(self, position: tuple[str, str]) -> dict[str, bool]:
        """Which live deals of a position are held back by the minimum holding time.

        The position opened at its earliest opening (`in`) deal. A closing deal less than the
        governing plan's `min_hold_seconds` after that is *quick*: it earns nothing, and while
        a position has a quick close its opening deals earn nothing either.
        """
        records = [self.state.deals[k] for k in self.state.positions.get(position, [])]
        records = [r for r in records if not r.deleted and not r.canceled and r.lots > 0]
        opens = [r.time for r in records if r.entry == "in"]
        if not opens:
            return {}
        opened = min(opens)
        quick = {
            r.deal_key: (r.time - opened).total_seconds() < self._min_hold(r)
            for r in records if r.entry in CLOSING_ENTRIES
        }
        any_quick = any(quick.values())
        return {r.deal_key: quick.get(r.deal_key, any_quick if r.entry == "in" else False) for r in records}

    def _holds(self, record: DealRecord) -> bool:
        if not record.position_id:
            return False
        return self._held_in((record.account_key, record.position_id)).get(record.deal_key, False)

    def _rehold(self, position: tuple[str, str], skip: str, caused_by: str) -> list[CommissionRow]:
        """Reverse or restore the other deals of a position whose holding status flipped, in
        order of deal time (then deal key)."""
        held = self._held_in(position)
        others = [self.state.deals[k] for k in self.state.positions.get(position, []) if k != skip]
        rows: list[CommissionRow] = []
        for record in sorted(others, key=lambda r: (r.time, r.deal_key)):
            now = held.get(record.deal_key, False)
            if now == record.blocked:
                continue
            self._touch([record.deal_key])
            record.blocked = now
            if now:
                rows += self._reverse(record.live_rows, "min_hold", caused_by)
                record.held_rows, record.live_rows = record.live_rows, []
            elif record.held_rows:
                rows += self._restore(record, caused_by)
            else:
                rows += self._earn(record, "new", caused_by)
        return rows

    # -- rows --------------------------------------------------------------------------------

    def _reverse(self, rows: Sequence[CommissionRow], reason: str, caused_by: str) -> list[CommissionRow]:
        out = []
        for row in rows:
            out.append(row.reversal(reason, caused_by))
            self._count(row.ib_id, row.deal_time, -row.lots, -row.amount)
        return out

    def _count(self, ib_id: str, moment: datetime, lots: Decimal, paid: Decimal) -> None:
        bump(self.state.month_lots, (ib_id, _month(moment)), lots)
        bump(self.state.day_paid, (ib_id, _day(moment)), paid)
        bump(self.state.month_paid, (ib_id, _month(moment)), paid)

    def _cap(
        self, ib_id: str, plan: PlanVersion | None, amount: Decimal, moment: datetime
    ) -> tuple[Decimal, str]:
        """`amount` cut to what the IB's own daily and monthly caps leave (whole minor units)."""
        if plan is None:
            return amount, ""
        capped = ""
        if plan.caps.per_day is not None:
            room = max(ZERO, plan.caps.per_day - self.state.day_paid.get((ib_id, _day(moment)), ZERO))
            if amount > room:
                amount, capped = room, "day"
        if plan.caps.per_month is not None:
            room = max(ZERO, plan.caps.per_month - self.state.month_paid.get((ib_id, _month(moment)), ZERO))
            if amount > room:
                amount, capped = room, "month"
        return amount, capped

    def _earn(self, record: DealRecord, reason: str, caused_by: str) -> list[CommissionRow]:
        """Price a deal version and pay it along its chain."""
        why_not = self._not_eligible(record)
        if why_not or record.facts is None:
            return []
        facts, levels = record.facts, record.levels
        governing = self._plan(levels[0])
        assert governing is not None
        month = _month(facts.time)
        plans = [self._plan(level) for level in levels]
        try:
            usd = usd_rate(self.rates, self.currency, facts.time)
            if governing.distribution == "differential":
                priced = [
                    price(level.plan_id or "", plan, facts,
                          self.state.month_lots.get((level.ib_id, month), ZERO), self.currency, self.rates)
                    if plan is not None else Priced(ZERO, ZERO, 0, False, "no plan")
                    for level, plan in zip(levels, plans, strict=True)
                ]
                split: Split = differential([p.amount for p in priced])
                row_plans = list(levels)
            else:
                pool = price(levels[0].plan_id or "", governing, facts,
                             self.state.month_lots.get((levels[0].ib_id, month), ZERO), self.currency,
                             self.rates)
                priced = [pool] * len(levels)
                split = cascade(pool.amount, [plan.pass_up if plan else ZERO for plan in plans])
                row_plans = [levels[0]] * len(levels)
        except (MissingRate, PricingError) as exc:
            self.issues.append(Issue(record.deal_key, record.version, str(exc)))
            return []
        amounts = split_rounded(split.shares, split.total, self.currency)
        deal_total = round_minor(split.total, self.currency)
        chain = ">".join(level.ib_id for level in reversed(levels))
        revision = record.revision
        rows = []
        for i, level in enumerate(levels):
            exact = split.shares[i]
            amount = amounts[i]
            basis = f"{priced[i].basis}; {split.notes[i]}"
            if amount != exact:
                basis += f"; {_num(exact)} rounded half-even to {_num(round_minor(exact, self.currency))}"
                if amount != round_minor(exact, self.currency):
                    basis += f", less {_num(round_minor(exact, self.currency) - amount)} so the deal's " \
                             f"rows stay within {_num(deal_total)}"
            amount, capped = self._cap(level.ib_id, plans[i], amount, facts.time)
            if capped:
                basis += f"; {capped} cap leaves {_num(amount)}"
            elif priced[i].capped:
                capped = "trade"
            self._count(level.ib_id, facts.time, facts.lots, amount)
            rows.append(CommissionRow(
                commission_id=commission_id(record.deal_key, level.ib_id, i + 1, "earn",
                                            record.version, revision),
                tenant=self.config.tenant,
                deal_key=record.deal_key,
                deal_version=record.version,
                revision=revision,
                account_key=record.account_key,
                login=record.login,
                symbol=facts.symbol,
                symbol_group=facts.group,
                deal_time=facts.time,
                ib_id=level.ib_id,
                tier=i + 1,
                tier_chain=chain,
                plan_id=row_plans[i].plan_id or "",
                plan_version=row_plans[i].plan_version or 0,
                distribution=governing.distribution,
                volume_tier=priced[i].volume_tier,
                lots=facts.lots,
                rate=priced[i].rate,
                markup=facts.markup,
                client_commission=facts.client_commission,
                gross=exact.quantize(EIGHT_DP),
                deal_total=deal_total,
                amount=amount,
                currency=self.currency,
                amount_usd=to_usd(amount, usd),
                capped=capped,
                basis=basis,
                kind="earn",
                reverses="",
                reason=reason,
                caused_by=caused_by,
            ))
        record.live_rows = rows
        record.revision = revision + 1
        return rows

    def _restore(self, record: DealRecord, caused_by: str) -> list[CommissionRow]:
        """Pay held-back rows again, as they were (within the caps as they stand now)."""
        revision = record.revision
        plans = {i + 1: self._plan(level) for i, level in enumerate(record.levels)}
        rows = []
        for row in record.held_rows:
            amount, capped = self._cap(row.ib_id, plans.get(row.tier), row.amount, row.deal_time)
            usd = row.amount_usd if amount == row.amount else to_usd(
                amount, usd_rate(self.rates, self.currency, row.deal_time))
            self._count(row.ib_id, row.deal_time, row.lots, amount)
            rows.append(replace(
                row,
                commission_id=commission_id(row.deal_key, row.ib_id, row.tier, "earn", row.deal_version,
                                            revision),
                revision=revision,
                amount=amount,
                amount_usd=usd,
                capped=capped or row.capped,
                basis=row.basis + (f"; restored, {capped} cap leaves {_num(amount)}" if capped
                                   else "; restored"),
                kind="earn",
                reverses="",
                reason="restored",
                caused_by=caused_by,
            ))
        record.live_rows, record.held_rows = rows, []
        record.revision = revision + 1
        return rows

    def _issue(self, deal: Deal, reason: str) -> None:
        self.issues.append(Issue(deal.deal_key, deal.version, reason))



class CommissionStep:
    """The engine as a Bytewax `stateful_map` mapper, keyed by tenant:

        step = CommissionStep({"acme": load_commissions("acme.yaml")}, rates=rates)
        rows = op.stateful_map("ib_commissions", events_keyed_by_tenant, step)

    Each event is a `Deal` (priced) or an `AccountUpdate` / `Account` (IB assignment and
    group). The state is the tenant's `CommissionState`; after a resume Bytewax hands back an
    unpickled copy and the step rebuilds the tenant's engine around it. Output: the rows, then
    any `Issue`s.
    """

    def __init__(
        self,
        configs: dict[str, CommissionConfig],
        *,
        rates: RateFunction | None = None,
        symbol_group: SymbolGroupLookup | None = None,
        symbols: SymbolReference | None = None,
        keep: timedelta | None = None,
    ) -> None:
        self.configs = configs
        self.rates = rates
        self.symbol_group = symbol_group
        self.symbols = symbols
        # deals (and the rows each earned) older than this leave the state: a later correction
        # of one is an Issue ("pruned: not applied"), never a silent change. None: kept forever.
        self.keep = keep
        self.engines: dict[str, CommissionEngine] = {}

    def _prune(self, engine: CommissionEngine, now: datetime) -> None:
        """Forget what is older than `keep`, in steps of a tenth of it (from event time only, so
        a replay prunes at the same points)."""
        if self.keep is None:
            return
        cut = utc(now) - self.keep
        if engine.state.pruned_before is None or cut >= engine.state.pruned_before + self.keep / 10:
            engine.prune(cut)

    def __call__(
        self, state: CommissionState | None, event: Deal | AccountUpdate | Account
    ) -> tuple[CommissionState | None, list[CommissionRow | Issue]]:
        config = self.configs.get(event.tenant)
        if config is None:
            key = event.deal_key if isinstance(event, Deal) else event.account_key
            reason = f"no commissions configuration for tenant {event.tenant!r}"
            return state, [Issue(key, event.version, reason)]
        engine = self.engines.get(event.tenant)
        if engine is None or state is not engine.state:  # first event, or resumed from a snapshot
            engine = CommissionEngine(config, rates=self.rates, symbol_group=self.symbol_group,
                                      symbols=self.symbols, state=state)
            self.engines[event.tenant] = engine
        out: list[CommissionRow | Issue] = []
        if isinstance(event, Deal):
            out += engine.on_deal(event)
            self._prune(engine, event.time)
        else:
            engine.on_account(event)
        out += engine.drain_issues()
        return engine.state, out
