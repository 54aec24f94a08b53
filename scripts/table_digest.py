#!/usr/bin/env python3
"""Dump every table of a brokerstream ClickHouse database, and compare two dumps.

    table_digest.py dump --dsn chdb:///dir --database DB --out DIR
    table_digest.py compare DIR_A DIR_B [--show N]

`dump` writes, per table (views and Null tables left out: they hold nothing of their own),
`DIR/<table>.parquet` with its rows sorted by all columns, read with FINAL from Replacing- and
AggregatingMergeTree tables (aggregate states finalized), and without the insertion-time
columns (`ingested_at`, `applied_at`, any column defaulting to now()). `DIR/manifest.json`
lists each table's engine, sorting key, columns, row count and digest (count, and the sum and
xor of a 64-bit hash of every row, computed by ClickHouse: independent of row order).

`compare` prints per table the rows of A and of B, then `identical`, or the number of keys
(the table's sorting key) whose rows differ and the first differing rows, column by column.
It exits 0 when every table is identical, 1 otherwise. It needs no brokerstream code, so one
venv can compare dumps written by two versions of the engine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import polars as pl
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

TIME_COLUMNS = frozenset({"ingested_at", "inserted_at", "applied_at"})
SKIP_ENGINES = frozenset({"View", "MaterializedView", "Null", "LiveView", "Dictionary"})
MANIFEST = "manifest.json"


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def connect(dsn: str, database: str) -> Client:
    if dsn.startswith("chdb:") and not Path(urlparse(dsn).path).is_dir():
        raise SystemExit(f"no chdb data directory at {urlparse(dsn).path}")
    return clickhouse_connect.get_client(dsn=dsn, database=database)


def table_query(client: Client, database: str, table: str, engine: str) -> tuple[str, list[str]]:
    """SELECT of a table's comparable content (sorted by all columns) and its column names."""
    _, columns = _rows(client, "SELECT name, type, default_expression FROM system.columns "
                               "WHERE database = {db:String} AND table = {t:String} ORDER BY position",
                       {"db": database, "t": table})
    kept = [(name, kind) for name, kind, default in columns
            if name not in TIME_COLUMNS and "now" not in default.lower()]
    exprs = [f"finalizeAggregation({_q(n)}) AS {_q(n)}" if kind.startswith("AggregateFunction(")
             else _q(n) for n, kind in kept]
    final = " FINAL" if engine.startswith(("Replacing", "Aggregating", "Collapsing",
                                           "VersionedCollapsing", "Summing")) else ""
    source = f"{_q(database)}.{_q(table)}{final}"
    return f"SELECT * FROM (SELECT {', '.join(exprs)} FROM {source}) ORDER BY ALL", [n for n, _ in kept]


def _rows(client: Client, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[Any]]:
    result = client.query(sql, parameters=params)
    return list(result.column_names), [tuple(r) for r in result.result_rows]


def dump(dsn: str, database: str, out: Path) -> int:
    client = connect(dsn, database)
    out.mkdir(parents=True, exist_ok=True)
    _, tables = _rows(client, "SELECT name, engine, sorting_key FROM system.tables "
                              "WHERE database = {db:String} ORDER BY name", {"db": database})
    if not tables:
        raise SystemExit(f"database {database!r} has no tables at {dsn}")
    manifest: dict[str, Any] = {"dsn": dsn, "database": database, "tables": {}}
    for name, engine, sorting_key in tables:
        if engine in SKIP_ENGINES:
            continue
        sql, columns = table_query(client, database, name, engine)
        data = client.query_arrow(sql)
        pq.write_table(data, out / f"{name}.parquet", compression="zstd")
        cols = ", ".join(_q(c) for c in columns)
        _, digest = _rows(client, f"SELECT count(), sum(h), groupBitXor(h) FROM "
                                  f"(SELECT cityHash64(tuple({cols})) AS h FROM ({sql}))")
        count, total, xor = digest[0]
        manifest["tables"][name] = {
            "engine": engine, "sorting_key": sorting_key, "columns": columns,
            "rows": data.num_rows, "digest": f"{count}:{total:016x}:{xor:016x}",
        }
        print(f"{name:32} {data.num_rows:>10,} rows  {manifest['tables'][name]['digest']}")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    client.close()
    return 0


# -- compare ----------------------------------------------------------------------------------


def _comparable(df: pl.DataFrame) -> pl.DataFrame:
    """Nested values as JSON text and decimals at one precision, so two dumps join on value."""
    out: list[pl.Series] = []
    for name, dtype in df.schema.items():
        col = df.get_column(name)
        if isinstance(dtype, pl.List | pl.Array | pl.Struct):
            col = pl.Series(name, [json.dumps(v, default=str, sort_keys=True) for v in col.to_list()],
                            dtype=pl.String)
        elif isinstance(dtype, pl.Decimal):
            col = col.cast(pl.Decimal(38, 10))
        out.append(col)
    return pl.DataFrame(out)


