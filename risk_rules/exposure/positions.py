"""Open positions of one account, built from its canonical deals.

A `PositionBook` holds one account's positions. In **hedging** mode a position is identified by
the platform's position id (MT5 PositionID, MT4 order ticket, cTrader positionId): several
positions on one symbol may be open at once, in both directions. In **netting** mode an account
has at most one position per symbol, identified by the symbol.

`PositionBook.apply(deal)` folds one deal in and returns what changed:

- a buy or sell **in** deal opens or increases a position; the open price is the
  volume-weighted average of the fills that built it;
- an **out** deal (and MT5's **out_by**, a close by an opposite position: each of the two deals
  closes its own position id) reduces it: a partial close keeps the average price, a full close
  leaves it flat;
- an **inout** deal (MT5 netting reversal) closes the position and opens the rest of its volume
  on the other side at the deal's price;
- MT4 positions arrive as `:in` / `:out` deal pairs keyed by the order ticket (see
  `connectors/mt4.py`) and need nothing special;
- canceled deals move nothing; a deal seen again with the same or an older version changes
  nothing (replays, redeliveries);
- a dealer correction (same deal_key, higher version: an update, or a delete) rebuilds the
  position it belongs to from that position's deals (latest version of each, deleted ones
  left out), replayed in event-time order. So does a deal that arrives with an event time
  before the position's latest deal.

Realised P&L is what the platform says: the sum of profit, swap, commission and fee over the
position's deals (commissions charged on the opening deal included), in the account currency.
Beside it `gross_pnl` is recomputed from prices - closed units x (close price - average open
price), in the symbol's quote currency - to check the platform's numbers against. Both belong
to one *episode* of the position: from the deal that opens it from flat (or the reversal that
opens the other side) until it is flat again. A position that goes flat and reopens (netting:
the same symbol, a new PositionID or the same; hedging: a reused id) starts again from zero;
the money of a reversal (inout) deal belongs to the side it closes. `booked` keeps the money of
every deal the position holds, across episodes: what moved the account's balance.

A correction (or a late deal) for a position that already left memory (`prune`) is not lost:
with a `DealHistory` (the stored deals, loaded by the pipeline layer) the position is rebuilt
from its stored deals plus the correction; without one, or when the history cannot vouch for
the position, the deal comes back as a `CorrectionIssue` for the dealing desk.

A closing deal with nothing to close (its opening deal happened before the data starts, or has
not arrived) moves no volume and marks the position `incomplete`; it never opens a phantom
position the other way. The same holds for the part of a closing deal beyond the open volume.
"""

from __future__ import annotations

import pickle
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, Literal, NamedTuple, Protocol

from risk_rules.exposure.money import EXACT, NO_MONEY, ZERO, Money, price12
from schemas.chunked import ChunkedDict
from schemas.events import Deal, Side
from schemas.identity import account_key_of
from schemas.pickling import pack, unpack, utc_from_micros, utc_micros

Mode = Literal["hedging", "netting"]
LEDGER_CHUNK = 8  # positions per pickled chunk of an account's book
ChangeKind = Literal[
    "open",  # a flat position got volume
    "increase",  # more volume on the same side
    "reduce",  # part of the volume closed
    "close",  # all of the volume closed
    "reverse",  # closed and reopened on the other side (inout)
    "unmatched",  # a deal that moved no volume (close of nothing, zero volume): money only
    "rebuild",  # recomputed from its deals (correction, late deal, mode change)
    "regroup",  # the account moved to another group: same volume, new group
]
PositionKey = tuple[str, str]
"""(account_key, position id) in hedging mode, (account_key, symbol) in netting mode."""

SortKey = tuple[datetime, int, str]
ENTRY_RANK: dict[str, int] = {"in": 0, "inout": 1, "out": 2, "out_by": 2}


def deal_order(deal: Deal) -> SortKey:
    """The order deals of one position are replayed in: event time, opening deals first."""
    return (deal.time, ENTRY_RANK[deal.entry], deal.deal_key)


def _same_fill(a: Deal, b: Deal) -> bool:
    """Whether two versions of a deal say the same about volume, price, time and money."""
    return (
        a.time == b.time and a.side == b.side and a.entry == b.entry and a.lots == b.lots
        and a.units == b.units and a.price == b.price and a.symbol == b.symbol
        and a.position_id == b.position_id and a.profit == b.profit and a.swap == b.swap
        and a.commission == b.commission and a.fee == b.fee and a.contract_size == b.contract_size
    )


