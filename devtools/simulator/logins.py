"""Logins: where and on what clients connect from.

A client connects from home (its home /24, the last octet changing now and then as ISPs
re-assign addresses), from its phone (the country's mobile carrier block), sometimes through a
VPN (a hosting block, often abroad) and, when travelling, from the country it is in. Each
client has one to three devices (MT5 ComputerID, client type and build). Mistyped passwords
give an occasional failed login before the successful one.

MT5 publishes IMTOnline records on `mt5.logins`, MT4 ConOnline records on `mt4.logins` (the
kind in the `event` header); cTrader's Open API has no login events, so cTrader accounts have
none either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devtools.simulator import emit
from devtools.simulator.geo import BY_CODE, GEOIP, haversine_km, ip_text, mt4_ip
from devtools.simulator.world import Client, Device, SimAccount

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage
    from devtools.simulator.typologies import Case

WEEK = 7 * 86_400_000
HOUR = 3_600_000


class Logins:
    def __init__(self, sim: Brokerage) -> None:
        self.sim = sim
        self.last: dict[int, tuple[int, str]] = {}  # client cid -> (time, country) of last login
        self.travel: dict[int, tuple[int, int, str]] = {}  # cid -> (from, to, country)
        self.vpn: set[int] = set()
        self.counter = 0

    def plan_travel(self, clients: list[Client], horizon_ms: int, start_ms: int) -> None:
        """A few clients travel (days abroad) or use a VPN during the window."""
        rng = self.sim.rng
        countries = [c for c in BY_CODE.values() if c.w_global > 0]
        for client in clients:
            r = rng.random()
            if r < 0.03:
                dest = rng.choice([c for c in countries if c.code != client.country.code])
                begin = start_ms + int(rng.random() * horizon_ms)
                self.travel[client.cid] = (begin, begin + rng.randint(2, 12) * 86_400_000, dest.code)
            elif r < 0.045:
                self.vpn.add(client.cid)

    def where(self, client: Client, device: Device) -> tuple[int, str]:
        """(IP, country) the client connects from now."""
        sim = self.sim
        rng = sim.rng
        now = sim.now
        trip = self.travel.get(client.cid)
        if trip is not None and trip[0] <= now < trip[1]:
            dest = BY_CODE[trip[2]]
            last = self.last.get(client.cid)
            flight = 0.0
            if last is not None and last[1] != dest.code:
                flight = (haversine_km(BY_CODE[last[1]], dest) / 800.0 + 2.0) * HOUR
            if last is None or now - last[0] >= flight:
                block = rng.choice(GEOIP.residential[dest.code] + GEOIP.mobile[dest.code])
                return block.base | rng.randrange(1, 65_535), dest.code
        elif trip is not None and now >= trip[1]:
            # back home takes the flight too: until then the client is still where it was
            last = self.last.get(client.cid)
            if last is not None and last[1] == trip[2] != client.country.code:
                dest = BY_CODE[trip[2]]
                home = (haversine_km(dest, client.country) / 800.0 + 2.0) * HOUR
                if now - last[0] < home:
                    block = rng.choice(GEOIP.residential[dest.code] + GEOIP.mobile[dest.code])
                    return block.base | rng.randrange(1, 65_535), dest.code
        if client.cid in self.vpn and rng.random() < 0.25:
            code = rng.choice(tuple(GEOIP.hosting))
            block = rng.choice(GEOIP.hosting[code])
            return block.base | (rng.randrange(0, 64) << 8) | rng.randrange(1, 255), code
        if device.client_type in (4, 5) and rng.random() < 0.75:
            return client.mobile.base | rng.randrange(1, 65_535), client.country.code
        epoch = (now // WEEK + client.cid) // rng.choice((1, 1, 1, 2))
        return client.home_net | (1 + (client.cid * 31 + epoch * 7) % 253), client.country.code

    def device(self, client: Client) -> Device:
        devices = client.devices
        if len(devices) == 1:
            return devices[0]
        return devices[0] if self.sim.rng.random() < 0.6 else self.sim.rng.choice(devices)

    def login(self, acc: SimAccount, kind: str = "login", *, ip: int = 0, country: str = "",
              device: Device | None = None, case: Case | None = None) -> str:
        """A login / logout / failed record for the account now; its event id ("" on cTrader)."""
        sim = self.sim
        srv = acc.server
        if srv.platform == "ctrader":
            return ""
        client = acc.client
        device = device or self.device(client)
        if not ip:
            ip, country = self.where(client, device)
        t_s = (sim.now + srv.offset_ms) // 1000
        utc_ms = t_s * 1000 - srv.offset_ms
        eid = f"{srv.platform}:{srv.name}:{acc.login}:{utc_ms}:{kind}"
        key = str(acc.login)
        if srv.platform == "mt5":
            srv.next_session += 1
            doc = emit.mt5_online(session=srv.next_session, login=acc.login, group=acc.group,
                                  address=ip_text(ip), client_type=device.client_type,
                                  build=device.build, t_server_s=t_s, device=device.device_id)
            sim.emit("mt5.logins", key, doc, {"server": srv.name, "event": kind}, case, eid)
        else:
            self.counter += 1
            doc = emit.mt4_online(login=acc.login, ip=mt4_ip(ip), counter=self.counter,
                                  t_server_s=t_s)
            sim.emit("mt4.logins", key, doc, {"server": srv.name, "event": kind}, case, eid)
        if kind == "login":
            self.last[client.cid] = (sim.now, country or client.country.code)
            acc.last_access_ms = sim.now
        return eid
