"""A bad configuration fails at start, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerstream.cli import main
from pipelines.config import ConfigError, load_settings, parse_settings
from tests.conftest import EXAMPLE_CONFIG


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE_CONFIG)
    assert {t.id for t in settings.tenants} == {"acme", "zenith"}
    assert settings.server_index()["ACME-MT4-Live"][1].utc_offset_minutes == 120


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"tenants": []}, "tenants"),
        ({"tenants": [{"id": "a", "servers": [{"name": "S", "platform": "mt6"}]}]},
         "tenants.0.servers.0.platform"),
        ({"tenants": [{"id": "a", "servers": [{"name": "S", "platform": "mt5", "currency": "usd"}]}]},
         "tenants.0.servers.0.currency"),
        ({"tenants": [{"id": "a", "servers": [{"name": "S", "platform": "mt5"}]}],
          "kafka": {"partitions": 0}}, "kafka.partitions"),
        ({"tenants": [{"id": "a", "servers": [{"name": "S", "platform": "mt5"}]}],
          "clickhouse": {"dsn": "mysql://x"}}, "clickhouse.dsn"),
        ({"tenants": [{"id": "a", "servers": [{"name": "S", "platform": "mt5"}]}],
          "pipeline": {"batch_rows": "many"}}, "pipeline.batch_rows"),
        ({"tenants": [{"id": "a", "servers": [{"name": "S", "platform": "mt5"}]}], "kafak": {}},
         "kafak"),
    ],
)
def test_bad_values_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_settings(doc, "x.yaml")


def test_server_in_two_tenants_is_refused() -> None:
    server = {"name": "S", "platform": "mt5"}
    doc = {"tenants": [{"id": "a", "servers": [server]}, {"id": "b", "servers": [server]}]}
    with pytest.raises(ConfigError, match="server 'S' is listed for tenants 'a' and 'b'"):
        parse_settings(doc)


def test_cli_reports_config_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants:\n  - id: Acme Corp\n    servers: []\n")
    assert main(["config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "tenants.0.id" in err and "tenants.0.servers" in err


def test_cli_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", "/nonexistent.yaml"]) == 2
    assert "config file not found" in capsys.readouterr().err
