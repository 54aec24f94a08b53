"""The columnar reader of MT5 deal batches stores exactly what the general reader's records
store: every row it builds equals, column by column after the Arrow conversion the store does,
the row of `connectors.mt5.read_mt5_deal`'s record for that message. What it leaves (a balance
operation, a dead letter, a value outside its shapes) the one-message readers read as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.mt5 import read_mt5_deal
from connectors.mt5_columns import SCHEMA, Mt5DealColumns
from connectors.routing import Router
from connectors.server_time import ServerClock
from pipelines.tables import to_row
from schemas.envelope import Envelope
from schemas.events import Deal
from tests.helpers import T0, envelope, mt5_deal
from tests.test_poison_pills import SETTINGS, VALUES, dumps, mutate

ROUTER = Router(SETTINGS)
SERVER = SETTINGS.tenants[0].servers[0].name
_VALUES = st.one_of(VALUES, st.sampled_from(["1", "0", "1.5", "13", "14", "2", "3", "0100", "100000",
                                             "", "99999999999999999", "1.000000005"]))


def _stored(record: Deal) -> dict[str, Any]:
    """A record's row as the store sends it (Arrow, the deals table's types)."""
    values = dict(zip(SCHEMA.names, to_row(record)[1], strict=True))
    return pa.Table.from_pylist([values], schema=SCHEMA).to_pylist()[0]


def _check(envs: list[Envelope], reader: Mt5DealColumns | None = None) -> tuple[int, int]:
    read = (reader or Mt5DealColumns(ROUTER))(envs)
    rows = read.table.to_pylist()
    left = set(read.left)
    assert len(rows) + len(left) == len(envs)
    taken = [i for i in range(len(envs)) if i not in left]
    for i, row in zip(taken, rows, strict=True):
        record = read_mt5_deal(envs[i], ROUTER)
        assert isinstance(record, Deal), record
        assert row == _stored(record)
    # what it leaves goes to the one-message readers: at most a little slower, never different
    return len(rows), len(left)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_batches_of_mutated_messages_equal_the_general_reader(data: st.DataObject) -> None:
    envs = []
    for _ in range(data.draw(st.integers(1, 6))):
        doc = mutate(data.draw, mt5_deal(Action=data.draw(st.sampled_from(["0", "1", "13", "14", "2"]))))
        event = data.draw(st.sampled_from([None, "add", "update", "delete", "bogus"]))
        server = data.draw(st.sampled_from([SERVER, SERVER, "unknown-server"]))
        envs.append(envelope(dumps(doc), server=server, event=event,
                             ts=T0 + data.draw(st.integers(0, 10**6))))
    _check(envs)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(sorted(mt5_deal())), _VALUES, max_size=6),
                min_size=1, max_size=8))
def test_any_values_in_known_fields_agree(batch: list[dict[str, Any]]) -> None:
    _check([envelope(dumps({**mt5_deal(), **fields}), server=SERVER) for fields in batch])


def test_a_clean_batch_is_read_whole_and_the_rest_is_left() -> None:
    clean = [envelope(mt5_deal(Deal=str(1000 + i), Volume=str(10_000 * (i + 1)), VolumeExt=""),
                      server=SERVER) for i in range(50)]
    assert _check(clean) == (50, 0)
    odd = [
        envelope(mt5_deal(Action="2"), server=SERVER),  # a balance operation
        envelope(orjson.dumps({**mt5_deal(), "Price": 1.085}), server=SERVER),  # a number
        envelope(mt5_deal(Price="1.085000001"), server=SERVER),  # a 9th decimal
        envelope(b"not json", server=SERVER),
        envelope(b"[1, 2]", server=SERVER),
        envelope(mt5_deal(TimeMsc="1", Time="1"), server=SERVER),  # 1970: not plausible
    ]
    assert _check(clean[:3] + odd + clean[3:6]) == (6, len(odd))


def test_server_clocks_per_quarter_hour_equal_the_per_message_conversion() -> None:
    # a zone with daylight saving: every quarter hour around both changes of 2024
    clock = ServerClock(zone=ZoneInfo("Europe/Athens"))
    starts = [datetime(2024, 3, 31, 0, tzinfo=UTC), datetime(2024, 10, 27, 0, tzinfo=UTC)]
    local = np.array([int(s.timestamp() * 1000) + k * 60_000 + 7 for s in starts for k in range(300)])
    infos = [type("Info", (), {"clock": clock})()] * len(local)
    got = Mt5DealColumns._to_utc(local, infos)  # type: ignore[arg-type]
    assert got.tolist() == [clock.to_utc_ms(int(ms)) for ms in local]
