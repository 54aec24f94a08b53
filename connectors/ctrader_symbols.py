"""cTrader symbol lists: Open API messages name a symbol only by its id, so the connector needs
each server's list (id -> name, digits, lot size) to say what was traded and how much.

Ids differ between cTrader servers (broker environments), so a list belongs to a server.
`CTraderSymbols.from_mapping` reads the form a configuration file would hold::

    {"ACME-cTrader": [{"id": 1, "name": "EURUSD", "digits": 5, "lot_size": 10000000}, ...]}

`lot_size` is the Open API's `ProtoOASymbol.lotSize`: units per lot in cents of units, so a
100,000-unit FX lot is 10,000,000. `symbols_from_open_api` builds a list from the two Open API
answers a bridge fetches once (ProtoOASymbolsListRes for names, ProtoOASymbolByIdRes for digits
and lot sizes). `CTraderSymbols.simulated()` is the simulated broker's list, used for any server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from google.protobuf.message import DecodeError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from connectors.ctrader_proto import openapi_subset_pb2 as pb
from connectors.fields import Rejected


class CTraderSymbol(BaseModel):
    """One symbol of one cTrader server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(ge=0, description="symbolId on that server")
    name: str = Field(min_length=1, description="the platform's symbol name, e.g. EURUSD")
    digits: int = Field(ge=0, le=10, description="price digits")
    # below 10^12: the contract size (lot_size / 100) is stored as Decimal(18, 8)
    lot_size: int = Field(
        gt=0, lt=10**12, description="units per lot, in cents of units (ProtoOASymbol.lotSize)"
    )

    @property
    def contract_size(self) -> Decimal:
        """Units per lot (lot_size is in cents of units)."""
        return Decimal(self.lot_size).scaleb(-2)


FX_LOT = 10_000_000  # 100,000 units
SIMULATED_SYMBOLS: tuple[CTraderSymbol, ...] = tuple(
    CTraderSymbol(id=i, name=name, digits=digits, lot_size=lot_size)
    for i, (name, digits, lot_size) in enumerate(
        [
            ("EURUSD", 5, FX_LOT),
            ("GBPUSD", 5, FX_LOT),
            ("USDJPY", 3, FX_LOT),
            ("EURJPY", 3, FX_LOT),
            ("AUDUSD", 5, FX_LOT),
            ("XAUUSD", 2, 10_000),  # 100 oz
            ("US30", 1, 100),  # 1 unit (index CFD)
            ("BTCUSD", 2, 100),  # 1 coin
        ],
        start=1,
    )
)


def _index(symbols: Iterable[CTraderSymbol], where: str) -> dict[int, CTraderSymbol]:
    out: dict[int, CTraderSymbol] = {}
    for symbol in symbols:
        if symbol.id in out:
            raise ValueError(
                f"{where}: symbol id {symbol.id} is listed twice ({out[symbol.id].name} and {symbol.name})"
            )
        out[symbol.id] = symbol
    return out


_MAPPING = TypeAdapter(dict[str, list[CTraderSymbol]])


class CTraderSymbols:
    """Symbol lists per cTrader server, with an optional list for servers not named."""

    def __init__(
        self,
        servers: Mapping[str, Iterable[CTraderSymbol]] | None = None,
        default: Iterable[CTraderSymbol] | None = None,
    ) -> None:
        self._servers = {
            name: _index(symbols, f"server {name!r}") for name, symbols in (servers or {}).items()
        }
        self._default = None if default is None else _index(default, "default list")

    @classmethod
    def simulated(cls) -> CTraderSymbols:
        """The simulated broker's list (ids 1..8), for every server."""
        return cls(default=SIMULATED_SYMBOLS)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], default: Iterable[CTraderSymbol] | None = None
    ) -> CTraderSymbols:
        """From `{server: [{"id", "name", "digits", "lot_size"}, ...]}`; ValueError names the
        offending entry."""
        try:
            servers = _MAPPING.validate_python(dict(doc))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(f"cTrader symbol list: {problems}") from None
        return cls(servers, default)

    def servers(self) -> list[str]:
        return sorted(self._servers)

    def symbol(self, server: str, symbol_id: int) -> CTraderSymbol:
        """The symbol `symbol_id` of `server`; Rejected when the list does not know it."""
        table = self._servers.get(server, self._default)
        if table is None:
            raise Rejected(f"no cTrader symbol list is configured for server {server!r}", "route")
        symbol = table.get(symbol_id)
        if symbol is None:
            raise Rejected(f"unknown cTrader symbolId {symbol_id} on server {server}")
        return symbol


def symbols_from_open_api(symbols_list_res: bytes, symbol_by_id_res: bytes) -> list[CTraderSymbol]:
    """A server's list from the payloads of ProtoOASymbolsListRes (names) and
    ProtoOASymbolByIdRes (digits, lotSize). Symbols missing from either answer are left out:
    a symbol without a name or a lot size cannot be used. Raises ValueError."""
    names = pb.ProtoOASymbolsListRes()
    details = pb.ProtoOASymbolByIdRes()
    try:
        names.ParseFromString(symbols_list_res)
        details.ParseFromString(symbol_by_id_res)
    except (DecodeError, ValueError) as exc:  # ValueError: bad UTF-8, pure-Python runtime
        raise ValueError(f"not a cTrader symbol answer: {exc}") from None
    name_of = {s.symbolId: s.symbolName for s in names.symbol if s.symbolName}
    out = []
    for s in details.symbol:
        name = name_of.get(s.symbolId)
        if name and s.HasField("lotSize") and s.lotSize > 0:
            out.append(CTraderSymbol(id=s.symbolId, name=name, digits=s.digits, lot_size=s.lotSize))
    return out
