"""The floor of bench/bench_peers.py, in the project venv: plain Python, no framework.

bench_e2e's consume loop (confluent-kafka, from offset 0 to each partition's end), orjson decode
of the value (headers: server, event), net volume per (account, symbol) in a dict, deals into
chdb as Arrow every BATCH rows; positions and exposure written once at the end.

    .venv/bin/python bench/peers/floor.py --bootstrap HOST:PORT --topic T --dsn chdb:///dir
"""

from __future__ import annotations

import sys
from pathlib import Path

import common

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, for bench_e2e
from bench_e2e import consume_to_end


def main() -> None:
    args = common.peer_args()
    ch = common.client(args.dsn)
    common.ready()
    positions: dict[tuple[int, str], int] = {}
    exposure = common.Exposure()
    rows: list[common.Row] = []
    n = 0
    for batch in consume_to_end(args.bootstrap, args.topic, group="bench-floor"):
        for msg in batch:
            headers = msg.headers()
            row = common.parse_deal(msg.value(), common.header(headers, "server"),
                                    common.header(headers, "event"), msg.partition(), msg.offset())
            rows.append(row)
            if row[common.I_SIGNED]:
                key = (row[common.I_LOGIN], row[common.I_SYMBOL])
                positions[key] = positions.get(key, 0) + row[common.I_SIGNED]
                exposure.add(row)
        if len(rows) >= common.BATCH:
            common.insert_deals(ch, rows)
            n += len(rows)
            rows = []
    common.insert_deals(ch, rows)
    n += len(rows)
    common.write_positions(ch, positions, 1)
    exposure.write(ch, 1)
    common.done(n)


if __name__ == "__main__":
    main()
