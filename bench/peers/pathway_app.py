"""The Pathway leg of bench/bench_peers.py (runs in its own venv: pathway, chdb, ...).

The same job, the Pathway way: pw.io.kafka.read over the shared topic (raw bytes with metadata,
mode="static": what the topic holds, then the run ends), a UDF parsing each deal with
common.parse_deal, groupby/reduce for the net position per (account, symbol) and the exposure
per symbol, and three Python connectors (pw.io.python.write observers) into chdb: deals as Arrow
once BATCH rows are buffered at a closed minibatch, positions and exposure as each minibatch's
latest values. One Pathway worker (PATHWAY_THREADS, default 1).

    pathway-venv/bin/python bench/peers/pathway_app.py --bootstrap H:P --topic T --dsn chdb:///d
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import common
import pathway as pw

# the deals row as a typed tuple (DEAL_COLUMNS order), so Pathway knows the element types
DealTuple = tuple[str, str, int, int, int, int, str, str, str, int, int, float, float, float, float,
                  int, int, int]


class _Shared:
    """One chdb client per process (embedded ClickHouse); observers may run on engine threads."""

    def __init__(self, dsn: str) -> None:
        self.ch = common.client(dsn)
        self.lock = threading.Lock()
        self.rows = 0


class DealsObserver(pw.io.python.ConnectorObserver):
    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._buf: list[common.Row] = []

    def on_change(self, key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if is_addition:
            self._buf.append(row["p"])

    def _flush(self) -> None:
        with self._shared.lock:
            common.insert_deals(self._shared.ch, self._buf)
            self._shared.rows += len(self._buf)
        self._buf = []

    def on_time_end(self, time: int) -> None:
        if len(self._buf) >= common.BATCH:
            self._flush()

    def on_end(self) -> None:
        self._flush()


class LatestObserver(pw.io.python.ConnectorObserver):
    """Upsert stream -> the latest value per key of each closed minibatch."""

    def __init__(self, shared: _Shared, kind: str) -> None:
        self._shared = shared
        self._kind = kind
        self._latest: dict[Any, Any] = {}

    def on_change(self, key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if not is_addition:
            return  # an update is a retraction plus an addition in the same minibatch
        if self._kind == "positions":
            self._latest[(row["login"], row["symbol"])] = row["net"]
        else:
            self._latest[row["symbol"]] = row

    def on_time_end(self, time: int) -> None:
        if not self._latest:
            return
        with self._shared.lock:
            ch = self._shared.ch
            if self._kind == "positions":
                common.write_positions(ch, self._latest, time)
            else:
                rows = [[s, r["net"], r["units"], r["units"] * r["price"], time]
                        for s, r in self._latest.items()]
                ch.insert("exposure", rows, column_names=["symbol", "net_volume", "net_units",
                                                          "notional", "seq"])
        self._latest = {}

    def on_end(self) -> None:
        self.on_time_end(2**63 - 1)


@pw.udf(deterministic=True)
def parse(data: bytes, meta: pw.Json) -> DealTuple:
    doc = meta.value
    assert isinstance(doc, dict)
    headers = {k: base64.b64decode(v).decode() if v is not None else "" for k, v in doc["headers"]}
    return common.parse_deal(data, headers.get("server", ""), headers.get("event", ""),
                             int(doc["partition"]), int(doc["offset"]))  # type: ignore[return-value]


def main() -> None:
    args = common.peer_args()
    shared = _Shared(args.dsn)

    raw = pw.io.kafka.read(
        {"bootstrap.servers": args.bootstrap, "group.id": "bench-pathway",
         "auto.offset.reset": "earliest", "enable.auto.commit": "false"},
        topic=args.topic, format="raw", mode="static", with_metadata=True, autogenerate_key=True,
    )
    deals = raw.select(p=parse(pw.this.data, pw.this._metadata))
    moves = deals.select(
        login=pw.this.p[common.I_LOGIN], symbol=pw.this.p[common.I_SYMBOL],
        signed=pw.this.p[common.I_SIGNED], contract=pw.this.p[common.I_CONTRACT],
        price=pw.this.p[common.I_PRICE],
    ).filter(pw.this.signed != 0)
    moves = moves.with_columns(units=pw.this.signed / common.VOLUME_SCALE * pw.this.contract)
    positions = moves.groupby(pw.this.login, pw.this.symbol).reduce(
        pw.this.login, pw.this.symbol, net=pw.reducers.sum(pw.this.signed))
    exposure = moves.groupby(pw.this.symbol).reduce(
        pw.this.symbol, net=pw.reducers.sum(pw.this.signed), units=pw.reducers.sum(pw.this.units),
        price=pw.reducers.latest(pw.this.price))

    pw.io.python.write(deals, DealsObserver(shared))
    pw.io.python.write(positions, LatestObserver(shared, "positions"))
    pw.io.python.write(exposure, LatestObserver(shared, "exposure"))
    common.ready()
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    common.done(shared.rows)


if __name__ == "__main__":
    main()
