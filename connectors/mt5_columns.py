"""A batch of plain MT5 trades read column by column, straight into an Arrow table.

`connectors.mt5_fast` reads one message at a time into a `Deal`; when nothing downstream needs
the `Deal` objects (an ingestion or backfill run: exposure, commissions and rules off), this
reads a whole consumed batch at once. Each message is decoded once (orjson), its fields are
gathered into columns, and every check and conversion after that is a vectorised Arrow kernel
over the column: the same regular expressions as the fast reader (RE2), exact decimal
arithmetic (lots x contract size, units x price, rounded half-even to 8 places once), codes
mapped through lookups, times through each server's clock per quarter hour.

A message any check refuses is left to the general reader (`connectors.mt5.read_mt5_deal`),
which reads it or dead-letters it with its reason: the returned indices say which.
tests/test_connector_mt5_columns.py checks that every row equals the general reader's record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.fields import Rejected, plausible_ms_bounds
from connectors.routing import Router, ServerInfo
from schemas.envelope import Envelope
from schemas.events import EVENT_RANK, Deal
from schemas.mt5 import CANCELED_ACTIONS, DEAL_ENTRIES, DEAL_REASONS, TRADE_ACTIONS
from schemas.symbols import canonical_symbol

# The fast reader's shapes (connectors/mt5_fast.py), anchored for RE2.
_TICKET = "^[1-9][0-9]{0,18}$"
_OPTIONAL_TICKET = "^(?:|0|[1-9][0-9]{0,18})$"
_LOGIN = "^(?:0|[1-9][0-9]{0,17})$"
_COUNT = "^[0-9]{1,18}$"
_PRICE = r"^[0-9]{1,9}(?:\.[0-9]{1,8})?$"
_MONEY = r"^(?:|-?[0-9]{1,24}(?:\.[0-9]{1,8})?)$"  # "" (or absent) is zero

PRICE = pa.decimal128(18, 8)
MONEY = pa.decimal128(38, 8)
_WIDE = pa.decimal256(76, 16)

# The stored row: the Deal fields in their order, typed as the deals table takes them.
ARROW_TYPES: dict[str, pa.DataType] = {
    "deal_key": pa.string(), "tenant": pa.string(), "platform": pa.string(), "server": pa.string(),
    "login": pa.uint64(), "deal_id": pa.string(), "order_id": pa.string(),
    "position_id": pa.string(), "symbol": pa.string(), "platform_symbol": pa.string(),
    "side": pa.string(), "entry": pa.string(), "lots": PRICE, "signed_lots": PRICE,
    "contract_size": PRICE, "units": MONEY, "price": PRICE, "notional": MONEY, "profit": MONEY,
    "swap": MONEY, "commission": MONEY, "fee": MONEY, "currency": pa.string(),
    "reason": pa.string(), "canceled": pa.bool_(), "comment": pa.string(),
    "external_id": pa.string(), "time": pa.timestamp("ms", tz="UTC"), "event": pa.string(),
    "version": pa.uint64(), "is_deleted": pa.bool_(), "source": pa.string(),
}
assert tuple(ARROW_TYPES) == tuple(Deal.model_fields), "the columns are the Deal fields, in order"
SCHEMA = pa.schema(list(ARROW_TYPES.items()))



class _Message(msgspec.Struct):
    """The fields of an MT5 deal message this reads, each a JSON string when present (a number
    or an object fails the decode: the general reader reads those). Other fields are skipped."""

    Deal: str | None = None
    Action: str | None = None
    Entry: str | None = None
    Login: str | None = None
    Symbol: str | None = None
    ContractSize: str | None = None
    Price: str | None = None
    Order: str | None = None
    PositionID: str | None = None
    VolumeExt: str | None = None
    Volume: str | None = None
    Profit: str | None = None
    Storage: str | None = None
    Commission: str | None = None
    Fee: str | None = None
    TimeMsc: str | None = None
    Time: str | None = None
    Comment: str | None = None
    ExternalID: str | None = None
    Reason: str | None = "0"  # absent: "0", as the fast reader reads it
    answer: Any = msgspec.UNSET  # an MT5 Web API reply wrapper: not a deal message


_DECODER = msgspec.json.Decoder(_Message)
_REFUSED = _Message(answer=None)
_FIELDS = tuple(f for f in _Message.__struct_fields__ if f != "answer")
_QUARTER_HOUR_MS = 900_000


@dataclass(frozen=True)
class DealColumns:
    """What a batch of MT5 deal messages gave: the rows it read, and the messages it left."""

    table: pa.Table  # SCHEMA, in the messages' order
    left: list[int]  # indices of the messages for the general reader


def _code_lookup(values: pa.Array, mapping: dict[str, str]) -> tuple[pa.Array, pa.Array]:
    """(mapped strings, known mask): codes as text -> their names."""
    keys = pa.array(list(mapping), pa.string())
    index = pc.index_in(values, value_set=keys)
    names = pa.array(list(mapping.values()), pa.string())
    return pc.take(names, index), pc.is_valid(index)


def _per_distinct(values: pa.Array, fn: Any) -> pa.Array:
    """fn applied once per distinct value (symbols, reasons: a few hundred per batch)."""
    encoded = pc.dictionary_encode(values)
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(mapped, encoded.indices)


def _scaled(ints: np.ndarray[Any, Any], kind: pa.DataType) -> pa.Array:
    """int64 fixed-point values (units of 10^-scale) -> a decimal array, without Python objects."""
    words = np.empty((len(ints), 2), dtype=np.int64)
    words[:, 0] = ints
    words[:, 1] = ints >> 63  # two's complement sign extension to 128 bits
    return pa.Array.from_buffers(pa.decimal128(kind.precision, kind.scale), len(ints),
                                 [None, pa.py_buffer(words)])


def _round8(value: pa.Array, kind: pa.DataType) -> pa.Array:
    """An exact product rounded once, half-even, to the 8 places the tables store."""
    return pc.cast(pc.round(value, ndigits=8, round_mode="half_to_even"), kind)


def _fullmatch(values: pa.Array, pattern: str) -> np.ndarray[Any, Any]:
    return pc.fill_null(pc.match_substring_regex(values, pattern), False).to_numpy(zero_copy_only=False)


class Mt5DealColumns:
    """Reads batches of `mt5.deals` envelopes column-wise (see the module docstring)."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._symbols: dict[str, str] = {}

    def __call__(self, envs: Sequence[Envelope]) -> DealColumns:
        n = len(envs)
        decode = _DECODER.decode
        messages: list[_Message] = []
        for env in envs:
            try:
                messages.append(decode(env.value))
            except msgspec.DecodeError:  # not JSON, not an object, or a number for a string
                messages.append(_REFUSED)
        events = [env.headers.get("event", "add") or "add" for env in envs]
        servers = [env.headers.get("server") for env in envs]
        resolved = self._resolve(servers, envs)
        infos = [resolved[name] for name in servers]
        ok = np.fromiter((m.answer is msgspec.UNSET and m is not _REFUSED and info is not None
                          and e in EVENT_RANK for m, info, e in zip(messages, infos, events, strict=True)),
                         bool, n)
        if not ok.any():
            return DealColumns(SCHEMA.empty_table(), list(range(n)))
        raw = {name: pa.array(list(map(attrgetter(name), messages)), pa.string()) for name in _FIELDS}
        reasons = raw["Reason"]

        # -- the fast reader's checks, a column at a time -------------------------------------
        ok &= _fullmatch(raw["Deal"], _TICKET)
        ok &= _fullmatch(raw["Login"], _LOGIN)
        ok &= _fullmatch(raw["ContractSize"], _PRICE)
        ok &= _fullmatch(raw["Price"], _PRICE)
        ok &= _fullmatch(pc.fill_null(raw["Order"], ""), _OPTIONAL_TICKET)
        ok &= _fullmatch(pc.fill_null(raw["PositionID"], ""), _OPTIONAL_TICKET)
        ok &= _fullmatch(reasons, _COUNT)
        side, known_action = _code_lookup(raw["Action"], {str(k): v for k, v in TRADE_ACTIONS.items()})
        entry, known_entry = _code_lookup(raw["Entry"], {str(k): v for k, v in DEAL_ENTRIES.items()})
        ok &= pc.fill_null(known_action, False).to_numpy(zero_copy_only=False)
        ok &= pc.fill_null(known_entry, False).to_numpy(zero_copy_only=False)
        symbols = raw["Symbol"]
        ok &= pc.fill_null(pc.greater(pc.utf8_length(symbols), 0), False).to_numpy(zero_copy_only=False)
        money = {}
        for name in ("Profit", "Storage", "Commission", "Fee"):
            text = pc.fill_null(raw[name], "")
            ok &= _fullmatch(text, _MONEY)
            money[name] = pc.if_else(pc.equal(text, ""), "0", text)

        # lots: VolumeExt (10^-8 lot) when set, else Volume (10^-4 lot); 0 < lots < 10^9
        ext = pc.fill_null(raw["VolumeExt"], "")
        use_ext = pc.invert(pc.is_in(ext, value_set=pa.array(["", "0"]))).to_numpy(zero_copy_only=False)
        volume = pc.fill_null(raw["Volume"], "")
        count_ext = _fullmatch(ext, _COUNT)
        count_volume = _fullmatch(volume, _COUNT)
        ok &= np.where(use_ext, count_ext, count_volume)
        # TimeMsc when set, else Time in seconds
        msc = pc.fill_null(raw["TimeMsc"], "")
        use_msc = pc.invert(pc.is_in(msc, value_set=pa.array(["", "0"]))).to_numpy(zero_copy_only=False)
        stamp = pc.fill_null(raw["Time"], "")
        ok &= np.where(use_msc, _fullmatch(msc, _COUNT), _fullmatch(stamp, _COUNT))

        # -- the numbers of the rows that passed, and the checks on their values ------------
        rows = np.flatnonzero(ok)
        sel = pa.array(rows)

        def picked(values: pa.Array) -> pa.Array:
            return pc.take(values, sel)

        ext_n = pc.cast(picked(pc.if_else(pa.array(use_ext), ext, "0")), pa.int64()).to_numpy()
        vol_n = pc.cast(picked(pc.if_else(pa.array(use_ext), "0", volume)), pa.int64()).to_numpy()
        # below 10^13 Volume is below 10^9 lots (the limit): the product cannot overflow
        lots8 = np.where(use_ext[rows], ext_n, np.where(vol_n < 10**13, vol_n * 10_000, -1))
        contract = pc.cast(picked(raw["ContractSize"]), PRICE)
        price = pc.cast(picked(raw["Price"]), PRICE)
        fine = (lots8 > 0) & (lots8 < 10**17)
        fine &= pc.greater(contract, pa.scalar(0, PRICE)).to_numpy(zero_copy_only=False)
        msc_n = pc.cast(picked(pc.if_else(pa.array(use_msc), msc, "0")), pa.int64()).to_numpy()
        sec_n = pc.cast(picked(pc.if_else(pa.array(use_msc), "0", stamp)), pa.int64()).to_numpy()
        local_ms = np.where(use_msc[rows], msc_n, np.where(sec_n < 10**15, sec_n * 1000, -(10**15)))
        utc_ms = self._to_utc(local_ms, [infos[i] for i in rows.tolist()])
        first, last = plausible_ms_bounds()
        fine &= (utc_ms >= first) & (utc_ms <= last)
        if not fine.all():  # refused on its values: the general reader says why
            ok[rows[~fine]] = False
            keep_fine = pa.array(fine)
            rows, lots8, utc_ms = rows[fine], lots8[fine], utc_ms[fine]
            contract, price = contract.filter(keep_fine), price.filter(keep_fine)
        m = len(rows)
        final = pa.array(rows)

        def col(values: pa.Array) -> pa.Array:
            return pc.take(values, final)

        lots = _scaled(lots8, PRICE)
        codes = pc.cast(col(raw["Action"]), pa.int64()).to_numpy()
        canceled = np.isin(codes, list(CANCELED_ACTIONS))
        sides = col(side)
        buy = pc.equal(sides, "buy").to_numpy(zero_copy_only=False)
        signed = _scaled(np.where(canceled, 0, np.where(buy, lots8, -lots8)), PRICE)
        units = _round8(pc.multiply(lots, contract), MONEY)
        # units (< 10^18, 8 places) x price needs more than 38 digits before it is rounded
        notional = _round8(pc.multiply(pc.cast(units, pa.decimal256(38, 8)),
                                       pc.cast(price, pa.decimal256(18, 8))), MONEY)
        deal_ids = col(raw["Deal"])
        taken = rows.tolist()
        kept_infos = [cast(ServerInfo, infos[i]) for i in taken]  # resolved: checked above
        kept_events = [events[i] for i in taken]
        servers = pa.array([info.server.name for info in kept_infos], pa.string())
        event_arr = pa.array(kept_events, pa.string())
        stamps = np.fromiter((envs[i].timestamp_ms for i in taken), np.int64, m)
        ranks = np.fromiter((EVENT_RANK[e] for e in kept_events), np.int64, m)
        platform_symbols = col(symbols)
        columns: dict[str, pa.Array] = {
            "deal_key": pc.binary_join_element_wise("mt5", servers, deal_ids, ":"),
            "tenant": pa.array([info.tenant for info in kept_infos], pa.string()),
            "platform": pa.array(["mt5"] * m, pa.string()),
            "server": servers,
            "login": pc.cast(col(raw["Login"]), pa.uint64()),
            "deal_id": deal_ids,
            "order_id": pc.fill_null(col(raw["Order"]), ""),
            "position_id": pc.fill_null(col(raw["PositionID"]), ""),
            "symbol": _per_distinct(platform_symbols, self._canonical),
            "platform_symbol": platform_symbols,
            "side": sides,
            "entry": col(entry),
            "lots": lots,
            "signed_lots": signed,
            "contract_size": contract,
            "units": units,
            "price": price,
            "notional": notional,
            "profit": pc.cast(col(money["Profit"]), MONEY),
            "swap": pc.cast(col(money["Storage"]), MONEY),
            "commission": pc.cast(col(money["Commission"]), MONEY),
            "fee": pc.cast(col(money["Fee"]), MONEY),
            "currency": pa.array([info.server.currency for info in kept_infos], pa.string()),
            "reason": _per_distinct(col(reasons), _reason_name),
            "canceled": pa.array(canceled),
            "comment": pc.fill_null(col(raw["Comment"]), ""),
            "external_id": pc.fill_null(col(raw["ExternalID"]), ""),
            "time": pa.array(utc_ms, pa.timestamp("ms", tz="UTC")),
            "event": event_arr,
            "version": pa.array((stamps * 4 + ranks).astype(np.uint64), pa.uint64()),
            "is_deleted": pc.equal(event_arr, "delete"),
            "source": pa.array([envs[i].source for i in taken], pa.string()),
        }
        table = pa.Table.from_arrays(list(columns.values()), schema=SCHEMA)
        return DealColumns(table, np.flatnonzero(~ok).tolist())

    def _resolve(self, servers: list[str | None], envs: Sequence[Envelope]
                 ) -> dict[str | None, ServerInfo | None]:
        """The server of each distinct `server` header (None: the general reader says why)."""
        resolved: dict[str | None, ServerInfo | None] = {}
        for name, env in zip(servers, envs, strict=True):
            if name not in resolved:
                try:
                    resolved[name] = self._router.server_of(env, "mt5")
                except Rejected:
                    resolved[name] = None
        return resolved

    def _canonical(self, symbol: str) -> str:
        name = self._symbols.get(symbol)
        if name is None:
            name = self._symbols[symbol] = canonical_symbol(symbol)
        return name

    @staticmethod
    def _to_utc(local_ms: np.ndarray[Any, Any], infos: Sequence[ServerInfo | None]) -> np.ndarray[Any, Any]:
        """Server wall-clock ms -> UTC ms. A zone's offset is the same over a quarter hour of
        wall time (time zones change offsets on quarter-hour boundaries), so it is looked up
        once per server and quarter hour."""
        out = local_ms.copy()
        by_clock: dict[int, list[int]] = {}
        clocks = {}
        for i, info in enumerate(infos):
            clock = cast(ServerInfo, info).clock
            by_clock.setdefault(id(clock), []).append(i)
            clocks[id(clock)] = clock
        for key, where in by_clock.items():
            clock = clocks[key]
            idx = np.asarray(where)
            if clock.zone is None:
                out[idx] = local_ms[idx] - clock.offset_minutes * 60_000
                continue
            buckets = local_ms[idx] // _QUARTER_HOUR_MS
            distinct, inverse = np.unique(buckets, return_inverse=True)
            offsets = np.array([clock.to_utc_ms(int(b) * _QUARTER_HOUR_MS) - int(b) * _QUARTER_HOUR_MS
                                for b in distinct], dtype=np.int64)
            out[idx] = local_ms[idx] + offsets[inverse]
        return out


def _reason_name(code: str) -> str:
    number = int(code)
    return DEAL_REASONS.get(number) or f"unknown_{number}"
