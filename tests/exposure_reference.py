"""An independent batch computation (polars) of open positions, net exposure and floating P&L
from a list of deals and the quotes seen. It shares no code with `risk_rules.exposure`: only the
rules of the data contract and of position keeping.

- facts: the latest version of each deal_key; deleted and canceled deals left out;
- hedging accounts: a position per position id; its open price is the volume-weighted price of
  its IN deals (hedged positions are never increased after they open);
- netting accounts: a position per symbol; an episode starts when the running net leaves zero
  or changes sign (INOUT); its open price is the volume-weighted price of what opened it: the
  whole volume of deals from flat or in its direction, the remainder of a reversal. (Exact for
  average cost while no volume is added after a reduction, which the test data respects.)
- marks: the last bid and ask per server and symbol (a quote leaving a side out keeps the
  previous one); longs at bid, shorts at ask; mid = (bid + ask) / 2;
- USD: a quote currency C converts at mid of CUSD, or 1 / mid of USDC, quoted on any server
  (the last of each side).
- the cash-flow identity: for every position, -sum(signed units x price) + net units x mark
  over its current episode (netting: since it last opened from flat or reversed) is what that
  episode made (closed and open), whatever the cost method.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import polars as pl

from schemas.events import Deal, Quote

DEC = pl.Decimal(38, 12)
ENTRY_RANK = {"in": 0, "inout": 1, "out": 2, "out_by": 2}
DEAL_COLUMNS = ["deal_key", "deal_id", "tenant", "platform", "server", "login", "position_id", "symbol",
                "side", "entry", "lots", "units", "price", "profit", "swap", "commission", "fee", "canceled",
                "time", "version", "is_deleted"]


def deals_frame(deals: Iterable[Deal]) -> pl.DataFrame:
    """Deals (canonical records, any version) as a frame."""
    rows = [{c: getattr(d, c) for c in DEAL_COLUMNS} for d in deals]
    schema: dict[str, pl.DataType] = {c: pl.String() for c in DEAL_COLUMNS} | {
        "login": pl.Int64(), "lots": DEC, "units": DEC, "price": DEC, "profit": DEC, "swap": DEC,
        "commission": DEC, "fee": DEC, "canceled": pl.Boolean(), "time": pl.Datetime("us", "UTC"),
        "version": pl.Int64(), "is_deleted": pl.Boolean(),
    }
    return pl.DataFrame(rows, schema=schema)


def quotes_frame(quotes: Iterable[Quote]) -> pl.DataFrame:
    """Quotes in the order they were seen."""
    rows = [{"seq": i, "server": q.server, "symbol": q.symbol, "bid": q.bid, "ask": q.ask}
            for i, q in enumerate(quotes)]
    return pl.DataFrame(rows, schema={"seq": pl.Int64, "server": pl.String, "symbol": pl.String,
                                      "bid": DEC, "ask": DEC})


def live_deals(deals: pl.DataFrame) -> pl.DataFrame:
    latest = deals.sort("version").group_by("deal_key").last()
    return (
        latest.filter(~pl.col("is_deleted") & ~pl.col("canceled"))
        .with_columns(
            account_key=pl.concat_str("platform", pl.lit(":"), "server", pl.lit(":"),
                                      pl.col("login").cast(pl.String)),
            su=pl.when(pl.col("side") == "buy").then(pl.col("units")).otherwise(-pl.col("units")),
            sl=pl.when(pl.col("side") == "buy").then(pl.col("lots")).otherwise(-pl.col("lots")),
            rank=pl.col("entry").replace_strict(ENTRY_RANK, return_dtype=pl.Int64),
        )
    )


def marks(quotes: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(last bid/ask per server and symbol, last bid/ask per symbol from any server)."""
    ordered = quotes.sort("seq")
    per_server = ordered.group_by("server", "symbol").agg(pl.col("bid").drop_nulls().last(),
                                                          pl.col("ask").drop_nulls().last())
    latest = ordered.group_by("symbol").agg(pl.col("bid").drop_nulls().last(),
                                            pl.col("ask").drop_nulls().last())
    return per_server, latest


def usd_rates(latest: pl.DataFrame, pairs: dict[str, tuple[str, str]]) -> dict[str, Decimal]:
    """Currency -> USD per unit, from the pairs quoted (direct CUSD or inverse USDC)."""
    mids = {row["symbol"]: (row["bid"] + row["ask"]) / 2
            for row in latest.with_columns(
                pl.col("bid").fill_null(pl.col("ask")), pl.col("ask").fill_null(pl.col("bid"))
            ).iter_rows(named=True) if row["bid"] is not None}
    rates = {"USD": Decimal(1)}
    for symbol, (base, quote) in pairs.items():
        if symbol in mids and quote == "USD":
            rates[base] = mids[symbol]
        elif symbol in mids and base == "USD":
            rates[quote] = 1 / mids[symbol]
    return rates


