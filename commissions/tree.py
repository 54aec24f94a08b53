"""The partner tree: introducing brokers (IBs), their masters, their plans and their accounts,
all effective-dated.

- An IB has at most one master (its *parent*) at any moment; masters have masters of their
  own, to any depth. An IB can be moved under another master (or to the top) from a date.
- An IB is on one commission plan at any moment; it can change plan from a date.
- An account (`platform:server:login`, as in `AccountUpdate.account_key`) belongs to at most
  one IB at any moment, from the platform's Agent field or from CRM events: `assign`.

Every link holds from its `effective_from` (inclusive, UTC) until the next link of the same
kind; before an IB's first parent link it has no master, before an account's first
assignment it has no IB. The tree is checked whenever links change: an unknown parent or
IB, or a cycle at any moment in time, is refused with an error naming the IBs involved.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class TreeError(ValueError):
    """A partner tree that cannot be used; the message names the IBs involved."""


def utc(moment: datetime) -> datetime:
    """Aware UTC datetime (naive values are taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class IB:
    ib_id: str
    name: str = ""


class Timeline(Generic[T]):
    """Values that hold from a moment on: `at(t)` is the value of the latest link <= t."""

    __slots__ = ("_froms", "_values")

    def __init__(self) -> None:
        self._froms: list[datetime] = []
        self._values: list[T | None] = []

    def set(self, effective_from: datetime, value: T | None) -> None:
        """Add a link; a link at the same moment as an existing one replaces it."""
        moment = utc(effective_from)
        i = bisect.bisect_left(self._froms, moment)
        if i < len(self._froms) and self._froms[i] == moment:
            self._values[i] = value
        else:
            self._froms.insert(i, moment)
            self._values.insert(i, value)

    def at(self, moment: datetime) -> T | None:
        i = bisect.bisect_right(self._froms, utc(moment))
        return self._values[i - 1] if i else None

    def links(self) -> list[tuple[datetime, T | None]]:
        return list(zip(self._froms, self._values, strict=True))

    def copy(self) -> Timeline[T]:
        other: Timeline[T] = Timeline()
        other._froms, other._values = list(self._froms), list(self._values)
        return other


class PartnerTree:
    """IBs with effective-dated masters, plans and accounts."""

    def __init__(self, ibs: Iterable[IB]) -> None:
        self.ibs: dict[str, IB] = {}
        for ib in ibs:
            if ib.ib_id in self.ibs:
                raise TreeError(f"IB {ib.ib_id!r} is defined twice")
            self.ibs[ib.ib_id] = ib
        self._parents: dict[str, Timeline[str]] = {i: Timeline() for i in self.ibs}
        self._plans: dict[str, Timeline[str]] = {i: Timeline() for i in self.ibs}
        self._accounts: dict[str, Timeline[str]] = {}

    # -- building -------------------------------------------------------------------------

    def _known(self, ib_id: str, what: str) -> None:
        if ib_id not in self.ibs:
            raise TreeError(f"{what}: IB {ib_id!r} is not in the partner tree")

    def set_parent(self, ib_id: str, parent: str | None, effective_from: datetime = BEGINNING) -> None:
        """Link `ib_id` under `parent` (None: top level) from `effective_from`; not checked for
        cycles until `validate()` (use `move` for a checked change)."""
        self._known(ib_id, "parent link")
        if parent is not None:
            if parent not in self.ibs:
                raise TreeError(f"IB {ib_id!r}: master {parent!r} is not in the partner tree")
            if parent == ib_id:
                raise TreeError(f"IB {ib_id!r} cannot be its own master")
        self._parents[ib_id].set(effective_from, parent)

    def move(self, ib_id: str, parent: str | None, effective_from: datetime) -> None:
        """Move `ib_id` under `parent` from `effective_from`; refused (tree unchanged) if that
        would make a cycle."""
        self._known(ib_id, "move")
        before = self._parents[ib_id].copy()
        self.set_parent(ib_id, parent, effective_from)
        try:
            self.validate()
        except TreeError:
            self._parents[ib_id] = before
            raise

    def set_plan(self, ib_id: str, plan_id: str | None, effective_from: datetime = BEGINNING) -> None:
        self._known(ib_id, "plan link")
        self._plans[ib_id].set(effective_from, plan_id)

    def assign(self, account_key: str, ib_id: str | None, effective_from: datetime = BEGINNING) -> None:
        """From `effective_from` on, the account's deals belong to `ib_id` (None: to no IB)."""
        if ib_id is not None:
            self._known(ib_id, f"account {account_key}")
        self._accounts.setdefault(account_key, Timeline()).set(effective_from, ib_id)

    def validate(self) -> None:
        """Refuse a cycle at any moment. A cycle can only appear at a moment when some parent
        link changes, and must then pass through an IB whose link changed at that moment."""
        changes: dict[datetime, list[str]] = {}
        for ib_id, timeline in self._parents.items():
            for moment, _ in timeline.links():
                changes.setdefault(moment, []).append(ib_id)
        for moment in sorted(changes):
            for start in sorted(changes[moment]):
                path = [start]
                node = self._parents[start].at(moment)
                while node is not None:
                    path.append(node)
                    if node == start:
                        loop = " > ".join(reversed(path))
                        raise TreeError(
                            f"IB {start!r}: the partner tree has a cycle from "
                            f"{moment.isoformat()}: {loop}"
                        )
                    if len(path) > len(self.ibs) + 1:  # a cycle above `start`, reported there
                        break
                    node = self._parents[node].at(moment)

    # -- reading --------------------------------------------------------------------------

    def parent(self, ib_id: str, at: datetime) -> str | None:
        self._known(ib_id, "parent")
        return self._parents[ib_id].at(at)

    def plan_of(self, ib_id: str, at: datetime) -> str | None:
        self._known(ib_id, "plan")
        return self._plans[ib_id].at(at)

    def ib_of(self, account_key: str, at: datetime) -> str | None:
        timeline = self._accounts.get(account_key)
        return timeline.at(at) if timeline is not None else None

    def chain(self, ib_id: str, at: datetime) -> list[IB]:
        """The IB and its masters at `at`, direct IB first, top-level master last."""
        self._known(ib_id, "chain")
        chain = [self.ibs[ib_id]]
        node = self._parents[ib_id].at(at)
        while node is not None:
            if len(chain) > len(self.ibs):
                raise TreeError(f"IB {ib_id!r}: the partner tree has a cycle at {at.isoformat()}")
            chain.append(self.ibs[node])
            node = self._parents[node].at(at)
        return chain

    def parent_links(self, ib_id: str) -> list[tuple[datetime, str | None]]:
        self._known(ib_id, "parent links")
        return self._parents[ib_id].links()

    def plan_links(self, ib_id: str) -> list[tuple[datetime, str | None]]:
        self._known(ib_id, "plan links")
        return self._plans[ib_id].links()

    def account_links(self) -> dict[str, list[tuple[datetime, str | None]]]:
        return {key: timeline.links() for key, timeline in self._accounts.items()}

    def account_link(self, account_key: str) -> list[tuple[datetime, str | None]] | None:
        """One account's assignment history (None if never assigned): O(1), unlike
        `account_links()`, which the engine must not build per account update."""
        timeline = self._accounts.get(account_key)
        return None if timeline is None else timeline.links()


def chain_text(chain: list[IB]) -> str:
    """The tier chain as a path from the top: "IB-1>IB-2>IB-3" (IB-3 is the direct IB)."""
    return ">".join(ib.ib_id for ib in reversed(chain))