class PositionState(NamedTuple):
    """A position as it stands after a change (immutable). Volumes are signed: + long, - short."""

    key: PositionKey
    mode: Mode
    account_key: str
    tenant: str
    platform: str
    server: str
    login: int
    group: str
    symbol: str
    position_id: str  # platform ticket; netting: the id of the deal that opened the current side
    currency: str  # account currency (realised money is in it)
    contract_size: Decimal
    signed_lots: Decimal
    signed_units: Decimal
    avg_price: Decimal  # volume-weighted average open price of the open volume (0 when flat)
    opened_at: datetime | None  # when the current open volume started (None when flat)
    updated_at: datetime  # event time of the latest deal
    realised: Money  # sum over the position's deals, account currency
    gross_pnl: Decimal  # computed from prices over the closed volume, quote currency
    deals: int  # live deals held
    incomplete: bool  # a close found less volume open than it closed
    platform_symbol: str = ""  # the platform's own symbol (its price feed), of the latest deal
    booked: Money = NO_MONEY  # money of every deal held, all episodes: what moved the balance

    @property
    def is_open(self) -> bool:
        return self.signed_units != 0

    @property
    def side(self) -> Side | None:
        if self.signed_units > 0:
            return "buy"
        if self.signed_units < 0:
            return "sell"
        return None

    @property
    def lots(self) -> Decimal:
        return abs(self.signed_lots)

    @property
    def units(self) -> Decimal:
        return abs(self.signed_units)

    @property
    def cost(self) -> Decimal:
        """Open units x average open price: what the open volume cost, quote currency."""
        return EXACT.multiply(abs(self.signed_units), self.avg_price)

    def flat(self) -> PositionState:
        """The same position with nothing left (it vanished: all its deals were deleted)."""
        return self._replace(signed_lots=ZERO, signed_units=ZERO, avg_price=ZERO, opened_at=None, deals=0)


class PositionChange(NamedTuple):
    """One position before and after one deal (or correction, regroup, mode change)."""

    kind: ChangeKind
    before: PositionState | None  # None: the position did not exist before
    after: PositionState
    deal_key: str = ""
    time: datetime | None = None  # event time of the deal that caused it

    @property
    def key(self) -> PositionKey:
        return self.after.key

    @property
    def realised(self) -> Money:
        """Money booked by this change (a correction can take some back). Taken from `booked`,
        not the episode's `realised`: a reopened position starts its P&L from zero, but the
        money of the closed episode stays on the balance."""
        return self.after.booked - (self.before.booked if self.before is not None else NO_MONEY)

    @property
    def gross_pnl(self) -> Decimal:
        """Gross P&L of the episode gained by this change (a reopened position starts at 0)."""
        before = self.before.gross_pnl if self.before is not None else ZERO
        return EXACT.subtract(self.after.gross_pnl, before)


class CorrectionIssue(NamedTuple):
    """A correction (or late deal) that could not be applied: never silenced, it becomes a
    `correction_issues` row and an alert for the dealing desk."""

    tenant: str
    account_key: str
    deal_key: str
    version: int
    event: str  # add / update / delete
    position_ref: str  # position id (hedging) or symbol (netting)
    deal_time: datetime
    reason: str


class DealHistory(Protocol):
    """Where a pruned position's deals can be read back (implemented by the pipeline layer over
    the stored deals; the domain never queries a database itself)."""

    def position_deals(self, account_key: str, mode: Mode, ref: str) -> list[Deal] | None:
        """The latest stored version of every deal of the position `ref` (hedging: its position
        id; netting: every deal of the account on that symbol), deleted ones included; None when
        the history cannot be read."""
        ...


class MemoryDealHistory:
    """A `DealHistory` over deals in memory (tests, replays that keep their input)."""

    def __init__(self, deals: list[Deal] | None = None) -> None:
        self._latest: dict[str, Deal] = {}
        for deal in deals or []:
            self.add(deal)

    def add(self, deal: Deal) -> None:
        held = self._latest.get(deal.deal_key)
        if held is None or deal.version > held.version:
            self._latest[deal.deal_key] = deal

    def position_deals(self, account_key: str, mode: Mode, ref: str) -> list[Deal]:
        return [d for d in self._latest.values()
                if account_key_of(d) == account_key and position_ref(d, mode) == ref]


