"""Honest webhooks while 1,000 slow clients hold connections to the receiver (slowloris).

Starts a private local broker and the receiver (`run_webhooks`, uvicorn, second process, the
default `receiver` settings unless overridden), measures honest signed notifications alone
(baseline), then again while --slow-clients connections dribble their request line and headers
(or, with --mode body, a body) a byte every --drip-s seconds, reconnecting whenever the server
closes them. Prints honest latency p50/p99 and success in both phases, and what the slow
clients got back (408s, closes). Bounded in count and time; stops everything it started.

    .venv/bin/python bench/bench_slowloris.py --slow-clients 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_webhooks as bw

from services.webhooks import raise_open_files_limit

PROVIDERS: list[str] = list(bw.PROVIDERS)


async def honest_phase(port: int, seconds: float, concurrency: int, offset: int
                       ) -> tuple[list[float], Counter[int]]:
    """Unique signed notifications over keep-alive connections for `seconds`."""
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    counter = iter(range(offset, offset + 10_000_000))

    async def worker() -> None:
        conn = bw.Connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                i = next(counter)
                provider = PROVIDERS[i % len(PROVIDERS)]
                body, headers = bw.BUILDERS[provider](i, int(time.time()))
                await bw.timed_post(conn, provider, body, headers, latencies, codes)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, codes


async def slow_client(port: int, mode: str, drip_s: float, stop: asyncio.Event,
                      stats: Counter[str]) -> None:
    """Connects, sends a start, then a byte per `drip_s` until the server closes it; again."""
    head = b"POST /webhooks/skrill HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if mode == "body":
        head += b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n"
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connections"] += 1
        try:
            writer.write(head)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(4096), drip_s)
                    if data.startswith(b"HTTP/1.1 "):
                        stats[f"answered {data[9:12].decode()}"] += 1
                    stats["closed_by_server"] += 1
                    break
                writer.write(b"a" if mode == "body" else b"X")
                await writer.drain()
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def attack_phase(port: int, args: argparse.Namespace, offset: int
                       ) -> tuple[list[float], Counter[int], Counter[str], int]:
    stop = asyncio.Event()
    stats: Counter[str] = Counter()
    slow = []
    for _ in range(args.slow_clients):  # ramp up: the listen backlog is finite
        slow.append(asyncio.create_task(slow_client(port, args.mode, args.drip_s, stop, stats)))
        if len(slow) % 100 == 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)  # let them all connect
    connected = stats["connections"]
    latencies, codes = await honest_phase(port, args.seconds, args.concurrency, offset)
    stop.set()
    await asyncio.wait(slow, timeout=args.drip_s + 5)
    for t in slow:
        t.cancel()
    return latencies, codes, stats, connected


def summary(name: str, latencies: list[float], codes: Counter[int], seconds: float) -> str:
    ok = codes.get(200, 0)
    total = sum(codes.values())
    return (f"{name}: {total} honest requests in {seconds:.0f}s ({total / seconds:,.0f} req/s), "
            f"success {100 * ok / max(total, 1):.2f}% {dict(sorted(codes.items()))}; latency ms "
            f"p50 {bw.pct(latencies, 50) * 1e3:.1f}  p99 {bw.pct(latencies, 99) * 1e3:.1f}  "
            f"max {max(latencies, default=0) * 1e3:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow-clients", type=int, default=1000)
    ap.add_argument("--mode", choices=("header", "body"), default="header",
                    help="dribble the headers (default) or a body")
    ap.add_argument("--drip-s", type=float, default=1.0, help="a byte this often per client")
    ap.add_argument("--seconds", type=float, default=30, help="each phase (max 300)")
    ap.add_argument("--concurrency", type=int, default=4, help="honest connections")
    ap.add_argument("--header-timeout", type=float, default=None, help="receiver override")
    ap.add_argument("--max-connections", type=int, default=None, help="receiver override")
    ap.add_argument("--providers", default=",".join(bw.PROVIDERS),
                    help="comma-separated providers the honest requests use")
    args = ap.parse_args()
    PROVIDERS[:] = [p for p in args.providers.split(",") if p in bw.BUILDERS]
    args.slow_clients = max(0, min(args.slow_clients, 5000))
    args.seconds = max(1.0, min(args.seconds, 300.0))
    raise_open_files_limit(args.slow_clients + 512)

    from devtools.kafka.local_broker import LocalKafka, ensure_jars

    ensure_jars()
    tmp = Path(tempfile.mkdtemp(prefix="bench-slowloris-"))
    broker = LocalKafka(tmp / "home", progress=lambda _m: None)
    server: subprocess.Popen[bytes] | None = None
    try:
        state = broker.start()
        print(f"local Kafka up at {state.bootstrap}")
        cfg: dict[str, Any] = bw.config(state.bootstrap, f"slow{uuid.uuid4().hex[:6]}.")
        receiver: dict[str, Any] = {}
        if args.header_timeout:
            receiver["header_timeout_s"] = args.header_timeout
        if args.max_connections:
            receiver["max_connections"] = args.max_connections
        if receiver:
            cfg["receiver"] = receiver
        cfg_path = tmp / "bench.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        port = bw.free_port()
        server = subprocess.Popen([sys.executable, bw.__file__, "--serve", str(cfg_path),
                                   str(port)], cwd=bw.REPO,
                                  env={**os.environ, "PYTHONPATH": str(bw.REPO)})
        bw.wait_healthy(f"http://127.0.0.1:{port}", server, 90)
        print(f"receiver on :{port} (receiver settings {receiver or 'default'})")

        lat0, codes0 = asyncio.run(honest_phase(port, args.seconds, args.concurrency, 0))
        print(summary("baseline", lat0, codes0, args.seconds))
        print(f"opening {args.slow_clients} slow clients ({args.mode}, a byte per "
              f"{args.drip_s:g}s) ...")
        lat1, codes1, stats, connected = asyncio.run(attack_phase(port, args, 5_000_000))
        print(summary(f"with {args.slow_clients} slow clients", lat1, codes1, args.seconds))
        print(f"slow clients: {connected} connected after 2 s; in all "
              f"{dict(sorted(stats.items()))}")
        metrics = bw.httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        refused = [line for line in metrics.splitlines()
                   if line.startswith(("brokerstream_webhook_connections_refused_total{",
                                       "brokerstream_webhook_rejected_total{"))]
        print("receiver:", "; ".join(refused) or "(nothing refused)")
    finally:
        bw.stop_receiver(server)
        broker.stop()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
