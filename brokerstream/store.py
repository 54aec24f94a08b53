"""ClickHouse access through one clickhouse-connect code path.

`chdb:///dir` runs the embedded ClickHouse engine in this process; `http(s)://host:8123/db`
talks to a server. Migrations in `schemas/migrations/NNNN_name.sql` are applied in order,
once each, and recorded in `schema_migrations`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "migrations"
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


def _database_in_dsn(dsn: str) -> str | None:
    if dsn.startswith("chdb:"):
        return None
    path = urlparse(dsn).path.strip("/")
    return path or None


class Store:
    """The configured ClickHouse: a client in the brokerstream database, schema up to date."""

    def __init__(self, dsn: str, database: str = "brokerstream") -> None:
        self.dsn = dsn
        self.database = _database_in_dsn(dsn) or database
        if dsn.startswith("chdb:"):
            Path(urlparse(dsn).path).mkdir(parents=True, exist_ok=True)
        bootstrap = clickhouse_connect.get_client(dsn=dsn, database="default")
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        bootstrap.close()
        self.client: Client = clickhouse_connect.get_client(dsn=dsn, database=self.database)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now (idempotent)."""
        self.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
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

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        """Insert column-oriented data (one list per column)."""
        if data and len(data[0]):
            self.client.insert(table, data, column_names=list(columns), column_oriented=True)

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
