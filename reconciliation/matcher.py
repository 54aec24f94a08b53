"""The matcher: one tenant's PSP operations and platform balance operations, matched by
reference, amount, currency and time; what does not match becomes a break.

Matching keys (docs/reconciliation.md):

- a **platform** balance operation (`kind = 'balance'`, MT5 Action 2, MT4 cmd 6, cTrader
  deposit/withdraw) takes part when its comment names a provider followed by a reference:
  ``Deposit praxis 1234567``, ``Withdrawal skrill WD100234`` - what brokers' cashier integrations
  write into the MT5 deal Comment / MT4 comment / cTrader externalNote (31 characters on
  MT4/MT5, hence the short form). Other balance operations (bank wires, bonuses, manual
  adjustments) are not PSP money and are left alone.
- a **PSP** operation is known by its transaction id (`op_id`) and by the broker's own
  reference, the last part of a ``<server>:<login>:<reference>`` found in its op_id or comment
  (Skrill's transaction_id, Praxis's order_id, Nuvei's merchant_unique_id, Stripe's
  description, CoinsPaid's foreign_id). Either may be the platform's reference.

Everything sharing a reference on one account (server, login) is one *group*: a deposit, its
chargeback/refund operations (same transaction id or same merchant reference) and the platform
bookings naming them. Within a group each platform booking is given to the PSP operation it
names, of the same sign (a credit to a deposit, a debit to a withdrawal/refund/chargeback);
a booking of the opposite sign to a standing PSP operation is a reversal (a withdrawal's
return, a deposit's reversal).

Clock and state: the clock is the tenant's event time (the latest operation time seen, or a
`tick`), so a replay gives the same breaks at the same times. A side waits `tolerance` for its
other side before a `missing_*` break opens. A group is forgotten `keep_days` after its last
operation when it has no open break; a group with an open break stays until it resolves.
State is per account and pickles only the accounts touched since the last snapshot.
"""

from __future__ import annotations

import heapq
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from reconciliation.breaks import Break, BreakEvent, BreakKind
from reconciliation.settings import ReconSettings
from schemas.events import BalanceOperation
from schemas.money import MINOR_DIGITS, round_minor