_LEDGER_FIELDS = (
    "avg_price", "contract_size", "currency", "gross_pnl", "incomplete", "key", "last", "login", "mode",
    "opened_at", "platform", "position_id", "realised", "server", "signed_lots", "signed_units", "symbol",
    "tenant", "updated_at", "platform_symbol", "booked",
)  # what a ledger pickles, besides its deals; `snapshot` is recomputed on restore


def _pack_fields(ledger: _Ledger) -> tuple[Any, ...]:
    # plain strings and ints: pickling them needs no object rebuild calls (see schemas/pickling)
    r = ledger.realised
    last = ledger.last
    return (
        str(ledger.avg_price), str(ledger.contract_size), ledger.currency, str(ledger.gross_pnl),
        ledger.incomplete, ledger.key, None if last is None else (utc_micros(last[0]), last[1], last[2]),
        ledger.login, ledger.mode, None if ledger.opened_at is None else utc_micros(ledger.opened_at),
        ledger.platform, ledger.position_id, (str(r.profit), str(r.swap), str(r.commission), str(r.fee)),
        ledger.server, str(ledger.signed_lots), str(ledger.signed_units), ledger.symbol, ledger.tenant,
        utc_micros(ledger.updated_at), ledger.platform_symbol,
        (str(ledger.booked.profit), str(ledger.booked.swap), str(ledger.booked.commission),
         str(ledger.booked.fee)),
    )


def _unpack_fields(packed: tuple[Any, ...]) -> dict[str, Any]:
    if len(packed) == len(_LEDGER_FIELDS) - 2:  # a snapshot from before episodes and feeds
        packed = (*packed, packed[_LEDGER_FIELDS.index("symbol")], packed[_LEDGER_FIELDS.index("realised")])
    fields = dict(zip(_LEDGER_FIELDS, packed, strict=True))
    for name in ("avg_price", "contract_size", "gross_pnl", "signed_lots", "signed_units"):
        fields[name] = Decimal(fields[name])
    if fields["last"] is not None:
        micros, rank, deal_key = fields["last"]
        fields["last"] = (utc_from_micros(micros), rank, deal_key)
    if fields["opened_at"] is not None:
        fields["opened_at"] = utc_from_micros(fields["opened_at"])
    fields["updated_at"] = utc_from_micros(fields["updated_at"])
    fields["realised"] = Money(*(Decimal(v) for v in fields["realised"]))
    fields["booked"] = Money(*(Decimal(v) for v in fields["booked"]))
    fields["key"] = tuple(fields["key"])
    return fields


def _ledger_from_blob(blob: bytes) -> _Ledger:
    ledger = _Ledger.__new__(_Ledger)
    packed_fields, packed_deals = pickle.loads(blob)
    for name, value in _unpack_fields(packed_fields).items():
        setattr(ledger, name, value)
    ledger.deals = {}
    ledger.packed = {}
    for key, packed in packed_deals.items():
        deal = ledger.deals[key] = unpack(Deal, packed)
        ledger.packed[key] = (deal, packed)
    ledger.snapshot = None  # PositionBook.__setstate__ recomputes it with the book's group
    ledger.blob = blob
    return ledger


