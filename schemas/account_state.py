"""The latest state of an account, merged from every source that speaks about it.

Platform user records, account-state snapshots and CRM/KYC events each fill the fields they
own (None = "says nothing"). For each field the newest update (by version: event time, then
event type) wins, so the result does not depend on the order topics are consumed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import ACCOUNT_FIELDS, Account, AccountUpdate

# Defaults of text/number fields when no source has said anything yet.
_EMPTY: dict[str, Any] = {name: Account.model_fields[name].default for name in ACCOUNT_FIELDS}


@dataclass
class AccountState:
    first_seen: datetime
    fields: dict[str, tuple[Any, int]] = field(default_factory=dict)  # name -> (value, version)
    version: int = 0
    updated_at: datetime | None = None
    source: str = ""


def merge_account(state: AccountState | None, update: AccountUpdate) -> tuple[AccountState, Account]:
    """Fold one update into the account's state and return the merged account."""
    if state is None:
        state = AccountState(first_seen=update.time)
    values = update.__dict__
    for name in ACCOUNT_FIELDS:
        value = values[name]
        if value is None:
            continue
        held = state.fields.get(name)
        if held is None or update.version >= held[1]:
            state.fields[name] = (value, update.version)
    if update.version >= state.version:
        state.version, state.updated_at, state.source = update.version, update.time, update.source
    state.first_seen = min(state.first_seen, update.time)
    merged = dict(_EMPTY)
    merged.update({name: value for name, (value, _) in state.fields.items()})
    account = Account.trusted({
        "account_key": update.account_key,
        "tenant": update.tenant,
        "platform": update.platform,
        "server": update.server,
        "login": update.login,
        **merged,
        "first_seen": state.first_seen,
        "updated_at": state.updated_at or update.time,
        "version": state.version,
        "source": state.source,
    })
    return state, account