MOVED = frozenset({"approved", "refunded", "chargeback"})  # money moved at the provider
FAILED = frozenset({"declined", "cancelled", "failed"})  # it did not (or no longer does)
PSP_KINDS = frozenset({"deposit", "withdrawal", "chargeback", "refund"})
REVERSALS = frozenset({"chargeback", "refund"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(t: datetime) -> int:
    return (t - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def platform_reference(comment: str, providers: Iterable[str]) -> tuple[str, str] | None:
    """(provider, reference) named by a platform comment, or None: the first token that is a
    provider name (any case) and the token after it."""
    names = providers if isinstance(providers, frozenset) else frozenset(providers)
    tokens = comment.split()
    for i in range(len(tokens) - 1):
        name = tokens[i].lower()
        if name in names:
            return name, tokens[i + 1]
    return None


def psp_keys(op: BalanceOperation) -> list[str]:
    """The references a PSP operation is known by: its transaction id, then the broker's
    reference of every ``<server>:<login>:<reference>`` naming its account."""
    keys = [op.op_id]
    for text in (op.op_id, *op.comment.split()):
        parts = text.split(":")
        if len(parts) >= 3 and parts[-2] == str(op.login) and parts[-1] not in ("", *keys):
            keys.append(parts[-1])
    return keys


@dataclass(slots=True)
class Side:
    """The latest version of one operation in a group."""

    op_key: str
    op_id: str
    psp: bool
    provider: str
    kind: str
    amount: Decimal
    currency: str
    status: str
    time_ms: int
    version: int
    ref: str = ""  # platform: the reference its comment names
    basis_ms: int = 0  # PSP: when its status last changed class (pending / moved / failed)


@dataclass(slots=True)
class Group:
    gid: str
    server: str
    login: int
    provider: str
    psp: dict[str, Side] = field(default_factory=dict)
    plat: dict[str, Side] = field(default_factory=dict)
    breaks: dict[str, Break] = field(default_factory=dict)  # open ones
    alerted: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    last_ms: int = 0
    due_ms: int = 0  # the earliest deadline queued for it (0: none)


@dataclass(slots=True)
class AccountBook:
    groups: dict[str, Group] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # reference -> group id
    # op_key -> when its settled group was forgotten: a later version of that deposit or payout
    # (a chargeback months later) is not taken for a new, unbooked payment
    settled: dict[str, int] = field(default_factory=dict)
    prune_ms: int = 0  # when the oldest `settled` entry is due to go (0: none queued)


@dataclass(frozen=True, slots=True)
class BreakAged:
    """An open break reached `alert_after_s`: the pipeline raises an alert for it."""

    brk: Break
    at: datetime
    age_s: float


Output = Break | BreakAged


@dataclass(frozen=True, slots=True)
class _Want:
    kind: BreakKind
    psp: Side | None
    plat: Side | None
    basis_ms: int
    detail: str


def _klass(status: str) -> str:
    return "moved" if status in MOVED else "failed" if status in FAILED else "pending"


def _unbooked_text(s: Side) -> str:
    return f"{s.kind} {_money(s)} {s.status} at {s.provider}, nothing booked on the platform"


def _unreported_text(s: Side, p: Side) -> str:
    return (f"platform booked {_money(p)} against {s.kind} {s.op_key}, which {s.provider} "
            f"reports {s.status} with no reversal")


def _status_text(s: Side, b: Side, net: Decimal) -> str:
    return f"booked {net} {b.currency} on the platform, {s.kind} {s.status} at {s.provider}"


def _unknown_text(p: Side) -> str:
    return f"platform booked {_money(p)} naming {p.provider} {p.ref}, which {p.provider} never reported"


def _iso(currency: str) -> bool:
    return currency.upper() in MINOR_DIGITS


def _money(side: Side) -> str:
    return f"{side.amount} {side.currency}"


class Matcher:
    """One tenant's reconciliation. `feed(op)` and `tick(time)` return the break versions and
    aged-break signals they caused, in order."""

    def __init__(self, tenant: str, settings: ReconSettings) -> None:
        self.tenant = tenant
        self.providers = frozenset(p.lower() for p in settings.providers)
        self.tol_credit = settings.tolerance_s * 1000
        self.tol_debit = settings.withdrawal_tolerance_s * 1000
        self.alert_after = settings.alert_after_s * 1000
        self.keep = int(settings.keep_days * 86_400_000)
        self.remember = int(settings.settled_days * 86_400_000)
        self.clock_ms = 0
        self.accounts: dict[str, AccountBook] = {}
        self.heap: list[tuple[int, int, str, str]] = []  # (due ms, seq, account, group)
        self._seq = 0
        self._blobs: dict[str, bytes] = {}
        self._dirty: set[str] = set()

    # -- input ------------------------------------------------------------------------------------

    def tick(self, t: datetime) -> list[Output]:
        """Advance the clock to event time `t` (never back) and act on what fell due."""
        ms = to_ms(t)
        if ms > self.clock_ms:
            self.clock_ms = ms
        return self._due()

    def feed(self, op: BalanceOperation) -> list[Output]:
        """One balance operation (any kind; only PSP payments and platform balance operations
        naming a provider take part), in read order."""
        ms = to_ms(op.time)
        if ms > self.clock_ms:
            self.clock_ms = ms
        out: list[Output] = []
        side = self._side(op, ms)
        if side is not None:
            acct = f"{op.server}:{op.login}"
            book = self.accounts.get(acct)
            if book is None:
                book = self.accounts[acct] = AccountBook()
            self._dirty.add(acct)
            if side.psp and side.op_key in book.settled:  # matched long ago, then forgotten
                out.extend(self._due())
                return out
            keys = psp_keys(op) if side.psp else [side.ref]
            group = self._group(book, keys, op, side)
            deleted = op.is_deleted or op.event == "delete"
            bucket = group.psp if side.psp else group.plat
            old = bucket.get(side.op_key)
            if old is None or old.version <= side.version:
                if deleted:
                    bucket.pop(side.op_key, None)
                else:
                    if side.psp:
                        side.basis_ms = old.basis_ms if (
                            old is not None and _klass(old.status) == _klass(side.status)) else ms
                    bucket[side.op_key] = side
                group.last_ms = max(group.last_ms, ms)
                self._evaluate(acct, book, group, op.op_key, out)
        out.extend(self._due())
        return out

    def _side(self, op: BalanceOperation, ms: int) -> Side | None:
        if not op.amount:
            return None
        if op.platform == "psp":
            if op.kind not in PSP_KINDS:
                return None
            return Side(op.op_key, op.op_id, True, op.provider, op.kind, op.amount, op.currency,
                        op.status, ms, op.version)
        if op.kind != "balance":
            return None
        named = platform_reference(op.comment, self.providers)
        if named is None:
            return None
        provider, ref = named
        return Side(op.op_key, op.op_id, False, provider, op.kind, op.amount, op.currency,
                    op.status, ms, op.version, ref=ref)

    def _group(self, book: AccountBook, keys: list[str], op: BalanceOperation,
               side: Side) -> Group:
        provider = side.provider
        gids = list(dict.fromkeys(
            g for k in keys if (g := book.alias.get(f"{provider}|{k}")) is not None))
        if not gids:
            gid = f"{provider}|{keys[0]}"
            group = book.groups[gid] = Group(gid, op.server, op.login, provider)
        else:
            group = book.groups[gids[0]]
            for other in gids[1:]:  # the operation links two groups: they are one
                merged = book.groups.pop(other)
                group.psp.update(merged.psp)
                group.plat.update(merged.plat)
                group.breaks.update(merged.breaks)
                group.alerted |= merged.alerted
                group.last_ms = max(group.last_ms, merged.last_ms)
                for k in merged.keys:
                    book.alias[k] = group.gid
                group.keys |= merged.keys
        for k in keys:
            alias = f"{provider}|{k}"
            book.alias[alias] = group.gid
            group.keys.add(alias)
        return group

    # -- deadlines ----------------------------------------------------------------------------------

    def _due(self) -> list[Output]:
        out: list[Output] = []
        heap, now = self.heap, self.clock_ms
        while heap and heap[0][0] <= now:
            due, _, acct, gid = heapq.heappop(heap)
            book = self.accounts.get(acct)
            if book is None:
                continue
            if not gid:
                if book.prune_ms == due:
                    self._dirty.add(acct)
                    self._prune(acct, book)
                continue
            group = book.groups.get(gid)
            if group is None or group.due_ms != due:
                continue  # gone, or a newer deadline replaced this one
            group.due_ms = 0
            self._dirty.add(acct)
            self._evaluate(acct, book, group, "", out)
        return out

    def _prune(self, acct: str, book: AccountBook) -> None:
        """Forget settled ids older than `settled_days`; drop the account when nothing is left."""
        now = self.clock_ms
        book.settled = {k: t for k, t in book.settled.items() if t + self.remember > now}
        if book.settled:
            due = min(book.settled.values()) + self.remember
            if due != book.prune_ms:  # one queued entry per account
                book.prune_ms = due
                self._seq += 1
                heapq.heappush(self.heap, (due, self._seq, acct, ""))
            return
        book.prune_ms = 0
        if not book.groups:
            del self.accounts[acct]

    def _schedule(self, acct: str, group: Group, due: int) -> None:
        if group.due_ms and group.due_ms <= due and group.due_ms > self.clock_ms:
            return  # an earlier deadline is queued: it re-evaluates and queues the next
        group.due_ms = due
        self._seq += 1
        heapq.heappush(self.heap, (due, self._seq, acct, group.gid))

    # -- the assessment ---------------------------------------------------------------------------

    def _tolerance(self, side: Side) -> int:
        if side.psp:
            return self.tol_credit if side.kind == "deposit" else self.tol_debit
        return self.tol_credit if side.amount > 0 else self.tol_debit

    def _assess(self, group: Group) -> tuple[dict[str, _Want], list[int]]:
        now = self.clock_ms
        psps = sorted(group.psp.values(), key=lambda s: (s.time_ms, s.op_key))
        plats = sorted(group.plat.values(), key=lambda s: (s.time_ms, s.op_key))
        same: dict[str, list[Side]] = {s.op_key: [] for s in psps}
        back: dict[str, list[Side]] = {s.op_key: [] for s in psps}
        loose: list[Side] = []
        for p in plats:
            credit = p.amount > 0
            cands = [s for s in psps if (s.amount > 0) == credit]
            if cands:
                best = min(cands, key=lambda s: (s.op_id != p.ref, _klass(s.status) == "failed",
                                                 len(same[s.op_key])))
                same[best.op_key].append(p)
            elif psps:
                back[min(psps, key=lambda s: (s.op_id != p.ref, len(back[s.op_key])))
                     .op_key].append(p)
            else:
                loose.append(p)
        want: dict[str, _Want] = {}
        deadlines: list[int] = []

        def later(kind: BreakKind, anchor: Side, psp: Side | None, plat: Side | None, due: int,
                  basis: int, detail: Callable[[], str]) -> None:
            # the text is built only for a break: matching stays a few look-ups per event
            if now >= due:
                want[f"{kind}:{anchor.op_key}"] = _Want(kind, psp, plat, basis, detail())
            else:
                deadlines.append(due)

        for s in psps:
            booked, returned = same[s.op_key], back[s.op_key]
            klass = _klass(s.status)
            tol = self._tolerance(s)
            if klass == "moved":
                if not booked:
                    kind: BreakKind = "reversal_not_booked" if s.kind in REVERSALS \
                        else "missing_on_platform"
                    later(kind, s, s, None, s.basis_ms + tol, s.basis_ms,
                          partial(_unbooked_text, s))
                else:
                    p = booked[0]
                    basis = min(s.basis_ms, p.time_ms)
                    if len(booked) > 1:
                        want[f"duplicate_credit:{s.op_key}"] = _Want(
                            "duplicate_credit", s, booked[1], basis,
                            f"{len(booked)} platform bookings for one {s.kind}: "
                            + ", ".join(f"{b.op_key} {b.amount}" for b in booked))
                    if p.currency.upper() != s.currency.upper():
                        if _iso(p.currency) and _iso(s.currency):
                            want[f"currency_mismatch:{s.op_key}"] = _Want(
                                "currency_mismatch", s, p, basis,
                                f"PSP {_money(s)}, platform {_money(p)}")
                    elif round_minor(p.amount, p.currency) != round_minor(s.amount, s.currency):
                        want[f"amount_mismatch:{s.op_key}"] = _Want(
                            "amount_mismatch", s, p, basis,
                            f"PSP {_money(s)}, platform {_money(p)}, "
                            f"difference {p.amount - s.amount}")
                for p in returned:  # the platform reversed what the PSP says stands
                    later("missing_at_psp", p, s, p, p.time_ms + self._tolerance(p), p.time_ms,
                          partial(_unreported_text, s, p))
            elif klass == "failed" and booked:
                net = sum((b.amount for b in booked + returned), Decimal(0))
                if net:
                    later("status_mismatch", s, s, booked[0], s.basis_ms + tol,
                          min(s.basis_ms, booked[0].time_ms),
                          partial(_status_text, s, booked[0], net))
        for p in loose:
            later("missing_at_psp", p, None, p, p.time_ms + self._tolerance(p), p.time_ms,
                  partial(_unknown_text, p))
        return want, deadlines

    def _evaluate(self, acct: str, book: AccountBook, group: Group, trigger: str,
                  out: list[Output]) -> None:
        now = self.clock_ms
        want, deadlines = self._assess(group)
        for bid, w in want.items():
            old = group.breaks.get(bid)
            if old is None:
                brk = self._break(bid, group, w, "opened", None)
            elif self._content(old) != self._content_of(w):
                brk = self._break(bid, group, w, "updated", old)
            else:
                continue
            group.breaks[bid] = brk
            out.append(brk)
        for bid in [b for b in group.breaks if b not in want]:
            old = group.breaks.pop(bid)
            group.alerted.discard(bid)
            out.append(self._resolved(old, trigger))
        for bid, brk in group.breaks.items():
            due = to_ms(brk.basis_time) + self.alert_after
            if bid in group.alerted:
                continue
            if now >= due:
                group.alerted.add(bid)
                out.append(BreakAged(brk, from_ms(now), (now - to_ms(brk.basis_time)) / 1000))
            else:
                deadlines.append(due)
        if not group.breaks:
            if now >= group.last_ms + self.keep:  # settled and quiet for `keep_days`: forget it
                del book.groups[group.gid]
                for k in group.keys:
                    if book.alias.get(k) == group.gid:
                        del book.alias[k]
                for side in group.psp.values():
                    if side.kind in ("deposit", "withdrawal") and _klass(side.status) != "pending":
                        book.settled[side.op_key] = group.last_ms + self.keep
                self._prune(acct, book)
                return
            deadlines.append(group.last_ms + self.keep)
        if deadlines:
            self._schedule(acct, group, min(deadlines))

    # -- records ----------------------------------------------------------------------------------

    @staticmethod
    def _content(b: Break) -> tuple[Any, ...]:
        return (b.psp_op_key, b.psp_status, b.psp_amount, b.psp_currency, b.platform_op_key,
                b.platform_amount, b.platform_currency, b.detail)

    @staticmethod
    def _content_of(w: _Want) -> tuple[Any, ...]:
        s, p = w.psp, w.plat
        return (s.op_key if s else "", s.status if s else "", s.amount if s else None,
                s.currency if s else "", p.op_key if p else "", p.amount if p else None,
                p.currency if p else "", w.detail)

    def _version(self) -> int:
        self._seq += 1
        return self.clock_ms * 1024 + self._seq % 1024

    def _break(self, bid: str, group: Group, w: _Want, event: BreakEvent,
               old: Break | None) -> Break:
        s, p = w.psp, w.plat
        now = from_ms(self.clock_ms)
        return Break(
            break_id=bid, tenant=self.tenant, kind=w.kind, status="open", event=event,
            provider=group.provider, server=group.server, login=group.login,
            reference=(p.ref if p is not None else "") or (s.op_id if s is not None else ""),
            psp_op_key=s.op_key if s else "", psp_op_id=s.op_id if s else "",
            psp_kind=s.kind if s else "", psp_status=s.status if s else "",
            psp_amount=s.amount if s else None, psp_currency=s.currency if s else "",
            platform_op_key=p.op_key if p else "", platform_op_id=p.op_id if p else "",
            platform_amount=p.amount if p else None, platform_currency=p.currency if p else "",
            detail=w.detail, basis_time=from_ms(w.basis_ms),
            detected_at=old.detected_at if old is not None else now, updated_at=now,
            resolved_at=None, resolution="", version=self._version(),
        )

    def _resolved(self, old: Break, trigger: str) -> Break:
        now = from_ms(self.clock_ms)
        why = f"closed by {trigger}" if trigger else "closed on re-assessment"
        return replace(old, status="resolved", event="resolved", updated_at=now, resolved_at=now,
                       resolution=why, version=self._version())

    # -- snapshots --------------------------------------------------------------------------------

    def open_breaks(self) -> list[Break]:
        return [b for book in self.accounts.values() for g in book.groups.values()
                for b in g.breaks.values()]

    def __reduce__(self) -> tuple[Callable[..., Matcher], tuple[Any, ...]]:
        # only the accounts touched since the last snapshot are pickled again
        blobs = self._blobs
        for acct in self._dirty:
            book = self.accounts.get(acct)
            if book is None:
                blobs.pop(acct, None)
            else:
                blobs[acct] = pickle.dumps(book, protocol=pickle.HIGHEST_PROTOCOL)
        self._dirty = set()
        head = {k: v for k, v in self.__dict__.items() if k not in ("accounts", "_blobs", "_dirty")}
        return _restore, (head, dict(blobs))


def _restore(head: dict[str, Any], blobs: dict[str, bytes]) -> Matcher:
    m = Matcher.__new__(Matcher)
    m.__dict__.update(head)
    m.accounts = {k: pickle.loads(v) for k, v in blobs.items()}
    m._blobs = dict(blobs)
    m._dirty = set()
    return m

