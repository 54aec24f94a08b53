"""Reading commands answer a user's mistake in one line, exit 2, and never create a store or a
database; a store held by another process is said to be held."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from brokerstream.cli import main
from brokerstream.output import format_table
from pipelines.config import Settings
from pipelines.store import Store
from tests.conftest import TEST_CONFIG
from tests.helpers import bound

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, dsn: str, database: str) -> str:
    path = tmp_path / "brokerstream.yaml"
    path.write_text(yaml.safe_dump({**TEST_CONFIG, "clickhouse": {"dsn": dsn, "database": database}}))
    return str(path)


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_bad_sql_is_one_line_with_the_servers_words(
    store: Store, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, settings.clickhouse_dsn(), settings.clickhouse.database)
    assert main(["sql", "SELEC 1", "--config", cfg]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("brokerstream: Code: 62.") and "SYNTAX_ERROR" in line
    assert main(["sql", "SELECT count() FROM no_such_table", "--config", cfg]) == 2
    assert "UNKNOWN_TABLE" in _one_line(capsys.readouterr().err)


def test_a_missing_database_is_named_and_not_created(
    store: Store, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, settings.clickhouse_dsn(), settings.clickhouse.database)
    assert main(["sql", "SELECT 1", "--database", "typo_db", "--config", cfg]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no database typo_db in" in line and settings.clickhouse.database in line
    assert store.scalar("SELECT count() FROM system.databases WHERE name = 'typo_db'") == 0


def test_a_directory_with_no_store_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "nothing-here"
    cfg = _config(tmp_path, f"chdb://{where}", "brokerstream")
    assert main(["sql", "SELECT 1", "--config", cfg]) == 2
    assert "no ClickHouse data in" in _one_line(capsys.readouterr().err)
    assert not where.exists()


def test_a_store_held_by_another_process_is_said_to_be_held(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    # this test process holds the session's embedded store open (the `store` fixture)
    cfg = _config(tmp_path, settings.clickhouse_dsn(), settings.clickhouse.database)
    done = subprocess.run([sys.executable, "-m", "brokerstream.cli", "sql", "SELECT 1", "--config", cfg],
                          cwd=REPO, capture_output=True, text=True, timeout=bound(120), check=False)
    assert done.returncode == 2, done.stderr
    assert "in use by another process" in _one_line(done.stderr)


def test_numbers_are_right_aligned() -> None:
    text = format_table(["symbol", "n", "lots"],
                        [("EURUSD", 5, Decimal("1.5")), ("XAUUSD", 1234, Decimal("10"))])
    lines = text.splitlines()
    assert lines[2] == "EURUSD     5   1.5"
    assert lines[3] == "XAUUSD  1234    10"


# `recon report` and `alerts ...` open the store as `sql` does (pipelines.store.open_reader)
READERS = [["recon", "report", "--date", "2024-11-25"], ["alerts", "list"], ["alerts", "show", "C-1"]]


@pytest.mark.parametrize("argv", READERS, ids=lambda a: " ".join(a[:2]))
def test_recon_and_alerts_name_a_missing_database_and_create_none(
    argv: list[str], store: Store, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, settings.clickhouse_dsn(), settings.clickhouse.database)
    assert main([*argv, "--database", "typo_db", "--config", cfg]) == 2
    assert "no database typo_db in" in _one_line(capsys.readouterr().err)
    assert store.scalar("SELECT count() FROM system.databases WHERE name = 'typo_db'") == 0
    where = tmp_path / "nothing-here"
    assert main([*argv, "--config", _config(tmp_path, f"chdb://{where}", "brokerstream")]) == 2
    assert "no ClickHouse data in" in _one_line(capsys.readouterr().err)
    assert not where.exists()


@pytest.mark.parametrize("argv", READERS[:2], ids=lambda a: " ".join(a[:2]))
def test_recon_and_alerts_say_a_held_store_is_held(
    argv: list[str], store: Store, settings: Settings, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, settings.clickhouse_dsn(), settings.clickhouse.database)
    done = subprocess.run([sys.executable, "-m", "brokerstream.cli", *argv, "--config", cfg],
                          cwd=REPO, capture_output=True, text=True, timeout=bound(120), check=False)
    assert done.returncode == 2, done.stderr
    assert "in use by another process" in _one_line(done.stderr)


@pytest.mark.parametrize("argv", [READERS[0], READERS[1]], ids=lambda a: " ".join(a[:2]))
def test_recon_and_alerts_refuse_an_unknown_tenant_before_reading(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "never-opened"
    cfg = _config(tmp_path, f"chdb://{where}", "brokerstream")
    assert main([*argv, "--tenant", "nobody", "--config", cfg]) == 2
    assert "no tenant" in _one_line(capsys.readouterr().err)
    assert not where.exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["sql"], "brokerstream sql: the following arguments are required: query"),
    (["sql", "SELECT 1", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["recon", "report"], "brokerstream recon report: the following arguments are required: --date"),
    (["recon", "report", "--date", "2024-02-30"], "--date '2024-02-30' is not a calendar day"),
    (["alerts", "assign", "C-1"], "brokerstream alerts assign: the following arguments are required: --to"),
    (["alerts", "list", "--limit", "many"], "argument --limit: invalid int value: 'many'"),
    (["alerts", "list", "--limit", "0"], "--limit must be at least 1"),
    (["simulate", "--events", "ten"], "argument --events: invalid int value: 'ten'"),
])
def test_argument_mistakes_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "never-opened"
    cfg = _config(tmp_path, f"chdb://{where}", "brokerstream")
    try:
        code = main([*argv, "--config", cfg])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code == 2
    assert message in _one_line(capsys.readouterr().err)
    assert not where.exists()
