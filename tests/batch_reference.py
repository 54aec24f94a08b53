"""An independent batch computation (polars) of what the tables must hold for a file of MT5
deal envelopes. It shares no code with the connectors: only the rules from the platform
reference (units, enums, signs) and the data contract (latest version wins, deletes vanish)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

MT5_FIELDS = ["Deal", "Login", "Action", "Entry", "Symbol", "Price", "Volume", "VolumeExt",
              "ContractSize", "Profit", "TimeMsc"]
DEC = pl.Decimal(38, 8)


def _decode(value: str) -> dict[str, object] | None:
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def load(path: Path, servers: dict[str, str]) -> pl.DataFrame:
    """One row per envelope with the MT5 fields as strings (null when absent or unreadable)."""
    rows = []
    for line in path.read_text().splitlines():
        env = json.loads(line)
        doc = _decode(env["value"]) or {}
        row = {f: (None if doc.get(f) in (None, "") else str(doc[f])) for f in MT5_FIELDS}
        row |= {"json_ok": bool(doc), "server": env["headers"].get("server"),
                "event": env["headers"].get("event", "add"), "ts": env["timestamp"]}
        rows.append(row)
    df = pl.DataFrame(rows, schema={**dict.fromkeys(MT5_FIELDS, pl.String), "json_ok": pl.Boolean,
                                    "server": pl.String, "event": pl.String, "ts": pl.Int64})
    tenants = pl.DataFrame({"server": list(servers), "tenant": list(servers.values())})
    return df.join(tenants, on="server", how="left")


def expected(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(deals, balance operations, number of dead letters) the engine must produce."""
    typed = df.with_columns(
        pl.col("Deal").cast(pl.Int64, strict=False).alias("deal"),
        pl.col("Login").cast(pl.Int64, strict=False).alias("login"),
        pl.col("Action").cast(pl.Int64, strict=False).alias("action"),
        pl.col("Entry").cast(pl.Int64, strict=False).alias("entry"),
        pl.col("Volume").cast(pl.Int64, strict=False).alias("volume"),
        pl.col("VolumeExt").cast(pl.Int64, strict=False).alias("volume_ext"),
        pl.col("Price").cast(DEC, strict=False).alias("price"),
        pl.col("ContractSize").cast(DEC, strict=False).alias("contract_size"),
        pl.col("Profit").fill_null("0").cast(DEC, strict=False).alias("profit"),
        (pl.col("ts") * 4 + pl.col("event").replace_strict({"add": 0, "update": 1, "delete": 2},
                                                           default=None)).alias("version"),
    )
    readable = (
        pl.col("json_ok") & pl.col("tenant").is_not_null() & pl.col("version").is_not_null()
        & pl.col("deal").is_not_null() & pl.col("login").is_not_null()
        & pl.col("action").is_between(0, 20)
    )
    is_trade = pl.col("action").is_in([0, 1, 13, 14])
    # Volume in 1/10000 lot; VolumeExt (1/100000000 lot) wins when present and non-zero.
    lots_e8 = (pl.when(pl.col("volume_ext").fill_null(0) != 0).then(pl.col("volume_ext"))
               .otherwise(pl.col("volume") * 10_000))
    trades = typed.filter(readable & is_trade).with_columns(lots_e8.alias("lots_e8"))
    trade_ok = (pl.col("entry").is_between(0, 3) & (pl.col("lots_e8") > 0)
                & pl.col("price").is_not_null() & (pl.col("contract_size") > 0))
    good_trades = trades.filter(trade_ok)
    money = typed.filter(readable & ~is_trade & pl.col("profit").is_not_null())
    dead = df.height - good_trades.height - money.height

    def latest(frame: pl.DataFrame) -> pl.DataFrame:
        key = pl.concat_str([pl.lit("mt5:"), pl.col("server"), pl.lit(":"), pl.col("deal").cast(pl.String)])
        return (frame.with_columns(key.alias("key")).sort("version")
                .group_by("key").last().filter(pl.col("event") != "delete"))

    lots = (pl.col("lots_e8").cast(DEC) / 100_000_000).cast(DEC)
    sign = pl.when(pl.col("action").is_in([0, 13])).then(1).otherwise(-1)
    deals = latest(good_trades).with_columns(
        lots.alias("lots"),
        pl.when(pl.col("action") >= 13).then(pl.lit(0).cast(DEC)).otherwise(lots * sign).cast(DEC)
        .alias("signed_lots"),
        (lots * pl.col("contract_size") * pl.col("price")).round(8).cast(DEC).alias("notional"),
    ).select("key", "tenant", "login", "lots", "signed_lots", "notional", "price")
    ops = latest(money).select("key", "tenant", "login", pl.col("profit").alias("amount"))
    return deals, ops, dead
