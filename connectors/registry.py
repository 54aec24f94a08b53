"""Which connector reads which raw topic, and the one place raw messages become canonical
records or dead letters. Nothing here raises: whatever cannot be read is kept with its reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors import mt4, mt5_accounts
from connectors.crm import read_crm_account
from connectors.ctrader import read_ctrader_event
from connectors.fields import Rejected, Stage, from_epoch_ms
from connectors.mt5 import read_mt5_deal
from connectors.mt5_fast import read_mt5_trade_fast
from connectors.psp.common import psp_readers
from connectors.routing import Router
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, BalanceOperation, DeadLetter, Deal, Login, Quote

Record = Deal | BalanceOperation | DeadLetter | Login | Quote | AccountUpdate
Reader = Callable[[Envelope, Router], Any]

# Platform connectors: they need only the router (server -> tenant).
READERS: dict[str, Reader] = {
    "mt5.deals": read_mt5_deal,
    "mt5.users": mt5_accounts.read_mt5_users,
    "mt5.logins": mt5_accounts.read_mt5_login,
    "mt5.ticks": mt5_accounts.read_mt5_tick,
    "crm.accounts": read_crm_account,
    "mt4.trades": mt4.read_mt4_trade,
    "mt4.users": mt4.read_mt4_users,
    "mt4.logins": mt4.read_mt4_online,
    "mt4.ticks": mt4.read_mt4_tick,
    "ctrader.events": read_ctrader_event,
}


def readers_for(settings: Any) -> dict[str, Reader]:
    """Every connector, the payment providers' bound to their configuration."""
    return {**READERS, **psp_readers(settings)}


def dead_letter(env: Envelope, reason: str, stage: Stage, tenant: str = "") -> DeadLetter:
    return DeadLetter.from_checked(
        dl_key=env.source,
        tenant=tenant,
        topic=env.topic,
        partition=env.partition,
        offset=env.offset,
        key=env.key,
        raw=env.value,
        headers=dict(env.headers),
        reason=reason,
        stage=stage,
        time=from_epoch_ms(env.timestamp_ms),
    )


# Readers of a topic's common case (None: not theirs, the topic's reader decides).
FAST_READERS: dict[str, Callable[[Envelope, Router], Record | None]] = {
    "mt5.deals": read_mt5_trade_fast,
}


class Normaliser:
    """Raw envelopes -> canonical records, with dead letters for everything unreadable."""

    def __init__(self, router: Router, readers: dict[str, Reader] | None = None) -> None:
        self.router = router
        self.readers = READERS if readers is None else readers
        self.fast = {topic: FAST_READERS[topic] for topic in self.readers if topic in FAST_READERS}

    def __call__(self, env: Envelope) -> list[Record]:
        fast = self.fast.get(env.topic)
        if fast is not None:
            try:
                record = fast(env, self.router)
            except Exception:  # a fast path's bug: the topic's reader still reads the message
                record = None
            if record is not None:
                return [record]
        reader = self.readers.get(env.topic)
        if reader is None:
            return [dead_letter(env, f"no connector reads topic {env.topic!r}", "route")]
        try:
            out = reader(env, self.router)
        except Rejected as exc:
            return [dead_letter(env, exc.reason, exc.stage)]
        except Exception as exc:  # a connector bug must not stop the flow: keep the message
            return [dead_letter(env, f"connector error: {type(exc).__name__}: {exc}", "validate")]
        return out if isinstance(out, list) else [out]
