"""Who a raw message belongs to: the `server` header names the platform server, and the
configuration says which tenant owns that server.

The configuration types live above the connectors (`pipelines/config.py`); what the router reads of
them is spelled out here as protocols (`ServerSpec`, `ServerDirectory`), so the connectors depend on
no layer above them (ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from connectors.fields import Rejected
from connectors.server_time import UTC_CLOCK, ServerClock
from schemas.envelope import Envelope

DEAL_EVENTS = frozenset({"add", "update", "delete"})


class ServerSpec(Protocol):
    """One platform server as configured (`pipelines.config.ServerConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def platform(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def deposit_assets(self) -> Mapping[int, str]: ...
    def clock(self) -> ServerClock: ...


class ServerDirectory(Protocol):
    """Who owns which server (`pipelines.config.Settings`)."""

    def server_index(self) -> Mapping[str, tuple[str, ServerSpec]]: ...


@dataclass(frozen=True)
class ServerInfo:
    tenant: str
    server: ServerSpec
    # the server's wall clock -> UTC (zone or fixed offset), resolved once per server
    clock: ServerClock = UTC_CLOCK


class Router:
    """Resolves the tenant and server of an envelope from configuration."""

    def __init__(self, settings: ServerDirectory) -> None:
        self._servers = {
            name: ServerInfo(tenant, server, server.clock())
            for name, (tenant, server) in settings.server_index().items()
        }

    def server_of(self, env: Envelope, platform: str) -> ServerInfo:
        name = env.headers.get("server")
        if not name:
            raise Rejected("missing 'server' header: the bridge must name its platform server", "route")
        info = self._servers.get(name)
        if info is None:
            raise Rejected(f"server {name!r} is not assigned to any tenant in the configuration", "route")
        if info.server.platform != platform:
            raise Rejected(
                f"server {name!r} is configured as {info.server.platform}, "
                f"but the message came on {env.topic!r}",
                "route",
            )
        return info

    @staticmethod
    def deal_event(env: Envelope) -> str:
        event = env.headers.get("event", "add") or "add"
        if event not in DEAL_EVENTS:
            raise Rejected(f"'event' header must be add, update or delete, got {event!r}", "route")
        return event
