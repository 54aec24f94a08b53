"""Live exposure and P&L for the risk desk: positions from deals, conversion to USD and to the
account currency, exposure per symbol / currency / book, limits and margin.

Plain domain logic: nothing here knows Kafka, Bytewax or ClickHouse. See docs/exposure.md.
"""

from risk_rules.exposure.conversion import (
    MissingMarketData,
    MissingPrice,
    MissingRate,
    Price,
    PriceBook,
    Rates,
)
from risk_rules.exposure.exposure import ExposureEngine
from risk_rules.exposure.instruments import (
    Instrument,
    InstrumentLookup,
    InstrumentSpec,
    InstrumentTable,
    UnknownInstrument,
    guess_instrument,
)
from risk_rules.exposure.limits import (
    LimitBreach,
    LimitEvent,
    LimitMonitor,
    LimitRecovered,
    LimitRule,
    LimitsConfig,
)
from risk_rules.exposure.margin import (
    MarginCall,
    MarginConfig,
    MarginEvent,
    MarginLevels,
    MarginMonitor,
    MarginRecovered,
    MarginStatus,
    StopOut,
)
from risk_rules.exposure.money import Money
from risk_rules.exposure.positions import (
    PositionBook,
    PositionChange,
    PositionKey,
    PositionState,
)
from risk_rules.exposure.routing import AccountModes, BookRouting, BookRule, ModeRule
from risk_rules.exposure.rows import (
    AccountExposure,
    CurrencyExposureRow,
    ExposureAggregate,
    ExposureRow,
    ExposureSnapshot,
    PositionRow,
)

__all__ = [
    "AccountExposure",
    "AccountModes",
    "BookRouting",
    "BookRule",
    "CurrencyExposureRow",
    "ExposureAggregate",
    "ExposureEngine",
    "ExposureRow",
    "ExposureSnapshot",
    "Instrument",
    "InstrumentLookup",
    "InstrumentSpec",
    "InstrumentTable",
    "LimitBreach",
    "LimitEvent",
    "LimitMonitor",
    "LimitRecovered",
    "LimitRule",
    "LimitsConfig",
    "MarginCall",
    "MarginConfig",
    "MarginEvent",
    "MarginLevels",
    "MarginMonitor",
    "MarginRecovered",
    "MarginStatus",
    "MissingMarketData",
    "MissingPrice",
    "MissingRate",
    "ModeRule",
    "Money",
    "PositionBook",
    "PositionChange",
    "PositionKey",
    "PositionRow",
    "PositionState",
    "Price",
    "PriceBook",
    "Rates",
    "StopOut",
    "UnknownInstrument",
    "guess_instrument",
]
