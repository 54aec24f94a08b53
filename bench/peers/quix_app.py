"""The Quix Streams leg of bench/bench_peers.py (runs in its own venv: quixstreams, chdb, ...).

The same job as the floor, the Quix way: a StreamingDataFrame over the shared topic (raw bytes,
parsed with orjson by common.parse_deal), the net position per (account, symbol) in Quix's keyed
state (RocksDB, keyed by the message key = account, changelog topics on as by default), and a
chdb sink on Quix's BatchingSink API: Quix hands it a batch per topic-partition at every
checkpoint (commit_interval); it inserts the deals as Arrow, the changed positions, and an
exposure snapshot per symbol. Stops after N messages (app.run(count=N)).

    quixstreams-venv/bin/python bench/peers/quix_app.py --bootstrap H:P --topic T --dsn chdb:///d \
        --state-dir DIR --count N
"""

from __future__ import annotations

import logging
from typing import Any

import common
from quixstreams import Application, message_context
from quixstreams.sinks import BatchingSink, SinkBatch
from quixstreams.state import State


class ChdbSink(BatchingSink):
    """Deals (Arrow), latest positions and exposure into embedded ClickHouse."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._ch: Any = None
        self._exposure = common.Exposure()
        self._seq = 0
        self.rows = 0

    def setup(self) -> None:
        if self._ch is None:
            self._ch = common.client(self._dsn)

    def write(self, batch: SinkBatch) -> None:
        rows: list[common.Row] = []
        changed: dict[tuple[int, str], int] = {}
        for item in batch:
            row, net = item.value
            rows.append(row)
            if net is not None:
                changed[(row[common.I_LOGIN], row[common.I_SYMBOL])] = net
                self._exposure.add(row)
        self._seq += 1
        common.insert_deals(self._ch, rows)
        common.write_positions(self._ch, changed, self._seq)
        self._exposure.write(self._ch, self._seq)
        self.rows += len(rows)


def main() -> None:
    args = common.peer_args(("--state-dir", {"required": True}),
                            ("--count", {"type": int, "required": True}))

    app = Application(
        broker_address=args.bootstrap,
        consumer_group="bench-quix",
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer="bytes", key_deserializer="str")
    sdf = app.dataframe(topic)

    def position(value: bytes, key: str, _ts: int, headers: Any, state: State) -> tuple[Any, Any]:
        ctx = message_context()
        row = common.parse_deal(value, common.header(headers, "server"), common.header(headers, "event"),
                                ctx.partition, ctx.offset)
        signed = row[common.I_SIGNED]
        if not signed:
            return row, None
        sym = row[common.I_SYMBOL]
        net = state.get(sym, 0) + signed
        state.set(sym, net)
        return row, net

    sink = ChdbSink(args.dsn)
    sink.setup()  # ClickHouse up before the clock starts (Quix would call setup() itself)
    sdf = sdf.apply(position, stateful=True, metadata=True)
    sdf.sink(sink)
    common.ready()
    app.run(count=args.count, timeout=30.0, collect=False)
    common.done(sink.rows)


if __name__ == "__main__":
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    main()