def positions(deals: pl.DataFrame, modes: dict[str, str], quotes: pl.DataFrame, *,
              open_only: bool = True) -> pl.DataFrame:
    """Every open position (or every position): account_key, ref, tenant, server, symbol,
    net_lots, net_units, avg_price, mark, floating (quote currency) and cash_total (the
    cash-flow identity: all it made, closed and open, in the quote currency)."""
    live = live_deals(deals).with_columns(
        mode=pl.col("account_key").replace_strict(modes, default="hedging"),
    )
    per_server, _ = marks(quotes)
    hedged = (
        live.filter(pl.col("mode") == "hedging")
        .with_columns(ref=pl.when(pl.col("position_id") != "").then("position_id").otherwise("deal_id"))
        .group_by("account_key", "ref")
        .agg(
            pl.first("tenant", "server", "symbol"),
            net_units=pl.col("su").sum(),
            net_lots=pl.col("sl").sum(),
            open_units=pl.col("units").filter(pl.col("entry") == "in").sum(),
            open_value=(pl.col("units") * pl.col("price")).filter(pl.col("entry") == "in").sum(),
            cash=(-pl.col("su") * pl.col("price")).sum(),
        )
    )
    current = pl.col("episode") == pl.col("last_episode")
    netted = (
        live.filter(pl.col("mode") == "netting")
        .sort("account_key", "symbol", "time", "rank", "deal_key")
        .with_columns(cum=pl.col("su").cum_sum().over("account_key", "symbol"))
        .with_columns(prev=pl.col("cum") - pl.col("su"))
        .with_columns(
            start=(pl.col("prev") == 0)
            | ((pl.col("prev") > 0) & (pl.col("cum") < 0))
            | ((pl.col("prev") < 0) & (pl.col("cum") > 0)),
        )
        .with_columns(
            episode=pl.col("start").cast(pl.Int64).cum_sum().over("account_key", "symbol"),
            opening=pl.when(pl.col("prev") == 0).then(pl.col("su").abs())
            .when(pl.col("start")).then(pl.col("cum").abs())
            .when((pl.col("prev") > 0) == (pl.col("su") > 0)).then(pl.col("su").abs())
            .otherwise(pl.lit(Decimal(0), dtype=DEC)),
        )
        .with_columns(last_episode=pl.col("episode").max().over("account_key", "symbol"))
        .group_by("account_key", "symbol")
        .agg(
            pl.first("tenant", "server"),
            ref=pl.first("symbol"),
            net_units=pl.col("su").sum(),
            net_lots=pl.col("sl").sum(),
            open_units=pl.col("opening").filter(current).sum(),
            open_value=(pl.col("opening") * pl.col("price")).filter(current).sum(),
            # the current episode's cash flows (a reopened position starts from zero; of a
            # reversal only the part that opened the new side counts)
            cash=(-pl.when(pl.col("start")).then(pl.col("cum").sign() * pl.col("opening"))
                  .otherwise(pl.col("su")) * pl.col("price")).filter(current).sum(),
        )
    )
    columns = ["account_key", "ref", "tenant", "server", "symbol", "net_units", "net_lots", "open_units",
               "open_value", "cash"]
    both = pl.concat([hedged.select(columns), netted.select(columns)])
    return (
        both.filter((pl.col("net_units") != 0) | (not open_only))
        .join(per_server, on=["server", "symbol"], how="left")
        .with_columns(
            mark=pl.when(pl.col("net_units") > 0).then("bid").otherwise("ask"),
            cost=pl.col("net_units").abs() * pl.col("open_value") / pl.col("open_units"),
        )
        .with_columns(
            avg_price=pl.col("open_value") / pl.col("open_units"),
            floating=pl.col("net_units") * pl.col("mark")
            - pl.when(pl.col("net_units") > 0).then(pl.col("cost")).otherwise(-pl.col("cost")),
            cash_total=pl.when(pl.col("net_units") == 0).then(pl.col("cash"))
            .otherwise(pl.col("cash") + pl.col("net_units") * pl.col("mark")),
            mid=(pl.col("bid") + pl.col("ask")) / 2,
        )
        .sort("account_key", "ref")
    )


def net_exposure(deals: pl.DataFrame, modes: dict[str, str], books: dict[str, str], quotes: pl.DataFrame,
                 quote_ccy: dict[str, str], pairs: dict[str, tuple[str, str]]) -> pl.DataFrame:
    """Per (tenant, book, symbol): net_lots, net_units, net_notional_usd, floating_pnl_usd."""
    _, latest = marks(quotes)
    rates = usd_rates(latest, pairs)
    to_usd = pl.DataFrame(
        {"symbol": list(quote_ccy), "to_usd": [rates.get(c) for c in quote_ccy.values()]},
        schema={"symbol": pl.String, "to_usd": DEC},
    )
    open_positions = positions(deals, modes, quotes).with_columns(
        book=pl.col("account_key").replace_strict(books, default="B"),
    )
    return (
        open_positions.join(to_usd, on="symbol", how="left")
        .group_by("tenant", "book", "symbol")
        .agg(
            net_lots=pl.col("net_lots").sum(),
            net_units=pl.col("net_units").sum(),
            net_notional_usd=(pl.col("net_units") * pl.col("mid") * pl.col("to_usd")).sum(),
            floating_pnl_usd=(pl.col("floating") * pl.col("to_usd")).sum(),
        )
        .sort("tenant", "book", "symbol")
    )
