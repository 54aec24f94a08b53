"""Server time zones: every field a platform stamps on the server's wall clock becomes UTC
through the server's zone (IANA name or a named convention), across both DST switches,
including the repeated and the skipped hour; the fixed offset stays as the fallback."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.mt4 import read_mt4_online, read_mt4_tick, read_mt4_trade, read_mt4_user
from connectors.mt5 import read_mt5_deal
from connectors.mt5_accounts import read_mt5_login, read_mt5_tick, read_mt5_users
from connectors.routing import Router
from connectors.server_time import ServerClock, resolve_zone
from pipelines.config import ConfigError, parse_settings
from schemas.envelope import Envelope

HOUR_MS = 3_600_000


def wall_ms(*parts: int) -> int:
    """What a server writes for this wall-clock time: the wall clock read as if it were UTC."""
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


HELSINKI = ServerClock(resolve_zone("Europe/Helsinki"))
NY_CLOSE = ServerClock(resolve_zone("new-york-close"))


def to_utc(clock: ServerClock, *parts: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=clock.to_utc_ms(wall_ms(*parts)))


# -- Europe/Helsinki (EU switch: last Sunday of March / October, 01:00 UTC) ----------------------


def test_helsinki_winter_and_summer_offsets() -> None:
    assert to_utc(HELSINKI, 2024, 1, 15, 12, 0) == utc(2024, 1, 15, 10, 0)  # EET, UTC+2
    assert to_utc(HELSINKI, 2024, 7, 15, 12, 0) == utc(2024, 7, 15, 9, 0)  # EEST, UTC+3


def test_helsinki_spring_forward_and_the_missing_hour() -> None:
    # 2024-03-31: 03:00 EET jumps to 04:00 EEST (01:00 UTC)
    assert to_utc(HELSINKI, 2024, 3, 31, 2, 59, 59) == utc(2024, 3, 31, 0, 59, 59)
    assert to_utc(HELSINKI, 2024, 3, 31, 4, 0) == utc(2024, 3, 31, 1, 0)
    # 03:30 never happened on that wall clock: read with the offset before the switch (+2),
    # i.e. shifted forward to 04:30 EEST
    assert to_utc(HELSINKI, 2024, 3, 31, 3, 30) == utc(2024, 3, 31, 1, 30)
    assert to_utc(HELSINKI, 2024, 3, 31, 3, 30) == to_utc(HELSINKI, 2024, 3, 31, 4, 30)


def test_helsinki_fall_back_and_the_repeated_hour() -> None:
    # 2024-10-27: 04:00 EEST goes back to 03:00 EET (01:00 UTC); 03:00-04:00 happens twice
    assert to_utc(HELSINKI, 2024, 10, 27, 2, 59) == utc(2024, 10, 26, 23, 59)
    # the repeated hour is its first occurrence (fold=0: the summer offset, +3)
    assert to_utc(HELSINKI, 2024, 10, 27, 3, 30) == utc(2024, 10, 27, 0, 30)
    assert to_utc(HELSINKI, 2024, 10, 27, 4, 0) == utc(2024, 10, 27, 2, 0)  # +2 from here on


# -- "GMT+2/+3 with US DST" (New York close: the server's midnight is 17:00 in New York) ---------


def test_new_york_close_switches_on_the_us_dates() -> None:
    # 2024-03-10 07:00 UTC (US spring forward): 09:00 server time jumps to 10:00
    assert to_utc(NY_CLOSE, 2024, 3, 10, 8, 59) == utc(2024, 3, 10, 6, 59)  # still +2
    assert to_utc(NY_CLOSE, 2024, 3, 10, 10, 0) == utc(2024, 3, 10, 7, 0)  # +3
    # between the US and the EU switch the convention is +3 while Helsinki is still +2
    assert to_utc(NY_CLOSE, 2024, 3, 20, 12, 0) == utc(2024, 3, 20, 9, 0)
    assert to_utc(HELSINKI, 2024, 3, 20, 12, 0) == utc(2024, 3, 20, 10, 0)
    # the missing hour (09:00-10:00 server time) is shifted forward
    assert to_utc(NY_CLOSE, 2024, 3, 10, 9, 30) == utc(2024, 3, 10, 7, 30)
    # 2024-11-03 06:00 UTC (US fall back): 09:00 server time goes back to 08:00
    assert to_utc(NY_CLOSE, 2024, 11, 3, 7, 59) == utc(2024, 11, 3, 4, 59)
    assert to_utc(NY_CLOSE, 2024, 11, 3, 8, 30) == utc(2024, 11, 3, 5, 30)  # first occurrence
    assert to_utc(NY_CLOSE, 2024, 11, 3, 9, 0) == utc(2024, 11, 3, 7, 0)  # +2
    # the week after the EU switch back, Helsinki is +2 but New York close still +3
    assert to_utc(NY_CLOSE, 2024, 10, 30, 12, 0) == utc(2024, 10, 30, 9, 0)


@given(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31),
                    timezones=st.just(UTC)))
def test_new_york_close_midnight_is_five_pm_in_new_york(moment: datetime) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    utc_ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    server = datetime(1970, 1, 1) + timedelta(milliseconds=NY_CLOSE.from_utc_ms(utc_ms))
    new_york = moment.astimezone(ZoneInfo("America/New_York")).replace(tzinfo=None)
    assert server == new_york + timedelta(hours=7)


@given(st.integers(min_value=wall_ms(2001, 1, 1), max_value=wall_ms(2099, 1, 1)),
       st.sampled_from([HELSINKI, NY_CLOSE, ServerClock(resolve_zone("Europe/London"))]))
def test_wall_clock_round_trip(utc_ms: int, clock: ServerClock) -> None:
    back = clock.to_utc_ms(clock.from_utc_ms(utc_ms))
    # exact, except the second pass of a repeated hour, which reads as its first pass
    assert back in (utc_ms, utc_ms - HOUR_MS)


def test_fixed_offset_is_the_fallback() -> None:
    assert ServerClock(offset_minutes=120).to_utc_ms(wall_ms(2024, 7, 1, 12)) == wall_ms(2024, 7, 1, 10)
    assert ServerClock().to_utc_ms(wall_ms(2024, 7, 1, 12)) == wall_ms(2024, 7, 1, 12)


def test_clocks_pickle() -> None:
    # Routers (and their clocks) travel to Bytewax workers
    for clock in (HELSINKI, NY_CLOSE):
        copy = pickle.loads(pickle.dumps(clock))
        assert copy.to_utc_ms(wall_ms(2024, 11, 3, 8, 30)) == clock.to_utc_ms(wall_ms(2024, 11, 3, 8, 30))


# -- configuration ---------------------------------------------------------------------------------


def config(**server: Any) -> dict[str, Any]:
    return {"tenants": [{"id": "acme", "servers": [{"name": "S", "platform": "mt4", **server}]}]}


@pytest.mark.parametrize("name", ["Europe/Helsinki", "Etc/GMT-2", "new-york-close",
                                  "GMT+2/+3 with US DST", "gmt+2/+3 us dst"])
def test_zone_names_accepted(name: str) -> None:
    server = parse_settings(config(timezone=name)).tenants[0].servers[0]
    assert server.clock().zone is not None


@pytest.mark.parametrize("name", ["Europe/Helsinky", "GMT+2", "", "../etc/passwd", "EET/EEST"])
def test_bad_zone_fails_at_start_naming_the_field(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(config(timezone=name))
    assert "tenants.0.servers.0.timezone" in str(err.value)
    assert "unknown time zone" in str(err.value) or "empty" in str(err.value)


def test_zone_and_fixed_offset_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="either timezone or utc_offset_minutes"):
        parse_settings(config(timezone="Europe/Helsinki", utc_offset_minutes=120))


# -- every server-time field of the connectors ---------------------------------------------------

SETTINGS = parse_settings({"tenants": [{"id": "acme", "servers": [
    {"name": "MT4-HEL", "platform": "mt4", "timezone": "Europe/Helsinki"},
    {"name": "MT5-NYC", "platform": "mt5", "timezone": "new-york-close"},
]}]})
ROUTER = Router(SETTINGS)
TS = int(utc(2024, 11, 4).timestamp() * 1000)


def env(topic: str, doc: dict[str, Any], server: str, **headers: str) -> Envelope:
    return Envelope(topic=topic, value=orjson.dumps(doc), timestamp_ms=TS, key="1",
                    headers={"server": server, **headers}, partition=0, offset=0)


def seconds(*parts: int) -> int:
    return wall_ms(*parts) // 1000


def test_mt4_trade_open_and_close_times_across_the_switch() -> None:
    # opened in summer (EEST), closed in winter (EET), closing stamped in the repeated hour
    doc = {"order": 7, "login": 100, "symbol": "EURUSD", "cmd": 0, "volume": 10,
           "open_time": seconds(2024, 10, 1, 12), "open_price": "1.1",
           "close_time": seconds(2024, 10, 27, 3, 30), "close_price": "1.2", "profit": "10"}
    deals = read_mt4_trade(env("mt4.trades", doc, "MT4-HEL"), ROUTER)
    assert [d.time for d in deals] == [utc(2024, 10, 1, 9), utc(2024, 10, 27, 0, 30)]


def test_mt4_balance_user_online_and_tick_times() -> None:
    balance = read_mt4_trade(env("mt4.trades", {"order": 8, "login": 100, "cmd": 6, "profit": "5",
                                                "open_time": seconds(2024, 3, 31, 3, 30)},
                                 "MT4-HEL"), ROUTER)
    assert balance[0].time == utc(2024, 3, 31, 1, 30)  # missing hour: shifted forward
    user = read_mt4_user(env("mt4.users", {"login": 100, "regdate": seconds(2024, 1, 2, 12),
                                           "lastdate": seconds(2024, 7, 2, 12)}, "MT4-HEL"), ROUTER)
    assert (user.registration, user.last_access) == (utc(2024, 1, 2, 10), utc(2024, 7, 2, 9))
    online = read_mt4_online(env("mt4.logins", {"login": 100, "time": seconds(2024, 7, 2, 12)},
                                 "MT4-HEL"), ROUTER)
    assert online.time == utc(2024, 7, 2, 9)
    assert online.login_key == f"mt4:MT4-HEL:100:{int(utc(2024, 7, 2, 9).timestamp() * 1000)}:login"
    tick = read_mt4_tick(env("mt4.ticks", {"symbol": "EURUSD", "bid": "1.1", "ask": "1.2",
                                           "ctm": wall_ms(2024, 7, 2, 12, 0, 1)}, "MT4-HEL"), ROUTER)
    assert tick.time == utc(2024, 7, 2, 9, 0, 1)


def test_mt5_deal_user_login_and_tick_times() -> None:
    deal = read_mt5_deal(env("mt5.deals", {
        "Deal": "1", "Login": "5", "Action": "0", "Entry": "0", "Symbol": "EURUSD", "Volume": "10000",
        "ContractSize": "100000", "Price": "1.1", "Time": str(seconds(2024, 3, 20, 12)),
        "TimeMsc": str(wall_ms(2024, 3, 20, 12, 0, 0) + 250)}, "MT5-NYC"), ROUTER)
    assert deal.time == utc(2024, 3, 20, 9, 0, 0) + timedelta(milliseconds=250)  # US DST: +3
    user = read_mt5_users(env("mt5.users", {"Login": "5", "Group": "real",
                                            "Registration": str(seconds(2024, 1, 2, 12)),
                                            "LastAccess": str(seconds(2024, 11, 3, 8, 30))},
                              "MT5-NYC"), ROUTER)
    assert (user.registration, user.last_access) == (utc(2024, 1, 2, 10), utc(2024, 11, 3, 5, 30))
    login = read_mt5_login(env("mt5.logins", {"Login": "5", "Time": str(seconds(2024, 3, 10, 9, 30))},
                               "MT5-NYC"), ROUTER)
    assert login.time == utc(2024, 3, 10, 7, 30)
    assert login.login_key == f"mt5:MT5-NYC:5:{int(utc(2024, 3, 10, 7, 30).timestamp() * 1000)}:login"
    tick = read_mt5_tick(env("mt5.ticks", {"symbol": "EURUSD", "bid": "1.1", "ask": "1.2", "flags": 6,
                                           "time_msc": str(wall_ms(2024, 12, 2, 12))}, "MT5-NYC"), ROUTER)
    assert not isinstance(tick, list) and tick.time == utc(2024, 12, 2, 10)