class _Ledger:
    """One position's deals and the state they add up to (mutable; internal).

    Pickling is the cost of every recovery snapshot, and an account's book is snapshotted
    whenever one of its positions changes. So each ledger keeps its pickled bytes until it
    changes (`touch`), each deal its packed values (a deal never changes: a new version
    replaces it), and both pickle as plain strings and ints."""

    __slots__ = (*_LEDGER_FIELDS, "blob", "deals", "packed", "snapshot")
    blob: bytes | None
    packed: dict[str, tuple[Deal, tuple[Any, ...]]]

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        if self.blob is None:
            cached = self.packed
            deals: dict[str, tuple[Any, ...]] = {}
            for key, deal in self.deals.items():
                held = cached.get(key)
                if held is None or held[0] is not deal:
                    held = cached[key] = (deal, pack(deal))
                deals[key] = held[1]
            if len(cached) > len(deals):
                for key in [k for k in cached if k not in deals]:
                    del cached[key]
            self.blob = pickle.dumps((_pack_fields(self), deals), protocol=pickle.HIGHEST_PROTOCOL)
        return _ledger_from_blob, (self.blob,)

    def touch(self) -> None:
        """About to change: the cached pickle is stale."""
        self.blob = None

    def __init__(self, key: PositionKey, mode: Mode, deal: Deal) -> None:
        self.blob = None
        self.key = key
        self.mode = mode
        self.tenant = deal.tenant
        self.platform = deal.platform
        self.server = deal.server
        self.login = deal.login
        self.symbol = deal.symbol
        self.platform_symbol = deal.platform_symbol
        self.currency = deal.currency
        self.position_id = _episode_id(deal, mode, key)
        self.contract_size = deal.contract_size
        self.deals: dict[str, Deal] = {}
        self.packed = {}
        self.last: SortKey | None = None
        self.signed_lots = ZERO
        self.signed_units = ZERO
        self.avg_price = ZERO  # volume-weighted average open price of the open volume
        self.opened_at: datetime | None = None
        self.updated_at: datetime = deal.time
        self.realised = NO_MONEY
        self.booked = NO_MONEY
        self.gross_pnl = ZERO
        self.incomplete = False
        self.snapshot: PositionState | None = None

    def state(self, group: str) -> PositionState:
        self.blob = None
        self.snapshot = PositionState(
            self.key, self.mode, self.key[0], self.tenant, self.platform, self.server, self.login,
            group, self.symbol, self.position_id, self.currency, self.contract_size, self.signed_lots,
            self.signed_units, self.avg_price, self.opened_at, self.updated_at, self.realised,
            self.gross_pnl, len(self.deals), self.incomplete, self.platform_symbol, self.booked,
        )
        return self.snapshot

    def rebuild(self) -> None:
        """Recompute from the deals held, in event-time order."""
        self.blob = None
        self.signed_lots = self.signed_units = self.avg_price = self.gross_pnl = ZERO
        self.opened_at = None  # updated_at stays as it was if no deal is left
        self.realised = self.booked = NO_MONEY
        self.incomplete = False
        self.last = None
        ordered = sorted(self.deals.values(), key=deal_order)
        if ordered:
            first = ordered[0]
            self.tenant, self.platform, self.server = first.tenant, first.platform, first.server
            self.login, self.symbol, self.currency = first.login, first.symbol, first.currency
            self.position_id = _episode_id(first, self.mode, self.key)
        for deal in ordered:
            self.fill(deal)
        self.last = deal_order(ordered[-1]) if ordered else None

    def fill(self, deal: Deal) -> ChangeKind:
        """Fold one live deal in (in event-time order). Runs in the EXACT context."""
        self.blob = None
        money = Money.of_deal(deal) if deal.profit or deal.swap or deal.commission or deal.fee else None
        if money is not None:
            self.booked = self.booked + money
        self.updated_at = deal.time
        self.contract_size = deal.contract_size
        self.platform_symbol = deal.platform_symbol
        buy = deal.side == "buy"
        units = deal.units if buy else -deal.units
        lots = deal.lots if buy else -deal.lots
        held = self.signed_units
        if not units:
            self._book(money)
            return "unmatched"
        same_way = not held or (held > 0) == (units > 0)
        entry = deal.entry
        if entry in ("out", "out_by"):
            self._book(money)
            if same_way:  # nothing open to close
                self.incomplete = True
                return "unmatched"
            return self._reduce(deal, units, lots, may_reverse=False)
        if same_way:
            if not held:  # opens from flat: a new episode, its P&L starts from zero
                self._new_episode()
            if entry == "inout":  # a reversal of a position we never saw open
                self.incomplete = True
            self._book(money)
            return self._increase(deal, units, lots)
        self._book(money)  # a reversal's money belongs to the side it closes
        kind = self._reduce(deal, units, lots, may_reverse=True)
        if kind == "reverse":
            self._new_episode()
        return kind

    def _book(self, money: Money | None) -> None:
        if money is not None:
            self.realised = self.realised + money

    def _new_episode(self) -> None:
        self.realised = NO_MONEY
        self.gross_pnl = ZERO
        self.incomplete = False

    def _increase(self, deal: Deal, units: Decimal, lots: Decimal) -> ChangeKind:
        held = abs(self.signed_units)
        added = abs(units)
        opening = not held
        self.avg_price = deal.price if opening else price12(
            (held * self.avg_price + added * deal.price) / (held + added)
        )
        self.signed_units += units
        self.signed_lots += lots
        if opening:
            self.opened_at = deal.time
            self.position_id = _episode_id(deal, self.mode, self.key)
            return "open"
        return "increase"

    def _reduce(self, deal: Deal, units: Decimal, lots: Decimal, *, may_reverse: bool) -> ChangeKind:
        held = self.signed_units
        direction = 1 if held > 0 else -1
        closed = min(abs(units), abs(held))
        self.gross_pnl += closed * (deal.price - self.avg_price) * direction
        rest = abs(units) - abs(held)
        if rest < 0:
            self.signed_units += units
            self.signed_lots += lots
            return "reduce"
        if rest > 0 and may_reverse:
            self.signed_units += units
            self.signed_lots += lots
            self.avg_price = deal.price
            self.opened_at = deal.time
            self.position_id = _episode_id(deal, self.mode, self.key)
            return "reverse"
        if rest > 0:  # closes more than is open
            self.incomplete = True
        self.signed_units = self.signed_lots = self.avg_price = ZERO
        self.opened_at = None
        return "close"


