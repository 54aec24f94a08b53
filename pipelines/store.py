"""ClickHouse access through one clickhouse-connect code path.

`chdb:///dir` runs the embedded ClickHouse engine in this process; `http(s)://host:8123/db`
talks to a server. Migrations in `schemas/migrations/NNNN_name.sql` are applied in order,
once each, and recorded in `schema_migrations`.

Writes never stop on one bad row and never give up on an outage: `Store.insert_rows` sets aside
rows ClickHouse cannot take (as dead letters, stage `store`) and inserts the rest; a connection
error or a server that is temporarily unable to write (memory, too many parts, read-only, ...)
is retried with backoff until it passes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import clickhouse_connect
import orjson
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from pipelines.metrics import STORE_RETRIES, STORE_SET_ASIDE, STORE_WAITING, not_ready, ready

log = logging.getLogger(__name__)
T = TypeVar("T")

# package data of `schemas` (importlib.resources: a wheel install finds it as well)
MIGRATIONS_DIR = Path(str(resources.files("schemas").joinpath("migrations")))
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def _split_statements(sql: str) -> list[str]:
    """Split a migration file on ';' at line ends, dropping comment-only chunks."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", body) if stmt.strip()]


def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, list[str]]]:
    """(version, file name, statements) for every migration file, in order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name {path.name!r} must look like 0001_name.sql")
        found.append((int(match.group(1)), path.name, _split_statements(path.read_text())))
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"two migration files share a version in {directory}")
    return found


_DECIMAL = re.compile(r"^Decimal\((\d+), (\d+)\)$")
_SIMPLE_ARROW: dict[str, pa.DataType] = {
    "String": pa.string(), "Bool": pa.bool_(), "UInt8": pa.uint8(), "UInt32": pa.uint32(),
    "UInt64": pa.uint64(), "Int32": pa.int32(), "Int64": pa.int64(), "Date32": pa.date32(),
    "Float64": pa.float64(),
}


def arrow_type(clickhouse_type: str) -> pa.DataType:
    """The Arrow type to send for a ClickHouse column type (the subset our tables use)."""
    t = clickhouse_type
    for wrapper in ("Nullable(", "LowCardinality("):
        if t.startswith(wrapper):
            t = t[len(wrapper):-1]
    if t in _SIMPLE_ARROW:
        return _SIMPLE_ARROW[t]
    if t.startswith("DateTime64(3"):
        return pa.timestamp("ms", tz="UTC")
    match = _DECIMAL.match(t)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    if t == "Map(String, String)":
        return pa.map_(pa.string(), pa.string())
    if t == "Array(String)":
        return pa.list_(pa.string())
    raise ValueError(f"no Arrow mapping for ClickHouse type {clickhouse_type}")


# Server errors that say nothing about the rows: the write is retried until it passes.
# (Code: name) - network and timeouts, memory, too many parts, no space, read-only, keeper,
# unknown status of an insert, too many queries, authentication/grants being rolled out.
_TRANSIENT_CODES = frozenset({
    159, 164, 202, 209, 210, 241, 242, 243, 252, 319, 425, 497, 516, 999,
})
_CODE = re.compile(r"Code: (\d+)")
# Arrow conversion errors: one value does not fit its column's type.
_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)
# Failed inserts one call may spend finding bad rows; beyond, a failing chunk is set aside
# whole (its rows are dead letters with the chunk's error): never an unbounded bisection.
SPLIT_BUDGET = 256


def transient(exc: BaseException) -> bool:
    """A failure worth waiting out (the same write will pass later), not one about the data."""
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DatabaseError):
        match = _CODE.search(str(exc))
        return match is not None and int(match.group(1)) in _TRANSIENT_CODES
    return False


@dataclass(frozen=True, slots=True)
class SetAside:
    """A row the store could not write: kept in `dead_letters` (stage `store`) instead."""

    table: str
    row: tuple[Any, ...]
    error: str


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal | datetime):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def _source_parts(source: Any) -> tuple[str, int, int]:
    """(topic, partition, offset) of a `topic/partition/offset` source, best effort."""
    if isinstance(source, str):
        topic, _, rest = source.partition("/")
        part, _, offset = rest.partition("/")
        try:
            return topic, int(part), int(offset)
        except ValueError:
            return topic, -1, -1
    return "", -1, -1


_DL_COLUMNS = ("dl_key", "tenant", "topic", "partition", "offset", "key", "raw", "headers",
               "reason", "stage", "time")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, tzinfo=UTC))


def set_aside_row(item: SetAside, columns: Sequence[str]) -> tuple[Any, ...]:
    """The dead-letter row for a set-aside row: its values as JSON, the error as the reason,
    keyed by table and content (a replay sets the same row aside under the same key)."""
    values = dict(zip(columns, item.row, strict=False))
    raw = orjson.dumps(values, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    digest = hashlib.sha256(item.table.encode() + b"\0" + raw).hexdigest()[:24]
    topic, partition, offset = _source_parts(values.get("source"))
    moment = values.get("time")
    if not (isinstance(moment, datetime) and moment.tzinfo is not None
            and _TIME_RANGE[0] <= moment <= _TIME_RANGE[1]):
        moment = _EPOCH
    tenant = values.get("tenant")
    return (f"store/{item.table}/{digest}", tenant if isinstance(tenant, str) else "",
            topic or f"store:{item.table}", partition, offset, "", raw,
            {"table": item.table, "source": str(values.get("source", ""))},
            f"table {item.table}: {item.error}"[:2000], "store", moment)


# Embedded stores this process has open (its own lock on them is not "another process").
_OPENED_HERE: set[str] = set()


def _held(directory: Path) -> bool:
    """Whether another process has the embedded ClickHouse in `directory` open: ClickHouse
    holds an exclusive lock on its `status` file while it runs."""
    status = directory / "status"
    if not status.exists():
        return False
    with status.open("rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


class StoreUnavailable(Exception):
    """The store a read asked for is not there or not reachable now (one line for the user)."""


_SYSTEM_DATABASES = frozenset({"default", "system", "information_schema", "INFORMATION_SCHEMA"})


def _database_in_dsn(dsn: str) -> str | None:
    if dsn.startswith("chdb:"):
        return None
    path = urlparse(dsn).path.strip("/")
    return path or None


class Store:
    """The configured ClickHouse: a client in the brokerstream database, schema up to date."""

    def __init__(self, dsn: str, database: str = "brokerstream", *,
                 retry_for_s: float | None = None, log_every_s: float = 30.0,
                 create: bool = True) -> None:
        """`retry_for_s`: how long a transient failure (connection refused, server busy) is
        retried before it is raised; None = until it passes (the engine waits an outage out).
        `create=False` (reads: the CLI, reports): a missing store or database is a
        `StoreUnavailable`, never created."""
        self.dsn = dsn
        self.database = _database_in_dsn(dsn) or database
        self.retry_for_s = retry_for_s
        self.log_every_s = log_every_s
        if dsn.startswith("chdb:"):
            directory = Path(urlparse(dsn).path)
            if not create and not directory.is_dir():
                raise StoreUnavailable(f"no ClickHouse data in {directory} (nothing has been stored "
                                       "there yet: run the engine, a replay or the demo first)")
            directory.mkdir(parents=True, exist_ok=True)

        def connect() -> Client:
            here = urlparse(dsn).path
            if (not create and dsn.startswith("chdb:") and here not in _OPENED_HERE
                    and _held(Path(here))):
                raise StoreUnavailable(
                    f"the embedded ClickHouse in {urlparse(dsn).path} is in use by another process "
                    "(a running engine, replay or demo owns it): read it once that stops, or run "
                    "the engine with a ClickHouse server (clickhouse.dsn: http://...)")
            bootstrap = clickhouse_connect.get_client(dsn=dsn, database="default")
            if dsn.startswith("chdb:"):
                _OPENED_HERE.add(here)
            if create:
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            else:
                known = [r[0] for r in bootstrap.query("SELECT name FROM system.databases").result_rows]
                if self.database not in known:
                    bootstrap.close()
                    mine = sorted(d for d in known if d not in _SYSTEM_DATABASES)
                    raise StoreUnavailable(f"no database {self.database} in {dsn} "
                                           f"(databases there: {', '.join(mine) or 'none'})")
            bootstrap.close()
            return clickhouse_connect.get_client(dsn=dsn, database=self.database)

        self.client: Client = self._retrying("connect", connect)
        self._schemas: dict[tuple[str, tuple[str, ...]], pa.Schema] = {}

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """`call()`, retried with backoff (0.2 s doubling to 30 s) while it fails transiently.
        Logs once per `log_every_s`; the store is not ready (metrics.readiness) meanwhile."""
        started = time.monotonic()
        delay, logged, failures = 0.2, 0.0, 0
        component = f"clickhouse:{self.database}"
        while True:
            try:
                result = call()
            except Exception as exc:
                if not transient(exc):
                    raise
                failures += 1
                STORE_RETRIES.labels(what).inc()
                waited = time.monotonic() - started
                if self.retry_for_s is not None and waited >= self.retry_for_s:
                    raise
                if failures == 1:
                    STORE_WAITING.set(1)
                    not_ready(component, f"ClickHouse {what} failing: {exc}")
                if time.monotonic() - logged >= self.log_every_s:
                    logged = time.monotonic()
                    log.warning("ClickHouse %s failed (%s); retrying with backoff, waiting %.0f s so far",
                                what, str(exc)[:300], waited)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if failures:
                STORE_WAITING.set(0)
                ready(component)
                log.warning("ClickHouse %s works again after %.1f s", what, time.monotonic() - started)
            return result

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now (idempotent)."""
        self._retrying("migrate", lambda: self.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        ))
        done = {row[0] for row in self.client.query("SELECT version FROM schema_migrations").result_rows}
        applied = []
        for version, name, statements in migrations():
            if version in done:
                continue
            for statement in statements:
                self.client.command(statement)
            self.client.insert(
                "schema_migrations",
                [[version, name, datetime.now(UTC)]],
                column_names=["version", "name", "applied_at"],
            )
            applied.append(name)
        return applied

    def arrow_schema(self, table: str, columns: Sequence[str]) -> pa.Schema:
        key = (table, tuple(columns))
        if key not in self._schemas:
            _, rows = self.query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                "AND table = {table:String}", {"table": table},
            )
            types = dict(rows)
            missing = [c for c in columns if c not in types]
            if missing:
                raise ValueError(f"table {table} has no column(s) {', '.join(missing)}")
            self._schemas[key] = pa.schema([(c, arrow_type(types[c])) for c in columns])
        return self._schemas[key]

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
                    ) -> list[SetAside]:
        """Insert row tuples through Arrow: Decimals, datetimes and maps are converted in C,
        about 40% cheaper per row than clickhouse-connect's Python conversion.

        A row that cannot be written (a value its column cannot hold, a row ClickHouse refuses)
        does not fail or block the batch: the batch is bisected, the good rows are inserted,
        and each bad row is written to `dead_letters` (stage `store`, the error as reason) and
        returned. Transient failures (connection, server busy) are retried with backoff."""
        if not rows:
            return []
        schema = self._retrying("schema", lambda: self.arrow_schema(table, columns))
        tables: list[pa.Table] = []
        bad: list[SetAside] = []
        self._convert(table, schema, columns, list(rows), tables, bad)
        budget = [SPLIT_BUDGET]
        for arrow in tables:
            self._insert(table, arrow, budget, bad, columns)
        if bad:
            self._write_set_aside(bad)
        return bad

    def insert_table(self, table: str, arrow: pa.Table) -> list[SetAside]:
        """Insert an Arrow table built in the table's column order (a columnar reader's rows),
        with the same setting aside of refused rows as `insert_rows`."""
        if arrow.num_rows == 0:
            return []
        bad: list[SetAside] = []
        self._insert(table, arrow, [SPLIT_BUDGET], bad, arrow.column_names)
        if bad:
            self._write_set_aside(bad)
        return bad

    def _arrow(self, schema: pa.Schema, columns: Sequence[str], rows: Sequence[Sequence[Any]]
               ) -> pa.Table:
        arrays = []
        for values, field in zip(zip(*rows, strict=True), schema, strict=True):
            kind = field.type
            if kind == pa.string() and isinstance(values[0], bytes):
                kind = pa.binary()  # raw message bytes (dead letters) need not be UTF-8
            elif kind == pa.uint8() and isinstance(values[0], bool):
                kind = pa.bool_()  # is_deleted flags: ClickHouse stores them as UInt8
            arrays.append(pa.array(values, type=kind))
        return pa.Table.from_arrays(arrays, names=list(columns))

    def _convert(self, table: str, schema: pa.Schema, columns: Sequence[str], rows: list[Any],
                 out: list[pa.Table], bad: list[SetAside]) -> None:
        """Arrow tables of the rows that convert; bisects to find the ones that don't."""
        try:
            out.append(self._arrow(schema, columns, rows))
            return
        except _CONVERSION_ERRORS as exc:
            if len(rows) == 1:
                bad.append(SetAside(table, tuple(rows[0]), f"{type(exc).__name__}: {exc}"))
                return
        mid = len(rows) // 2
        self._convert(table, schema, columns, rows[:mid], out, bad)
        self._convert(table, schema, columns, rows[mid:], out, bad)

    def _insert(self, table: str, arrow: pa.Table, budget: list[int], bad: list[SetAside],
                columns: Sequence[str]) -> None:
        try:
            self._retrying("insert", lambda: self.client.insert_arrow(table, arrow))
            return
        except Exception as exc:  # not transient (those are retried): about these rows
            error = f"{type(exc).__name__}: {str(exc)[:1000]}"
            budget[0] -= 1
            if arrow.num_rows == 1 or budget[0] <= 0:
                log.error("table %s: %d row(s) set aside as dead letters: %s", table,
                          arrow.num_rows, error[:300])
                bad.extend(SetAside(table, tuple(r[c] for c in columns), error)
                           for r in arrow.to_pylist())
                return
        mid = arrow.num_rows // 2
        self._insert(table, arrow.slice(0, mid), budget, bad, columns)
        self._insert(table, arrow.slice(mid), budget, bad, columns)

    def _write_set_aside(self, bad: list[SetAside]) -> None:
        """Set-aside rows into dead_letters_store (one at a time if a batch fails: these rows
        are plain text, but nothing here may stop the writer)."""
        schema = self.arrow_schema("dead_letters_store", _DL_COLUMNS)
        columns: dict[str, Sequence[str]] = {}
        rows = []
        for item in bad:
            STORE_SET_ASIDE.labels(item.table).inc()
            cols = columns.get(item.table)
            if cols is None:
                cols = columns[item.table] = self._table_columns(item.table, len(item.row))
            rows.append(set_aside_row(item, cols))
        try:
            self._retrying("insert", lambda: self.client.insert_arrow(
                "dead_letters_store", self._arrow(schema, _DL_COLUMNS, rows)))
        except Exception as exc:
            log.error("could not write %d set-aside row(s) to dead_letters: %s; the rows: %r",
                      len(rows), exc, [r[6][:2000] for r in rows])

    def _table_columns(self, table: str, width: int) -> Sequence[str]:
        for (name, cols) in self._schemas:
            if name == table and len(cols) == width:
                return cols
        return [f"c{i}" for i in range(width)]

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = self.client.query(sql, parameters=parameters)
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        _, rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def close(self) -> None:
        self.client.close()


def open_store(dsn: str, database: str = "brokerstream") -> Store:
    """Connect and bring the schema up to date."""
    store = Store(dsn, database)
    store.migrate()
    return store


def open_reader(dsn: str, database: str = "brokerstream") -> Store:
    """Connect to an existing store for reading: nothing is created or migrated, and a missing
    or busy store is a `StoreUnavailable` saying so in one line. Transient failures (a server
    restarting) are retried for a few seconds, not forever."""
    return Store(dsn, database, retry_for_s=10.0, create=False)