def _key_columns(sorting_key: str, columns: list[str]) -> list[str]:
    keys = [k.strip().strip("`") for k in sorting_key.split(",") if k.strip()]
    keys = [k for k in keys if k in columns]
    return keys or columns


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def compare_table(name: str, a: pl.DataFrame, b: pl.DataFrame, sorting_key: str, show: int) -> bool:
    header = f"{name:32} A {a.height:>10,}  B {b.height:>10,}"
    only_a_cols = sorted(set(a.columns) - set(b.columns))
    only_b_cols = sorted(set(b.columns) - set(a.columns))
    columns = [c for c in a.columns if c in b.columns]
    a, b = _comparable(a.select(columns)), _comparable(b.select(columns))
    try:
        b = b.cast(dict(a.schema))  # type: ignore[arg-type]
    except Exception:  # columns of different types: compare as text
        a, b = a.cast(pl.String), b.cast(pl.String)
    # a row that occurs k times must occur k times on the other side too
    dup = "__n"
    a = a.with_columns(pl.int_range(pl.len()).over(columns).alias(dup))
    b = b.with_columns(pl.int_range(pl.len()).over(columns).alias(dup))
    on = [*columns, dup]
    only_a = a.join(b, on=on, how="anti", nulls_equal=True)
    only_b = b.join(a, on=on, how="anti", nulls_equal=True)
    notes = []
    if only_a_cols or only_b_cols:
        notes.append(f"columns only in A {only_a_cols}, only in B {only_b_cols} (not compared)")
    if only_a.height == 0 and only_b.height == 0:
        print(f"{header}  identical" + (f"  ({'; '.join(notes)})" if notes else ""))
        return not notes
    keys = _key_columns(sorting_key, columns)
    differing = pl.concat([only_a.select(keys), only_b.select(keys)]).unique().sort(keys, nulls_last=True)
    print(f"{header}  DIFFERENT: {differing.height:,} key(s) of ({', '.join(keys)}) differ; "
          f"{only_a.height:,} row(s) only in A, {only_b.height:,} only in B")
    for note in notes:
        print(f"    {note}")
    for key in differing.head(show).iter_rows(named=True):
        match = pl.all_horizontal([pl.col(k).eq_missing(v) for k, v in key.items()])
        rows_a = only_a.filter(match).drop(dup).to_dicts()
        rows_b = only_b.filter(match).drop(dup).to_dicts()
        print(f"    key {', '.join(f'{k}={_fmt(v)}' for k, v in key.items())}: "
              f"{len(rows_a)} row(s) only in A, {len(rows_b)} only in B")
        if len(rows_a) == 1 and len(rows_b) == 1:
            for col in columns:
                if rows_a[0][col] != rows_b[0][col]:
                    print(f"      {col:24} A {_fmt(rows_a[0][col])}")
                    print(f"      {'':24} B {_fmt(rows_b[0][col])}")
        else:
            for side, rows in (("A", rows_a), ("B", rows_b)):
                for row in rows[:3]:
                    print(f"      {side} " + ", ".join(f"{c}={_fmt(row[c])}" for c in columns
                                                    if c not in keys))
    return False


def compare(dir_a: Path, dir_b: Path, show: int) -> int:
    man_a = json.loads((dir_a / MANIFEST).read_text())["tables"]
    man_b = json.loads((dir_b / MANIFEST).read_text())["tables"]
    same = True
    print(f"A = {dir_a}\nB = {dir_b}")
    for name in sorted(set(man_a) | set(man_b)):
        if name not in man_a or name not in man_b:
            side = "A" if name in man_a else "B"
            rows = (man_a.get(name) or man_b[name])["rows"]
            print(f"{name:32} only in {side} ({rows:,} rows)")
            same = False
            continue
        ta, tb = man_a[name], man_b[name]
        if ta["digest"] == tb["digest"] and ta["columns"] == tb["columns"]:
            print(f"{name:32} A {ta['rows']:>10,}  B {tb['rows']:>10,}  identical (digest)")
            continue
        a = pl.read_parquet(dir_a / f"{name}.parquet")
        b = pl.read_parquet(dir_b / f"{name}.parquet")
        same = compare_table(name, a, b, ta["sorting_key"], show) and same
    print("all tables identical" if same else "tables differ")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="every table of a database to parquet, with digests")
    d.add_argument("--dsn", required=True, help="chdb:///dir or http(s)://host:8123")
    d.add_argument("--database", default="brokerstream")
    d.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("compare", help="two dumps, table by table")
    c.add_argument("dir_a", type=Path)
    c.add_argument("dir_b", type=Path)
    c.add_argument("--show", type=int, default=3, help="differing keys to print per table")
    args = parser.parse_args(argv)
    if args.cmd == "dump":
        return dump(args.dsn, args.database, args.out)
    return compare(args.dir_a, args.dir_b, args.show)


if __name__ == "__main__":
    sys.exit(main())
