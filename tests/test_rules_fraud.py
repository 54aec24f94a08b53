"""Fraud rules: hand-built sequences just under and just over each threshold."""

from __future__ import annotations

from typing import Any

from risk_rules.engine import GeoPoint
from risk_rules.fraud.rules import haversine_km
from tests.test_rules_builders import account, acct, at, deal, engine, feed, login, psp

DE = "4.97.0.1"  # Frankfurt, residential
JP = "43.209.0.1"  # Tokyo, residential
VPN = "13.62.0.1"  # Frankfurt, hosting
AU = "62.161.0.1"  # Sydney, residential


def test_shared_ip_counts_distinct_clients() -> None:
    logins = [login(at(i), login_no=100 + i, ip="9.9.9.9") for i in range(3)]
    assert feed(engine("shared_ip", min_accounts=4), logins) == []
    # a fourth login of a known account is not a new client
    assert (
        feed(engine("shared_ip", min_accounts=4), [*logins, login(at(4), login_no=100, ip="9.9.9.9")]) == []
    )
    # outside the window the first one is gone
    assert (
        feed(
            engine("shared_ip", min_accounts=4, window_hours=96),
            [*logins, login(at(97), login_no=200, ip="9.9.9.9")],
        )
        == []
    )
    alerts = feed(engine("shared_ip", min_accounts=4), [*logins, login(at(4), login_no=200, ip="9.9.9.9")])
    assert len(alerts) == 1 and alerts[0].subject == "ip:9.9.9.9" and alerts[0].facts["clients"] == 4


def test_shared_ip_same_client_several_accounts() -> None:
    crm = [account(100 + i, client_id="C1") for i in range(4)]
    logins = [login(at(i), login_no=100 + i, ip="9.9.9.9") for i in range(4)]
    assert feed(engine("shared_ip", min_accounts=4), [*crm, *logins]) == []


def test_shared_device() -> None:
    logins = [login(at(i), login_no=100 + i, ip=f"9.9.9.{i}", device="PC1") for i in range(4)]
    alerts = feed(engine("shared_device", min_accounts=4), logins)
    assert len(alerts) == 1 and alerts[0].subject == "device:PC1"
    assert feed(engine("shared_device", min_accounts=4), logins[:3]) == []


def test_haversine() -> None:
    fra, syd = GeoPoint("DE", "", 52.52, 13.40), GeoPoint("AU", "", -33.87, 151.21)
    assert 16000 < haversine_km(fra, syd) < 16200


def test_impossible_travel() -> None:
    # Frankfurt -> Tokyo (~8,900 km) in 10 hours is 890 km/h: a flight
    assert (
        feed(engine("impossible_travel", max_speed_kmh=1000), [login(at(0), ip=DE), login(at(10), ip=JP)])
        == []
    )
    alerts = feed(engine("impossible_travel", max_speed_kmh=1000), [login(at(0), ip=DE), login(at(8), ip=JP)])
    assert len(alerts) == 1 and alerts[0].facts["speed_kmh"] > 1000
    assert alerts[0].facts["from_country"] == "DE" and alerts[0].facts["to_country"] == "JP"
    # a VPN (hosting) address is not a location
    assert feed(engine("impossible_travel"), [login(at(0), ip=AU), login(at(0, 10), ip=VPN)]) == []
    # failed logins do not move the client
    assert (
        feed(engine("impossible_travel"), [login(at(0), ip=DE), login(at(0, 5), ip=JP, kind="failed")]) == []
    )


def test_failed_login_burst_per_account_and_ip() -> None:
    nine = [login(at(0, i), ip="8.8.8.8", kind="failed") for i in range(9)]
    assert feed(engine("failed_logins_account", min_failures=10, window_minutes=30), nine) == []
    late = login(at(0, 31), ip="8.8.8.8", kind="failed")
    assert feed(engine("failed_logins_account", min_failures=10, window_minutes=30), [*nine, late]) == []
    tenth = login(at(0, 20), ip="8.8.8.8", kind="failed")
    alerts = feed(engine("failed_logins_account", min_failures=10, window_minutes=30), [*nine, tenth])
    assert len(alerts) == 1 and alerts[0].subject == acct(100) and alerts[0].facts["failures"] == 10
    spray = [login(at(0, i), login_no=100 + i, ip="8.8.8.8", kind="failed") for i in range(10)]
    alerts = feed(engine("failed_logins_ip", min_failures=10), spray)
    assert len(alerts) == 1 and alerts[0].subject == "ip:8.8.8.8" and len(alerts[0].facts["accounts"]) == 10


