"""The live simulation runs on one simulated clock: every source (platform deals, accounts,
quotes, logins, CRM, the payment providers' webhooks) is stamped with it, and what a demo's
receiver and engine judge by reads the same clock (devtools/simulator/clock.py)."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.demo import status_line
from devtools.simulator.brokerage import Brokerage
from devtools.simulator.clock import SimClock
from devtools.simulator.payments import MODULES, received_at
from pipelines.config import Settings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation, DeadLetter, Login, Quote
from tests.test_simulator import FIXED, normaliser

EVENTS = 6_000
SEED = 8
MINUTE_MS = 60_000


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Keeps each posted webhook as it arrived, with the simulated clock at its arrival."""

    clock: SimClock
    posted: list[tuple[str, bytes, dict[str, str], int]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posted.append((self.path.rsplit("/", 1)[-1], body, dict(self.headers), self.clock.ms))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


def _world(start_ms: int) -> Brokerage:
    return Brokerage(FIXED, seed=SEED, accounts=400, events=EVENTS, start_ms=start_ms)


def test_every_source_is_stamped_by_the_one_simulated_clock() -> None:
    start = int(time.time() * 1000)
    sim, clock = _world(start), SimClock(start)
    _Receiver.clock, _Receiver.posted = clock, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handed: list[tuple[Envelope, int]] = []

    def publish(envelopes: Any) -> int:
        for env in envelopes:
            handed.append((env, clock.ms))  # the clock when the envelope was handed out
        return len(handed)

    try:
        stats = sim.run_live(publish, rate=0, n=EVENTS, post_url=f"http://127.0.0.1:{server.server_address[1]}",
                             clock=clock, resign=False)
    finally:
        server.shutdown()
    assert stats.posted > 50 and stats.post_failures == 0
    end = clock.ms
    assert end - start > 3_600_000  # the simulated time ran well ahead of the wall clock

    # Platforms, quotes, logins, CRM: each envelope is the clock's time when handed out, and
    # what is stamped "now" (quotes, logins, balance operations) reads back as that time.
    normalise = normaliser(sim)
    topics = set()
    for i, (env, at) in enumerate(handed):
        topics.add(env.topic)
        assert env.timestamp_ms == at and start <= at <= end
        located = Envelope(env.topic, env.value, env.timestamp_ms, env.key, env.headers, -1, i)
        for record in normalise(located):
            assert not isinstance(record, DeadLetter), record.reason
            if isinstance(record, Quote | Login | BalanceOperation):
                assert abs(record.time.timestamp() * 1000 - at) <= 2_000, (env.topic, record)
    assert {"mt5.deals", "mt4.trades", "ctrader.events", "mt5.ticks", "mt4.ticks", "mt5.users",
            "mt4.users", "mt5.logins", "crm.accounts"} <= topics

    # Payments: each posted webhook is the one the simulation made (not re-signed with the wall
    # clock), so the provider's time in it is the simulated time it was made at: within the
    # clock's range of the deals handed out around it.
    twin = _world(start)  # the same seed and plan: the same stream, to know when each was made
    twin.keep_webhooks()
    made = {hook.posted or hook.body: env.timestamp_ms for env, hook in twin.stream(EVENTS) if hook}
    deal_times = sorted(at for env, at in handed if env.topic in ("mt5.deals", "mt4.trades"))
    payments = 0
    for n, (provider, body, headers, arrived) in enumerate(_Receiver.posted):
        assert body in made, provider
        route = MODULES[provider].routing(body, headers)
        env = Envelope(f"psp.{provider}", body, arrived, route.key,
                       {"provider": provider, "content-type": headers.get("Content-Type", ""),
                        "received_at": received_at(arrived), "server": route.server}, -1, n)
        for record in normalise(env):
            assert not isinstance(record, DeadLetter), record.reason
            if isinstance(record, BalanceOperation):
                payments += 1
                psp_ms = record.time.timestamp() * 1000
                assert start <= psp_ms <= end
                if abs(psp_ms - arrived) <= 1:
                    continue  # no time signed (Skrill, CoinsPaid): received_at, the same clock
                # a provider may date a payment when it was initiated: minutes earlier at most
                assert made[body] - 30 * MINUTE_MS <= psp_ms <= made[body] + 2_000, provider
                before = [t for t in deal_times if t <= made[body]]
                after = [t for t in deal_times if t >= made[body]]
                lo = before[-1] if before else start
                hi = after[0] if after else end
                assert lo - 30 * MINUTE_MS <= psp_ms <= hi + 2_000, provider
    assert payments > 50


def test_the_status_line_never_shows_1970() -> None:
    empty = (0, 0, 0, 0, 0, 0, datetime(1970, 1, 1, tzinfo=UTC), 0)
    line = status_line(empty, 1_764_700_000_000)
    assert "1970" not in line and "no deal yet" in line
    some = (12, 3, 40, 5, 0, 0, datetime(2026, 12, 3, 4, 5, 6, tzinfo=UTC), 1)
    line = status_line(some, 1_764_700_000_000)
    assert "latest deal 2026-12-03 04:05:06" in line and "deals       12" in line


def test_the_page_of_an_empty_store_has_no_1970_extent(settings: Settings, chdb_dir: Path) -> None:
    """The demo's page opens before the first rows land: "all data" is no data, not 1970."""
    from fastapi.testclient import TestClient

    from pipelines.store import open_store
    from services.dashboard.server import create_app
    from tests.dashboard_logins import ADMIN, auth_for, log_in

    store = open_store(f"chdb://{chdb_dir}", f"t_{uuid.uuid4().hex[:12]}")
    try:
        with TestClient(create_app(store, auth=auth_for(settings))) as client:
            log_in(client, ADMIN)
            assert client.get("/api/extent").json() == {"from": None, "to": None}
    finally:
        store.close()