def _episode_id(deal: Deal, mode: Mode, key: PositionKey) -> str:
    if mode == "hedging":
        return key[1]
    return deal.position_id or deal.deal_id


def position_ref(deal: Deal, mode: Mode) -> str:
    """The second half of a position key: the position id (hedging) or the symbol (netting)."""
    if mode == "netting":
        return deal.symbol
    return deal.position_id or deal.order_id or deal.deal_id


class PositionBook:
    """The positions of one account, and the deals that built them."""

    def __init__(self, account_key: str, mode: Mode = "hedging", group: str = "") -> None:
        self.account_key = account_key
        self._mode: Mode = mode
        self._group = group
        # Positions in chunks that pickle once until they change (a busy account's history of
        # closed positions stays in clean chunks). A ledger changed in place must be set again
        # (`self._ledgers[ref] = ledger`) so that its chunk is re-pickled.
        self._ledgers: ChunkedDict[str, _Ledger] = ChunkedDict(LEDGER_CHUNK)
        # deal_key -> (latest version seen, position ref holding it; None: not live)
        self._seen: dict[str, tuple[int, str | None]] = {}
        self._pruned: set[str] = set()  # hedging: position ids pruned after they closed
        self._watermarks: dict[str, SortKey] = {}  # netting: symbol -> last deal pruned
        # live deals pruned per position ref: a stored history with fewer is incomplete
        self._pruned_deals: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # The seen-versions of live deals are in the ledgers (which pickle themselves once until
        # they change): only dead ones (deleted, canceled) travel as they are. Keeps a snapshot
        # of a busy account to the positions that moved.
        state = dict(self.__dict__)
        state["_seen"] = {k: v for k, v in self._seen.items() if v[1] is None}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for ref, ledger in self._ledgers.items():
            if ledger.snapshot is None:
                blob = ledger.blob
                ledger.state(self._group)
                ledger.blob = blob  # the same ledger: its pickle is still good
            for deal_key, deal in ledger.deals.items():
                self._seen[deal_key] = (deal.version, ref)

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def group(self) -> str:
        return self._group

    # ---- deals -------------------------------------------------------------------------------

    def apply(self, deal: Deal) -> list[PositionChange]:
        """Fold one deal (or a new version of one) in; the positions it changed. A deal for a
        position that left memory is dropped here: use `apply_late` to get it applied from a
        history, or reported."""
        changes, _issues = self.apply_late(deal, None)
        return changes

    def apply_late(self, deal: Deal, history: DealHistory | None
                   ) -> tuple[list[PositionChange], list[CorrectionIssue]]:
        """`apply`, and for a deal that belongs to a pruned position (a correction later than
        the position was kept, or a netting deal older than the last pruned one): the position
        rebuilt from `history` plus this deal, or - when there is no history, it cannot be
        read, or it lacks the deal being corrected - a `CorrectionIssue`."""
        seen = self._seen.get(deal.deal_key)
        if seen is not None and deal.version <= seen[0]:
            return [], []
        live = not (deal.is_deleted or deal.canceled)
        ref = position_ref(deal, self._mode) if live else None
        if seen is None:
            target = ref if ref is not None else position_ref(deal, self._mode)
            if self._is_stale(target, deal):
                return self._late(deal, target, history)
        elif ref is not None and self._is_stale(ref, deal):
            return self._late(deal, ref, history)
        return self._apply(deal, seen, ref), []

    def _apply(self, deal: Deal, seen: tuple[int, str | None] | None,
               ref: str | None) -> list[PositionChange]:
        old_ref = seen[1] if seen is not None else None
        self._seen[deal.deal_key] = (deal.version, ref)
        with localcontext(EXACT):
            if old_ref is None:
                return [] if ref is None else [self._add(ref, deal)]
            ledger = self._ledgers[old_ref]
            ledger.touch()
            self._ledgers[old_ref] = ledger
            held = ledger.deals[deal.deal_key]
            if ref == old_ref and _same_fill(held, deal):
                ledger.deals[deal.deal_key] = deal  # a newer version saying the same
                return []
            del ledger.deals[deal.deal_key]
            if ref == old_ref:
                ledger.deals[deal.deal_key] = deal
                return [self._rebuild(ledger, deal)]
            changes = [self._rebuild(ledger, deal)]
            if ref is not None:
                changes.append(self._add(ref, deal))
            return changes

    def _late(self, deal: Deal, ref: str, history: DealHistory | None
              ) -> tuple[list[PositionChange], list[CorrectionIssue]]:
        """A deal for a pruned position: rebuild the position from its stored deals."""
        def issue(reason: str) -> tuple[list[PositionChange], list[CorrectionIssue]]:
            return [], [CorrectionIssue(deal.tenant, self.account_key, deal.deal_key, deal.version,
                                        deal.event, ref, deal.time, reason)]

        if history is None:
            return issue("the position left memory (exposure.keep_closed_minutes) and no deal "
                         "history is configured: exposure does not reflect this correction")
        stored = history.position_deals(self.account_key, self._mode, ref)
        if stored is None:
            return issue("the position left memory and its stored deals could not be read")
        latest: dict[str, Deal] = {}
        for held in stored:
            if held.deal_key not in latest or held.version > latest[held.deal_key].version:
                latest[held.deal_key] = held
        current = self._ledgers.get(ref)
        if current is not None:  # netting: what memory holds is newer than the store's
            for held in current.deals.values():
                if held.deal_key not in latest or held.version >= latest[held.deal_key].version:
                    latest[held.deal_key] = held
        in_memory = set(current.deals) if current is not None else set()
        stored_live = sum(1 for d in latest.values()
                          if d.deal_key not in in_memory and not (d.is_deleted or d.canceled))
        if stored_live < getattr(self, "_pruned_deals", {}).get(ref, 0):
            return issue("the position left memory and the stored history holds fewer of its deals "
                         "than were pruned (not stored yet?): exposure does not reflect this correction")
        prior = latest.get(deal.deal_key)
        if prior is not None and deal.version <= prior.version:
            return [], []  # the history already has it (a redelivery)
        if prior is None and deal.event != "add":
            return issue("the position left memory and the stored history lacks the corrected "
                         "deal (not stored yet?): exposure does not reflect this correction")
        with localcontext(EXACT):
            before = self._replayed(ref, [d for d in latest.values()], deal)
            latest[deal.deal_key] = deal
            after = self._replayed(ref, list(latest.values()), deal)
        getattr(self, "_pruned_deals", {}).pop(ref, None)
        if self._mode == "hedging":
            self._pruned.discard(ref)
        else:
            self._watermarks.pop(ref, None)  # the ledger now holds the symbol's whole history
        for held in latest.values():
            live = not (held.is_deleted or held.canceled)
            self._seen[held.deal_key] = (held.version, ref if live else None)
        if not after.deals:
            self._ledgers.pop(ref, None)
            state = after.state(self._group).flat()
        else:
            self._ledgers[ref] = after
            state = after.state(self._group)
        before_state = before.state(self._group) if before.deals else None
        if before_state is None and current is not None:
            before_state = current.snapshot
        return [PositionChange("rebuild", before_state, state, deal.deal_key, deal.time)], []

    def _replayed(self, ref: str, deals: list[Deal], cause: Deal) -> _Ledger:
        """A ledger of the live ones of `deals`, replayed in order."""
        live = [d for d in deals if not (d.is_deleted or d.canceled)]
        ledger = _Ledger((self.account_key, ref), self._mode, live[0] if live else cause)
        for d in live:
            ledger.deals[d.deal_key] = d
        ledger.rebuild()
        return ledger

    def _is_stale(self, ref: str, deal: Deal) -> bool:
        if self._mode == "hedging":
            return ref in self._pruned
        mark = self._watermarks.get(ref)
        return mark is not None and deal_order(deal) <= mark

    def _add(self, ref: str, deal: Deal) -> PositionChange:
        ledger = self._ledgers.get(ref)
        before = None
        if ledger is None:
            ledger = self._ledgers[ref] = _Ledger((self.account_key, ref), self._mode, deal)
        else:
            before = ledger.snapshot
            self._ledgers[ref] = ledger
        ledger.touch()
        ledger.deals[deal.deal_key] = deal
        order = deal_order(deal)
        kind: ChangeKind
        if ledger.last is None or order >= ledger.last:
            kind = ledger.fill(deal)
            ledger.last = order
        else:  # earlier than what the position already holds: replay in order
            ledger.rebuild()
            kind = "rebuild"
        return PositionChange(kind, before, ledger.state(self._group), deal.deal_key, deal.time)

    def _rebuild(self, ledger: _Ledger, deal: Deal) -> PositionChange:
        before = ledger.snapshot
        ledger.rebuild()
        after = ledger.state(self._group)
        if not ledger.deals:
            del self._ledgers[ledger.key[1]]
            after = after.flat()
        else:
            self._ledgers[ledger.key[1]] = ledger
        return PositionChange("rebuild", before, after, deal.deal_key, deal.time)

    # ---- account-level changes ---------------------------------------------------------------

    def set_group(self, group: str) -> list[PositionChange]:
        """The account moved to another group: every open position reports its new group."""
        if group == self._group:
            return []
        self._group = group
        changes = []
        for ref, ledger in list(self._ledgers.items()):
            before = ledger.snapshot
            after = ledger.state(group)
            self._ledgers[ref] = ledger
            if after.is_open:
                changes.append(PositionChange("regroup", before, after))
        return changes

    def set_mode(self, mode: Mode) -> list[PositionChange]:
        """Switch hedging <-> netting: every position is rebuilt under the new keys. The old
        positions are reported flat, the new ones as new."""
        if mode == self._mode:
            return []
        old = {ref: ledger.snapshot for ref, ledger in self._ledgers.items()}
        deals = sorted((d for ledger in self._ledgers.values() for d in ledger.deals.values()),
                       key=deal_order)
        self._mode = mode
        self._ledgers = ChunkedDict(LEDGER_CHUNK)
        changes: list[PositionChange] = []
        for state in old.values():
            if state is not None:
                changes.append(PositionChange("rebuild", state, state.flat()))
        with localcontext(EXACT):
            for deal in deals:
                ref = position_ref(deal, mode)
                self._seen[deal.deal_key] = (deal.version, ref)
                ledger = self._ledgers.get(ref)
                if ledger is None:
                    ledger = self._ledgers[ref] = _Ledger((self.account_key, ref), mode, deal)
                ledger.deals[deal.deal_key] = deal
                ledger.fill(deal)
                ledger.last = deal_order(deal)
        for ledger in self._ledgers.values():
            changes.append(PositionChange("rebuild", None, ledger.state(self._group)))
        return changes

    def prune(self, before: datetime) -> int:
        """Forget flat positions whose last deal is older than `before` (their deals included).
        A deal that later arrives for a pruned position is ignored as stale: hedging by its
        position id, netting when it is not newer than the last deal pruned on its symbol.
        Returns how many positions were pruned."""
        gone = [ref for ref, ledger in self._ledgers.items()
                if not ledger.signed_units and ledger.updated_at < before]
        for ref in gone:
            ledger = self._ledgers.pop(ref)
            for deal_key in ledger.deals:
                self._seen.pop(deal_key, None)
            self._pruned_deals[ref] = self._pruned_deals.get(ref, 0) + len(ledger.deals)
            if self._mode == "hedging":
                self._pruned.add(ref)
            elif ledger.last is not None:
                self._watermarks[ref] = ledger.last
        return len(gone)

    # ---- reading -----------------------------------------------------------------------------

    def position(self, ref: str) -> PositionState | None:
        """The position with this id (hedging) or on this symbol (netting), open or not."""
        ledger = self._ledgers.get(ref)
        return None if ledger is None else ledger.snapshot

    def positions(self, *, open_only: bool = True) -> list[PositionState]:
        out = [ledger.snapshot for ledger in self._ledgers.values() if ledger.snapshot is not None]
        return [p for p in out if p.is_open] if open_only else out

    def deals_of(self, ref: str) -> list[Deal]:
        """The live deals of a position, in replay order."""
        ledger = self._ledgers.get(ref)
        return [] if ledger is None else sorted(ledger.deals.values(), key=deal_order)

    def __len__(self) -> int:
        return len(self._ledgers)