def _round_trip(i: int, hold: float, profit: str, login_no: int = 100) -> list:
    pos = f"P{login_no}-{i}"
    return [
        deal(at(i), login_no=login_no, position=pos),
        deal(at(i, seconds=hold), login_no=login_no, side="sell", entry="out", position=pos, profit=profit),
    ]


def test_latency_arbitrage() -> None:
    p: dict[str, Any] = {"max_hold_seconds": 15, "min_trades": 8, "min_win_rate": 0.75, "window_hours": 72}
    seven = [d for i in range(7) for d in _round_trip(i, 5, "12")]
    assert feed(engine("latency_arbitrage", **p), seven) == []
    # the eighth held too long
    assert feed(engine("latency_arbitrage", **p), seven + _round_trip(8, 16, "12")) == []
    alerts = feed(engine("latency_arbitrage", **p), seven + _round_trip(8, 15, "12"))
    assert len(alerts) == 1 and alerts[0].facts["trades"] == 8 and alerts[0].facts["win_rate"] == 1.0
    # a scalper winning half the time
    coin = [d for i in range(12) for d in _round_trip(i, 5, "10" if i % 2 else "-10")]
    assert feed(engine("latency_arbitrage", **p), coin) == []


def test_latency_arbitrage_measures_the_latest_max_trades() -> None:
    p: dict[str, Any] = {"max_hold_seconds": 15, "min_trades": 8, "min_win_rate": 0.75, "window_hours": 72}
    # ten losing scalps, then eight winning ones: over all 18 the win rate is 44 %, over the
    # latest 8 it is 100 %
    history = [d for i in range(10) for d in _round_trip(i, 5, "-10")]
    history += [d for i in range(10, 18) for d in _round_trip(i, 5, "12")]
    assert feed(engine("latency_arbitrage", **p), history) == []
    alerts = feed(engine("latency_arbitrage", **p, max_trades=8), history)
    assert len(alerts) == 1 and alerts[0].facts["trades"] == 8 and len(alerts[0].evidence) == 8


def test_mirror_trades_between_linked_accounts() -> None:
    link = [psp(100, at(0), login=100, fp="card-A"), psp(100, at(0), login=200, fp="card-A")]

    def pairs(n: int, gap: float = 3, lots2: str = "1") -> list:
        out = []
        for i in range(n):
            out += [
                deal(at(i + 1), login_no=100, side="buy", symbol="XAUUSD"),
                deal(at(i + 1, seconds=gap), login_no=200, side="sell", symbol="XAUUSD", lots=lots2),
            ]
        return out

    assert feed(engine("mirror_trades", min_pairs=3), link + pairs(2)) == []
    assert feed(engine("mirror_trades", min_pairs=3, max_gap_seconds=10), link + pairs(3, gap=11)) == []
    assert feed(engine("mirror_trades", min_pairs=3), link + pairs(3, lots2="1.2")) == []
    assert feed(engine("mirror_trades", min_pairs=3), pairs(3)) == []  # not linked
    assert feed(engine("mirror_trades", min_pairs=3, min_pairs_unlinked=6), pairs(5)) == []
    unlinked = feed(engine("mirror_trades", min_pairs=3, min_pairs_unlinked=6), pairs(6))
    assert len(unlinked) == 1 and unlinked[0].facts["link"] == "" and unlinked[0].facts["min_pairs"] == 6
    assert feed(engine("mirror_trades", min_pairs=3, min_pairs_unlinked=0), pairs(9)) == []
    alerts = feed(engine("mirror_trades", min_pairs=3), link + pairs(3))
    assert len(alerts) == 1 and alerts[0].facts["accounts"] == [acct(100), acct(200)]
    assert alerts[0].facts["link"] == "pay:card-A" and len(alerts[0].evidence) == 6
    crm = [account(100, agent="1023"), account(200, agent="1023")]
    alerts = feed(engine("mirror_trades", min_pairs=3), crm + pairs(3))
    assert len(alerts) == 1 and alerts[0].facts["link"] == "ib:1023"
