"""An independent batch computation (polars) of the IB commission rows a sequence of deal
events must produce. It shares no code with the engine: it reads the validated configuration
(`commissions.config.CommissionConfig`, plain data) and re-derives everything from the rules
in docs/commissions.md, in a different way:

- effective-dated links (accounts, masters, plans, plan versions) are as-of joins;
- the minimum holding time is recomputed from scratch, for every event, over the whole
  position as it stands after that event (a cross join), instead of being maintained;
- each IB's lots this month are a running sum over the ordered operations;
- per-lot rates at each volume tier are a join against a precomputed rate table;
- the differential split is a running maximum, rounding is polars' half-to-even, and the
  "never above the plan total" adjustment is a ranking;
- only what is truly sequential is a loop: each deal's own earn / reverse / restore life
  cycle, and the daily/monthly caps (a bounded running total that reversals give back).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

import polars as pl

from commissions.config import CommissionConfig
from schemas.events import Deal
from schemas.identity import account_key_of

DEC = pl.Decimal(38, 20)
START = datetime(1970, 1, 1, tzinfo=UTC)  # "from the beginning"
CLOSING = ("out", "out_by", "inout")
ISO = {
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "CHF",
    "AUD",
    "CAD",
    "NZD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "CZK",
    "HUF",
    "TRY",
    "ZAR",
    "MXN",
    "SGD",
    "HKD",
    "CNH",
    "RUB",
    "ILS",
    "THB",
    "INR",
    "BRL",
    "KRW",
}
NO_MINOR = {"JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3}
ZERO = Decimal(0)


def d(value: object) -> Decimal:
    return Decimal(str(value))


# -- configuration as tables --------------------------------------------------------------


@dataclass
class Tables:
    assignments: pl.DataFrame  # account, from, ib
    parents: pl.DataFrame  # ib, from, parent
    plan_links: pl.DataFrame  # ib, from, plan
    versions: pl.DataFrame  # plan_id, from, version
    rates: pl.DataFrame  # plan_id, version, tier, group, rate
    plan: dict[tuple[str, int], Any]  # (plan_id, version) -> PlanVersion (plain data)


def _last_per(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        out[tuple(row[k] for k in keys)] = row
    return list(out.values())


def tables(config: CommissionConfig) -> Tables:
    assign = _last_per(
        [{"account": a.account, "from": a.effective_from, "ib": a.ib} for a in config.accounts],
        ("account", "from"),
    )
    parents: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    for ib in config.ibs:
        if ib.parent is not None:
            parents.append({"ib": ib.id, "from": START, "parent": ib.parent})
        if ib.plan is not None:
            plans.append({"ib": ib.id, "from": START, "plan": ib.plan})
        for change in ib.changes:
            if "parent" in change.model_fields_set:
                parents.append({"ib": ib.id, "from": change.effective_from, "parent": change.parent})
            if "plan" in change.model_fields_set:
                plans.append({"ib": ib.id, "from": change.effective_from, "plan": change.plan})
    versions, rates, plan = [], [], {}
    for p in config.plans:
        for v in p.versions:
            versions.append({"plan_id": p.id, "from": v.effective_from, "version": v.version})
            plan[(p.id, v.version)] = v
            groups = set(v.per_lot) | {g for t in v.volume_tiers for g in t.per_lot}
            for tier in range(len(v.volume_tiers) + 1):
                for group in groups:
                    rate = v.per_lot.get(group, ZERO)
                    for step in v.volume_tiers[:tier]:
                        rate = step.per_lot.get(group, rate)
                    rates.append(
                        {"plan_id": p.id, "version": v.version, "tier": tier, "group": group, "rate": rate}
                    )

    def frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
        return (
            pl.DataFrame(rows, schema=schema).sort("from")
            if "from" in schema
            else pl.DataFrame(rows, schema=schema)
        )

    when = pl.Datetime("us", "UTC")
    return Tables(
        assignments=frame(assign, {"account": pl.String, "from": when, "ib": pl.String}),
        parents=frame(
            _last_per(parents, ("ib", "from")), {"ib": pl.String, "from": when, "parent": pl.String}
        ),
        plan_links=frame(
            _last_per(plans, ("ib", "from")), {"ib": pl.String, "from": when, "plan": pl.String}
        ),
        versions=frame(versions, {"plan_id": pl.String, "from": when, "version": pl.Int64}),
        rates=pl.DataFrame(
            rates,
            schema={
                "plan_id": pl.String,
                "version": pl.Int64,
                "tier": pl.Int64,
                "group": pl.String,
                "rate": DEC,
            },
        ),
        plan=plan,
    )


# -- events --------------------------------------------------------------------------------


def events_frame(
    events: Sequence[Deal], config: CommissionConfig, groups: dict[str, str], account_groups: dict[str, str]
) -> pl.DataFrame:
    rows = []
    for seq, e in enumerate(events):
        account = account_key_of(e)
        sym = config.symbols.get(e.symbol)
        fx = len(e.symbol) == 6 and e.symbol[:3] in ISO and e.symbol[3:] in ISO
        pip = (sym.pip_size if sym and sym.pip_size else None) or (
            (Decimal("0.01") if e.symbol.endswith("JPY") else Decimal("0.0001")) if fx else ZERO
        )
        rows.append(
            {
                "seq": seq,
                "deal_key": e.deal_key,
                "version": e.version,
                "tenant": e.tenant,
                "deleted": e.is_deleted or e.event == "delete",
                "time": e.time.astimezone(UTC),
                "account": account,
                "login": e.login,
                "position": f"{account}#{e.position_id}" if e.position_id else None,
                "entry": e.entry,
                "lots": e.lots,
                "units": e.units,
                "canceled": e.canceled,
                "symbol": e.symbol,
                "group": (sym.group if sym and sym.group else None) or groups[e.symbol],
                "account_group": account_groups.get(account, ""),
                "commission": abs(e.commission),
                "currency": e.currency,
                "markup": (sym.markup_pips if sym else ZERO) * pip,
                "quote": (sym.quote_currency if sym and sym.quote_currency else None)
                or (e.symbol[-3:] if len(e.symbol) >= 6 else None),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "seq": pl.Int64,
            "deal_key": pl.String,
            "version": pl.Int64,
            "tenant": pl.String,
            "deleted": pl.Boolean,
            "time": pl.Datetime("us", "UTC"),
            "account": pl.String,
            "login": pl.Int64,
            "position": pl.String,
            "entry": pl.String,
            "lots": DEC,
            "units": DEC,
            "canceled": pl.Boolean,
            "symbol": pl.String,
            "group": pl.String,
            "account_group": pl.String,
            "commission": DEC,
            "currency": pl.String,
            "markup": DEC,
            "quote": pl.String,
        },
    )


def chains(ev: pl.DataFrame, t: Tables, depth: int) -> pl.DataFrame:
    """(seq, level, ib, plan_id, plan_version) for every event, level 1 = direct IB."""
    direct = (
        ev.select("seq", "account", "time")
        .sort("time")
        .join_asof(
            t.assignments.rename({"from": "time"}),
            on="time",
            by="account",
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("ib").is_not_null())
        .select("seq", "time", pl.lit(1).alias("level"), "ib")
    )
    levels = [direct]
    current = direct
    for _ in range(depth):
        up = (
            current.sort("time")
            .join_asof(
                t.parents.rename({"from": "time"}),
                on="time",
                by="ib",
                strategy="backward",
                check_sortedness=False,
            )
            .filter(pl.col("parent").is_not_null())
            .select("seq", "time", (pl.col("level") + 1).alias("level"), pl.col("parent").alias("ib"))
        )
        if up.is_empty():
            break
        levels.append(up)
        current = up
    out = pl.concat(levels).sort("time")
    out = out.join_asof(
        t.plan_links.rename({"from": "time"}), on="time", by="ib", strategy="backward", check_sortedness=False
    )
    out = (
        out.rename({"plan": "plan_id"})
        .sort("time")
        .join_asof(
            t.versions.rename({"from": "time"}),
            on="time",
            by="plan_id",
            strategy="backward",
            check_sortedness=False,
        )
        .rename({"version": "plan_version"})
    )
    out = out.with_columns(
        pl.when(pl.col("plan_version").is_null()).then(None).otherwise(pl.col("plan_id")).alias("plan_id")
    )
    return out.select("seq", "level", "ib", "plan_id", "plan_version").sort("seq", "level")


# -- the computation ------------------------------------------------------------------------


def commission_rows(
    config: CommissionConfig,
    events: Sequence[Deal],
    *,
    rates: dict[str, Decimal],
    groups: dict[str, str],
    account_groups: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    t = tables(config)
    usd = {k.upper(): d(v) for k, v in rates.items()} | {"USD": Decimal(1)}
    payout = config.currency
    minor = NO_MINOR.get(payout, 2)
    unit = Decimal(1).scaleb(-minor)
    ev = events_frame(events, config, groups, account_groups or {})
    ev = ev.filter(pl.col("tenant") == config.tenant)

    # 1. Accepted events: newer than every earlier version of the same deal.
    ev = ev.sort("seq").with_columns(pl.col("version").cum_max().shift(1).over("deal_key").alias("prev_max"))
    acc = ev.filter(pl.col("prev_max").is_null() | (pl.col("version") > pl.col("prev_max"))).drop("prev_max")

    # 2. The chain of every (non-deleted) accepted event at its time.
    lv = chains(acc.filter(~pl.col("deleted")), t, len(config.ibs))
    chain_key = lv.group_by("seq").agg(
        pl.concat_str(
            [
                pl.col("ib"),
                pl.col("plan_id").fill_null("-"),
                pl.col("plan_version").cast(pl.String).fill_null("-"),
            ],
            separator=":",
        )
        .sort_by("level")
        .str.join(",")
        .alias("chain_key")
    )
    acc = acc.join(chain_key, on="seq", how="left").with_columns(pl.col("chain_key").fill_null(""))

    # 3. Updates that change nothing commissions depend on only advance the version.
    same = [
        "symbol",
        "group",
        "account_group",
        "entry",
        "lots",
        "units",
        "commission",
        "currency",
        "markup",
        "quote",
        "time",
        "chain_key",
        "position",
        "canceled",
        "login",
    ]
    acc = acc.sort("seq").with_columns(
        [pl.col(c).shift(1).over("deal_key").alias(f"prev_{c}") for c in [*same, "deleted"]]
        + [pl.col("seq").shift(1).over("deal_key").alias("prev_seq")]
    )
    noop = ~pl.col("deleted") & pl.col("prev_seq").is_not_null() & ~pl.col("prev_deleted").fill_null(True)
    for c in same:
        noop = noop & pl.col(c).eq_missing(pl.col(f"prev_{c}"))
    acc = acc.with_columns(noop.alias("noop"))
    had_record = set(acc.filter(pl.col("prev_seq").is_not_null())["seq"].to_list())
    inc = acc.filter(~pl.col("noop")).drop([c for c in acc.columns if c.startswith("prev_")] + ["noop"])
    inc = inc.with_columns(pl.col("position").shift(1).over("deal_key", order_by="seq").alias("old_position"))

    levels_of: dict[int, list[dict[str, Any]]] = {}
    for row in lv.iter_rows(named=True):
        levels_of.setdefault(row["seq"], []).append(row)
    info = {row["seq"]: row for row in inc.iter_rows(named=True)}

    def governing(seq: int) -> Any:
        levels = levels_of.get(seq, [])
        if not levels or levels[0]["plan_id"] is None:
            return None
        return t.plan.get((levels[0]["plan_id"], levels[0]["plan_version"]))

    def excluded(plan: Any, row: dict[str, Any]) -> bool:
        ex = plan.exclude
        return (
            any(fnmatchcase(row["symbol"], p) for p in ex.symbols)
            or row["group"] in ex.symbol_groups
            or (bool(row["account_group"])
            and any(fnmatchcase(row["account_group"], p) for p in ex.account_groups))
        )

    def eligible(seq: int) -> bool:
        row, plan = info[seq], governing(seq)
        if row["deleted"] or plan is None or row["canceled"] or row["lots"] <= 0:
            return False
        if plan.charge == "round_turn" and row["entry"] not in CLOSING:
            return False
        return not excluded(plan, row)

    min_hold = {seq: (governing(seq).min_hold_seconds if governing(seq) else 0) for seq in info}
    inc = inc.with_columns(pl.col("seq").replace_strict(min_hold, return_dtype=pl.Int64).alias("min_hold"))

    # 4. Positions touched by each event (its old position first, then its new one).
    touched = []
    for row in inc.iter_rows(named=True):
        old, new = row["old_position"], None if row["deleted"] else row["position"]
        if old is not None and old != new:
            touched.append(
                {"step": row["seq"], "position": old, "pos_order": 0, "event_deal": row["deal_key"]}
            )
        if new is not None:
            touched.append(
                {"step": row["seq"], "position": new, "pos_order": 1, "event_deal": row["deal_key"]}
            )
    steps = pl.DataFrame(
        touched,
        schema={"step": pl.Int64, "position": pl.String, "pos_order": pl.Int64, "event_deal": pl.String},
    )

    # 5. Each touched position as it stands after the event, recomputed from scratch: the latest
    #    incarnation of every deal that was ever in it, if it is (still) there and not deleted.
    ever = inc.filter(pl.col("position").is_not_null()).select("position", "deal_key").unique()
    cand = ever.join(
        inc.select(
            pl.col("deal_key"), pl.col("seq").alias("cand_seq"), pl.col("position").alias("cand_position")
        ),
        on="deal_key",
    )
    members = (
        steps.join(cand, on="position")
        .filter(pl.col("cand_seq") <= pl.col("step"))
        .sort("cand_seq")
        .group_by("step", "position", "deal_key")
        .last()
        .filter(pl.col("cand_position") == pl.col("position"))
        .join(
            inc.select(
                pl.col("seq").alias("cand_seq"), "deleted", "canceled", "lots", "entry", "time", "min_hold"
            ),
            on="cand_seq",
        )
        .filter(~pl.col("deleted"))
    )
    counted = ~pl.col("canceled") & (pl.col("lots") > 0)
    members = members.with_columns(counted.alias("counted")).with_columns(
        pl.col("time")
        .filter(pl.col("counted") & (pl.col("entry") == "in"))
        .min()
        .over("step", "position")
        .alias("opened")
    )
    quick = (
        pl.col("counted")
        & pl.col("entry").is_in(CLOSING)
        & pl.col("opened").is_not_null()
        & ((pl.col("time") - pl.col("opened")).dt.total_milliseconds() < pl.col("min_hold") * 1000)
    )
    members = members.with_columns(quick.alias("quick")).with_columns(
        pl.col("quick").any().over("step", "position").alias("any_quick")
    )
    members = members.with_columns(
        (
            pl.col("counted")
            & pl.col("opened").is_not_null()
            & pl.when(pl.col("entry").is_in(CLOSING))
            .then(pl.col("quick"))
            .when(pl.col("entry") == "in")
            .then(pl.col("any_quick"))
            .otherwise(False)
        ).alias("held")
    )
    held_rows = members.join(
        steps.select("step", "position", "pos_order", "event_deal"), on=["step", "position"]
    )

    # 6. Evaluations: each deal at its own events, and when another deal touches its position.
    evals: dict[str, list[tuple[Any, ...]]] = {}
    own_held = {
        (r["step"], r["deal_key"]): r["held"]
        for r in held_rows.iter_rows(named=True)
        if r["deal_key"] == r["event_deal"]
    }
    for row in inc.iter_rows(named=True):
        flag = own_held.get((row["seq"], row["deal_key"]), False) if not row["deleted"] else False
        evals.setdefault(row["deal_key"], []).append((row["seq"], "own", flag, row["seq"], 0, row["time"]))
    for r in held_rows.filter(pl.col("deal_key") != pl.col("event_deal")).iter_rows(named=True):
        evals.setdefault(r["deal_key"], []).append(
            (r["step"], "other", r["held"], r["cand_seq"], r["pos_order"], r["time"])
        )

    # 7. Each deal's life cycle -> ordered operations.
    ops: list[dict[str, Any]] = []
    for deal_key, items in evals.items():
        live: tuple[str, int, int, int] | None = None  # (deal_key, version, revision, incarnation seq)
        held: tuple[str, int, int, int] | None = None
        flag, next_rev = False, 0
        for step, kind, now, inc_seq, pos_order, when in sorted(items, key=lambda x: x[0]):
            event = info[step]
            caused = f"{event['deal_key']}@{event['version']}"
            if kind == "own":
                order = (step, 0, 0, START, "")
                if live is not None:
                    ops.append(
                        {
                            "order": order,
                            "op": "reverse",
                            "gen": live,
                            "reason": "delete" if event["deleted"] else "update",
                            "caused_by": caused,
                        }
                    )
                    live = None
                held, flag, next_rev = None, now, 0
                if not event["deleted"] and not now and eligible(step):
                    live = (deal_key, event["version"], 0, step)
                    next_rev = 1
                    ops.append(
                        {
                            "order": (step, 2, 0, START, ""),
                            "op": "earn",
                            "gen": live,
                            "reason": "update" if step in had_record else "new",
                            "caused_by": caused,
                        }
                    )
                continue
            if now == flag:
                continue
            flag = now
            order = (step, 1, pos_order, when, deal_key)
            if now and live is not None:
                ops.append(
                    {"order": order, "op": "reverse", "gen": live, "reason": "min_hold", "caused_by": caused}
                )
                held, live = live, None
            elif not now and held is not None:
                live = (deal_key, held[1], next_rev, held[3])
                ops.append(
                    {
                        "order": order,
                        "op": "restore",
                        "gen": live,
                        "from": held,
                        "reason": "restored",
                        "caused_by": caused,
                    }
                )
                held, next_rev = None, next_rev + 1
            elif not now and eligible(inc_seq):
                live = (deal_key, info[inc_seq]["version"], next_rev, inc_seq)
                ops.append({"order": order, "op": "earn", "gen": live, "reason": "new", "caused_by": caused})
                next_rev += 1
    ops.sort(key=lambda o: o["order"])
    if not ops:
        return []

    # 8. One line per operation and level; each IB's lots this month before each operation.
    lines = []
    for idx, o in enumerate(ops):
        seq = o["gen"][3]
        e = info[seq]
        sign = Decimal(-1) if o["op"] == "reverse" else Decimal(1)
        for lvl in levels_of[seq]:
            lines.append(
                {
                    "op_idx": idx,
                    "op": o["op"],
                    "seq": seq,
                    "level": lvl["level"],
                    "ib": lvl["ib"],
                    "own_plan": lvl["plan_id"],
                    "own_version": lvl["plan_version"],
                    "month": e["time"].strftime("%Y-%m"),
                    "day": e["time"].strftime("%Y-%m-%d"),
                    "delta": sign * e["lots"],
                }
            )
    li = pl.DataFrame(
        lines,
        schema={
            "op_idx": pl.Int64,
            "op": pl.String,
            "seq": pl.Int64,
            "level": pl.Int64,
            "ib": pl.String,
            "own_plan": pl.String,
            "own_version": pl.Int64,
            "month": pl.String,
            "day": pl.String,
            "delta": DEC,
        },
    )
    li = li.sort("op_idx", "level").with_columns(
        (pl.col("delta").cum_sum().over("ib", "month") - pl.col("delta")).alias("lots_before")
    )

    # 9. Price fresh earns: which plan prices each level, at which tier, at what rate.
    earn = li.filter(pl.col("op") == "earn").join(
        inc.select(
            "seq",
            "lots",
            "units",
            "group",
            "symbol",
            "account_group",
            "commission",
            "currency",
            "markup",
            "quote",
        ),
        on="seq",
    )
    gov = {seq: governing(seq) for seq in earn["seq"].unique().to_list()}
    model = {seq: plan.distribution for seq, plan in gov.items()}
    earn = earn.with_columns(pl.col("seq").replace_strict(model, return_dtype=pl.String).alias("model"))
    # differential: each level prices with its own plan; cascade: level 1's plan prices the pool
    earn = earn.with_columns(
        pl.when(pl.col("model") == "cascade")
        .then(pl.col("own_plan").first().over("op_idx"))
        .otherwise(pl.col("own_plan"))
        .alias("plan_id"),
        pl.when(pl.col("model") == "cascade")
        .then(pl.col("own_version").first().over("op_idx"))
        .otherwise(pl.col("own_version"))
        .alias("plan_version"),
        pl.when(pl.col("model") == "cascade")
        .then(pl.col("lots_before").first().over("op_idx"))
        .otherwise(pl.col("lots_before"))
        .alias("pricing_lots"),
    )
    params = []
    for (plan_id, version), v in t.plan.items():
        params.append(
            {
                "plan_id": plan_id,
                "plan_version": version,
                "markup_share": v.markup_share,
                "commission_share": v.commission_share,
                "flat": v.flat_per_trade,
                "per_trade": v.caps.per_trade,
                "pass_up": v.pass_up,
                "tier_from": [step.from_lots for step in v.volume_tiers],
            }
        )
    pp = pl.DataFrame(
        params,
        schema={
            "plan_id": pl.String,
            "plan_version": pl.Int64,
            "markup_share": DEC,
            "commission_share": DEC,
            "flat": DEC,
            "per_trade": DEC,
            "pass_up": DEC,
            "tier_from": pl.List(DEC),
        },
    )
    earn = earn.join(pp, on=["plan_id", "plan_version"], how="left")
    # the volume tier reached: how many thresholds the IB's lots so far have passed
    tiers = (
        earn.select("op_idx", "level", "pricing_lots", "tier_from")
        .explode("tier_from")
        .group_by("op_idx", "level")
        .agg(
            (pl.col("tier_from").is_not_null() & (pl.col("pricing_lots") >= pl.col("tier_from")))
            .sum()
            .cast(pl.Int64)
            .alias("tier")
        )
    )
    earn = (
        earn.join(tiers, on=["op_idx", "level"], how="left")  # no thresholds at all: tier 0
        .with_columns(pl.col("tier").fill_null(0))
        .sort("op_idx", "level")
    )
    earn = earn.join(
        t.rates.rename({"version": "plan_version"}),
        on=["plan_id", "plan_version", "tier", "group"],
        how="left",
    ).with_columns(pl.col("rate").fill_null(Decimal(0)))
    excl = []
    for row in earn.select(
        "op_idx", "level", "plan_id", "plan_version", "symbol", "group", "account_group"
    ).iter_rows(named=True):
        plan = t.plan.get((row["plan_id"], row["plan_version"])) if row["plan_id"] else None
        excl.append(
            {"op_idx": row["op_idx"], "level": row["level"], "excluded": plan is None or excluded(plan, row)}
        )
    earn = earn.join(
        pl.DataFrame(excl, schema={"op_idx": pl.Int64, "level": pl.Int64, "excluded": pl.Boolean}),
        on=["op_idx", "level"],
        how="left",
    )
    to_payout = {c: usd[c] / usd[payout] for c in usd}
    earn = earn.with_columns(
        pl.col("quote").replace_strict(to_payout, default=None, return_dtype=DEC).alias("q_conv"),
        pl.col("currency").replace_strict(to_payout, default=None, return_dtype=DEC).alias("c_conv"),
    )
    dec0 = pl.lit(Decimal(0)).cast(DEC)
    amount_expr = (
        pl.col("rate") * pl.col("lots")
        + pl.col("markup_share") * pl.col("markup") * pl.col("units") * pl.col("q_conv").fill_null(dec0)
        + pl.col("commission_share") * pl.col("commission") * pl.col("c_conv")
        + pl.col("flat")
    )
    earn = earn.with_columns(
        pl.when(pl.col("excluded")).then(dec0).otherwise(amount_expr).alias("raw"),
        pl.when(pl.col("excluded")).then(dec0).otherwise(pl.col("rate")).alias("rate"),
        pl.when(pl.col("excluded")).then(0).otherwise(pl.col("tier")).alias("tier"),
    ).with_columns(
        pl.when(pl.col("per_trade").is_not_null() & (pl.col("raw") > pl.col("per_trade")))
        .then(pl.col("per_trade"))
        .otherwise(pl.col("raw"))
        .alias("priced")
    )

    # 10. Split. Differential: running maximum below; cascade: pass-up products per level.
    earn = earn.sort("op_idx", "level").with_columns(pl.col("priced").last().over("op_idx").alias("budget"))
    own = pl.min_horizontal("priced", "budget")
    earn = earn.with_columns(own.alias("own")).with_columns(
        pl.col("own").cum_max().shift(1).over("op_idx").fill_null(dec0).alias("covered")
    )
    earn = earn.with_columns(pl.max_horizontal(dec0, pl.col("own") - pl.col("covered")).alias("diff_share"))
    pass_up = {}
    for row in earn.select("op_idx", "level", "own_plan", "own_version").iter_rows(named=True):
        plan = t.plan.get((row["own_plan"], row["own_version"])) if row["own_plan"] else None
        pass_up[(row["op_idx"], row["level"])] = plan.pass_up if plan else ZERO
    cascade_share = []
    for op_idx, group in earn.filter(pl.col("model") == "cascade").group_by("op_idx"):
        group = group.sort("level")
        received = group["priced"][0]
        top = group["level"].max()
        for level in group["level"].to_list():
            up = ZERO if level == top else pass_up[(op_idx[0], level)]
            cascade_share.append(
                {"op_idx": op_idx[0], "level": level, "cascade_share": received - received * up}
            )
            received = received * up
    earn = earn.join(
        pl.DataFrame(cascade_share, schema={"op_idx": pl.Int64, "level": pl.Int64, "cascade_share": DEC}),
        on=["op_idx", "level"],
        how="left",
    )
    earn = earn.with_columns(
        pl.when(pl.col("model") == "cascade")
        .then(pl.col("cascade_share"))
        .otherwise(pl.col("diff_share"))
        .alias("share"),
        pl.when(pl.col("model") == "cascade")
        .then(pl.col("priced").first().over("op_idx"))
        .otherwise(pl.col("budget"))
        .alias("total"),
    ).sort("op_idx", "level")

    # 11. Round half-even per row; take cents back from the most rounded-up rows if over the total.
    earn = earn.with_columns(
        pl.col("share").round(minor).alias("rounded"), pl.col("total").round(minor).alias("deal_total")
    )
    earn = earn.with_columns((pl.col("rounded") - pl.col("share")).alias("err")).with_columns(
        ((pl.col("rounded").sum().over("op_idx") - pl.col("deal_total")) / pl.lit(unit).cast(DEC))
        .round(0)
        .cast(pl.Int64)
        .alias("excess"),
        pl.struct(pl.col("err"), pl.col("level"))
        .rank("ordinal", descending=True)
        .over("op_idx")
        .alias("pick"),
    )
    earn = earn.with_columns(
        pl.when((pl.col("excess") > 0) & (pl.col("err") > 0) & (pl.col("pick") <= pl.col("excess")))
        .then(pl.col("rounded") - pl.lit(unit).cast(DEC))
        .otherwise(pl.col("rounded"))
        .alias("amount")
    )
    priced_lines = {(r["op_idx"], r["level"]): r for r in earn.iter_rows(named=True)}

    # 12. Caps, in operation order (a running total per IB and day/month; reversals give back).
    day_used: dict[tuple[str, str], Decimal] = {}
    month_used: dict[tuple[str, str], Decimal] = {}
    paid: dict[tuple[Any, ...], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []

    def cap(line: dict[str, Any], amount: Decimal) -> Decimal:
        plan = t.plan.get((line["own_plan"], line["own_version"])) if line["own_plan"] else None
        if plan is None:
            return amount
        if plan.caps.per_day is not None:
            amount = min(amount, max(ZERO, plan.caps.per_day - day_used.get((line["ib"], line["day"]), ZERO)))
        if plan.caps.per_month is not None:
            amount = min(
                amount, max(ZERO, plan.caps.per_month - month_used.get((line["ib"], line["month"]), ZERO))
            )
        return amount

    def use(line: dict[str, Any], amount: Decimal) -> None:
        day_used[(line["ib"], line["day"])] = day_used.get((line["ib"], line["day"]), ZERO) + amount
        month_used[(line["ib"], line["month"])] = month_used.get((line["ib"], line["month"]), ZERO) + amount

    def cid(gen: tuple[str, int, int, int], ib: str, tier: int, kind: str) -> str:
        return f"{gen[0]}|{ib}|{tier}|{kind}|v{gen[1]}" + (f"|r{gen[2]}" if gen[2] else "")

    for line in li.iter_rows(named=True):
        o = ops[line["op_idx"]]
        gen, tier = o["gen"], line["level"]
        chain = ">".join(lvl["ib"] for lvl in reversed(levels_of[gen[3]]))
        if o["op"] == "earn":
            p = priced_lines[(line["op_idx"], tier)]
            amount = cap(line, Decimal(p["amount"]))
            row = {
                "commission_id": cid(gen, line["ib"], tier, "earn"),
                "deal_key": gen[0],
                "ib_id": line["ib"],
                "tier": tier,
                "kind": "earn",
                "amount": amount,
                "reverses": "",
                "reason": o["reason"],
                "caused_by": o["caused_by"],
                "plan_id": p["plan_id"] or "",
                "plan_version": p["plan_version"] or 0,
                "volume_tier": p["tier"],
                "deal_total": Decimal(p["deal_total"]),
                "tier_chain": chain,
                "deal_version": gen[1],
                "revision": gen[2],
            }
        elif o["op"] == "restore":
            before = paid[(*o["from"][:3], tier)]
            amount = cap(line, before["amount"])
            row = before | {
                "commission_id": cid(gen, line["ib"], tier, "earn"),
                "amount": amount,
                "reason": "restored",
                "caused_by": o["caused_by"],
                "revision": gen[2],
            }
        else:
            before = paid[(*gen[:3], tier)]
            amount = -before["amount"]
            row = before | {
                "commission_id": cid(gen, line["ib"], tier, "reversal"),
                "kind": "reversal",
                "amount": amount,
                "reverses": before["commission_id"],
                "reason": o["reason"],
                "caused_by": o["caused_by"],
            }
        use(line, amount)
        if row["kind"] == "earn":
            paid[(*gen[:3], tier)] = row
        out.append(row)
    return out
