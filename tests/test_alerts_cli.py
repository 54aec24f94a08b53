"""`brokerstream alerts ...` (brokerstream/alerts_cli.py) on a real store: the queue table, a
case's alerts and history, every action recorded with its actor, and one-line errors with exit
code 2 for a user's mistake (an embedded store an engine holds included, as for `sql`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from brokerstream.cli import main
from pipelines.config import Settings
from pipelines.store import Store, open_store
from tests.conftest import TEST_CONFIG
from tests.test_cases_store import write_account, write_alert

REPO = Path(__file__).resolve().parent.parent


def _fill(store: Store) -> None:
    write_account(store, "mt5:ACME-MT5-Live:1001", "CRM-1")
    for i in range(12):
        write_alert(store, f"a{i}", "mt5:ACME-MT5-Live:1001", minutes=i)
    write_alert(store, "b1", "mt5:ACME-MT5-Live:2002", severity="critical")
    write_alert(store, "z1", "mt5:Zenith-MT5:1001", tenant="zenith", severity="medium")


def _config_file(dsn: str, database: str, path: Path) -> Path:
    doc = {**TEST_CONFIG, "clickhouse": {"dsn": dsn, "database": database}}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture
def config(settings: Settings, store: Store, tmp_path: Path) -> Path:
    _fill(store)
    return _config_file(settings.clickhouse_dsn(), settings.clickhouse.database,
                        tmp_path / "brokerstream.yaml")


@pytest.fixture(scope="module")
def shared_config(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One store for the tests that only read or are refused (a fresh database costs seconds)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    store = open_store(f"chdb://{chdb_dir}", database)
    _fill(store)
    store.close()
    yield _config_file(f"chdb://{chdb_dir}", database, tmp_path_factory.mktemp("cli") / "brokerstream.yaml")


def run(config: Path, *argv: str) -> int:
    return main(["alerts", *argv, "--config", str(config)])


def test_list_shows_the_queue_with_right_aligned_numbers(shared_config: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = shared_config
    assert run(config, "list") == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("case "))
    rows = [line for line in out if line.startswith("C-")]
    assert [r.split()[1:4] for r in rows] == [["acme", "mt5:ACME-MT5-Live:2002", "critical"],
                                              ["acme", "client:CRM-1", "high"],
                                              ["zenith", "mt5:Zenith-MT5:1001", "medium"]]
    right = header.index("alerts") + len("alerts")
    assert [r[:right].rstrip()[-2:].strip() for r in rows] == ["1", "12", "1"]
    assert all(r[right - 1] != " " for r in rows), "numbers end under the header's end"
    assert out[-1] == "3 open cases (14 alerts)"
    assert run(config, "list", "--tenant", "zenith", "--severity", "medium") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 open cases in zenith (1 alerts)"


def test_the_actions_are_recorded_with_their_actor(config: Path, capsys: pytest.CaptureFixture[str],
                                                   store: Store) -> None:
    assert run(config, "assign", "a3", "--to", "ana", "--as", "lead") == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith(": assign to ana by lead; now open, assigned to ana")
    case_id = line.split(":")[0]
    assert run(config, "ack", case_id, "--as", "ana") == 0
    assert run(config, "note", case_id, "--text", "asked for payslips", "--as", "ana") == 0
    assert run(config, "close", case_id, "--reason", "false_positive", "--note", "salary", "--as", "ana") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{case_id}: close (false_positive) by ana; now closed, assigned to ana")
    assert run(config, "list", "--status", "closed", "--assignee", "ana") == 0
    assert case_id in capsys.readouterr().out
    assert run(config, "reopen", case_id, "--as", "bo", "--note", "more deposits") == 0
    assert run(config, "show", case_id) == 0
    out = capsys.readouterr().out
    assert "status     open" in out and "a11" in out and "psp:skrill:a0-1" in out
    history = out[out.index("history"):]
    for actor, action, detail in (("system", "open", "12 alert(s)"), ("lead", "assign", "to ana"),
                                  ("ana", "close", "false_positive: salary"),
                                  ("bo", "reopen", "more deposits")):
        assert any(actor in line and action in line and detail in line for line in history.splitlines())
    actors = store.query(f"SELECT actor, action FROM alert_actions WHERE case_id = '{case_id}' "
                         "ORDER BY at")[1]
    assert actors == [("system", "open"), ("lead", "assign"), ("ana", "acknowledge"), ("ana", "note"),
                      ("ana", "close"), ("bo", "reopen")]


def test_the_default_actor_is_the_user(config: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "carol")
    assert run(config, "note", "b1", "--text", "hello") == 0
    assert capsys.readouterr().out.strip().endswith("note by carol; now open")


def test_a_retry_with_the_same_action_id_is_one_action(config: Path, store: Store) -> None:
    for _ in range(2):
        assert run(config, "note", "b1", "--text", "once", "--as", "ana", "--action-id", "cli-retry-1") == 0
    assert store.scalar("SELECT count() FROM alert_actions WHERE action = 'note'") == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["show", "nope"], "no case or alert 'nope'"),
    (["assign", "C-0000000000", "--to", "ana", "--as", "x"], "no case or alert 'C-0000000000'"),
    (["close", "b1", "--reason", "bored", "--as", "x"], "--reason 'bored': one of false_positive"),
    (["close", "b1", "--reason", "other", "--as", "x"], "needs a note"),
    (["reopen", "b1", "--as", "x"], "only a closed case reopens"),
    (["list", "--status", "shut"], "--status 'shut': one of open, closed, all"),
    (["list", "--severity", "huge"], "--severity 'huge'"),
    (["list", "--tenant", "nobody"], "no tenant nobody (tenants are acme, zenith)"),
    (["list", "--database", "nothing_here"], "no database nothing_here"),
    (["note", "b1", "--text", " ", "--as", "x"], "--text is empty"),
    (["note", "b1", "--text", "x", "--as", "two words"], "a name without spaces"),
    (["show", "z1", "--tenant", "acme"], "no case or alert 'z1'"),
])
def test_a_mistake_is_one_line_and_exit_2(shared_config: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    assert run(shared_config, *argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("brokerstream: ") and message in err, err


def test_every_alerts_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("list", "show", "assign", "ack", "note", "close", "reopen"):
        with pytest.raises(SystemExit) as done:
            main(["alerts", action, "--help"])
        assert done.value.code == 0
        assert "--config" in capsys.readouterr().out


def test_a_store_held_by_an_engine_is_one_line(tmp_path: Path) -> None:
    """The embedded store opens in one process: while another holds it, `alerts list` says so
    in one line (exit 2, as `sql` says it) instead of the engine's own messages."""
    dsn = f"chdb://{tmp_path / 'ch'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pipelines.store import open_store
            store = open_store({dsn!r}, "brokerstream")
            print("holding", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        path = tmp_path / "brokerstream.yaml"
        path.write_text(yaml.safe_dump({**TEST_CONFIG, "clickhouse": {"dsn": dsn}}), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "brokerstream.cli", "alerts", "list",
                               "--config", str(path)],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    finally:
        holder.communicate("\n", timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "in use by another process" in done.stderr, done.stderr
