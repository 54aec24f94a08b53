"""A wheel install works like a checkout: every file the code reads at run time (migrations,
rules, symbols, policies, dashboards, the page's static files, the simulator's data, the local
Kafka's pom) is package data found through `importlib.resources`, not a path into the source tree.

The wheel is built from this checkout and installed into a directory of its own, which comes
first on the path (its dependencies are the test virtualenv's); every command runs from outside
the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import bound

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    dist, site = root / "dist", root / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(REPO)], check=True, timeout=bound(300), capture_output=True)
    (wheel,) = dist.glob("brokerstream-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, timeout=bound(300), capture_output=True)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "BROKERSTREAM_HOME": str(cwd / "home")}
    for name in ("BROKERSTREAM_CONFIG", "BROKERSTREAM_CLICKHOUSE", "BROKERSTREAM_KAFKA"):
        env.pop(name, None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=bound(600))


def test_the_installed_packages_come_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = _run(installed, tmp_path, "-c", "import pipelines, schemas, services, devtools; "
               "print(pipelines.__file__, schemas.__file__, services.__file__, devtools.__file__)")
    assert out.returncode == 0, out.stderr
    assert all(path.startswith(str(installed)) for path in out.stdout.split()), out.stdout


def test_package_data_is_in_the_wheel(installed: Path, tmp_path: Path) -> None:
    probe = (
        "from importlib.resources import files\n"
        "print(len(list(files('schemas').joinpath('migrations').iterdir())))\n"
        "print(sum(p.name.endswith('.json') for p in files('dashboards').iterdir()))\n"
        "print(files('services').joinpath('dashboard/static/index.html').is_file())\n"
        "print(files('risk_rules').joinpath('default_rules.yaml').is_file())\n"
        "print(files('withdrawals').joinpath('default_policy.yaml').is_file())\n"
    )
    out = _run(installed, tmp_path, "-c", probe)
    assert out.returncode == 0, out.stderr
    migrations, dashboards, page, rules, policy = out.stdout.split()
    assert int(migrations) == len(list((REPO / "schemas" / "migrations").glob("*.sql")))
    assert int(dashboards) == len(list((REPO / "dashboards").glob("*.json")))
    assert (page, rules, policy) == ("True", "True", "True")


def test_a_replay_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    # the example configuration without its paths into the checkout (the simulator's reference
    # data); its commissions file beside it
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {k: v for k, v in doc.get("rules", {}).items() if k not in ("geoip", "sanctions")}
    (tmp_path / "commissions.yaml").write_text((REPO / "examples" / "commissions.yaml").read_text())
    config = tmp_path / "brokerstream.yaml"
    config.write_text(yaml.safe_dump(doc))
    cli = ("-m", "brokerstream.cli")

    checked = _run(installed, tmp_path, *cli, "config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    made = _run(installed, tmp_path, *cli, "simulate-mt5", "--events", "2000", "--out", "deals.jsonl",
                "--config", str(config))
    assert made.returncode == 0, made.stderr
    replayed = _run(installed, tmp_path, *cli, "replay", "deals.jsonl", "--config", str(config),
                    "--progress-every", "0")
    assert replayed.returncode == 0, replayed.stderr
    counted = _run(installed, tmp_path, *cli, "sql", "--config", str(config), "--format", "csv",
                   "SELECT count() > 0, (SELECT count() FROM schema_migrations) FROM deals")
    assert counted.returncode == 0, counted.stderr
    stored, migrated = counted.stdout.strip().splitlines()[-1].split(",")
    assert stored in ("1", "true")
    assert int(migrated) == len(list((REPO / "schemas" / "migrations").glob("*.sql")))


def test_without_a_configuration_the_error_says_what_to_pass(installed: Path, tmp_path: Path) -> None:
    out = _run(installed, tmp_path, "-m", "brokerstream.cli", "config")
    assert out.returncode != 0
    assert "--config" in out.stderr and "Traceback" not in out.stderr
