# ruff: noqa
# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtoOAPayloadType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTO_OA_SYMBOLS_LIST_RES: _ClassVar[ProtoOAPayloadType]
    PROTO_OA_SYMBOL_BY_ID_RES: _ClassVar[ProtoOAPayloadType]
    PROTO_OA_TRADER_UPDATE_EVENT: _ClassVar[ProtoOAPayloadType]
    PROTO_OA_EXECUTION_EVENT: _ClassVar[ProtoOAPayloadType]
    PROTO_OA_SPOT_EVENT: _ClassVar[ProtoOAPayloadType]

class ProtoOAExecutionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_ACCEPTED: _ClassVar[ProtoOAExecutionType]
    ORDER_FILLED: _ClassVar[ProtoOAExecutionType]
    ORDER_REPLACED: _ClassVar[ProtoOAExecutionType]
    ORDER_CANCELLED: _ClassVar[ProtoOAExecutionType]
    ORDER_EXPIRED: _ClassVar[ProtoOAExecutionType]
    ORDER_REJECTED: _ClassVar[ProtoOAExecutionType]
    ORDER_CANCEL_REJECTED: _ClassVar[ProtoOAExecutionType]
    SWAP: _ClassVar[ProtoOAExecutionType]
    DEPOSIT_WITHDRAW: _ClassVar[ProtoOAExecutionType]
    ORDER_PARTIAL_FILL: _ClassVar[ProtoOAExecutionType]
    BONUS_DEPOSIT_WITHDRAW: _ClassVar[ProtoOAExecutionType]

class ProtoOATradeSide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUY: _ClassVar[ProtoOATradeSide]
    SELL: _ClassVar[ProtoOATradeSide]

class ProtoOADealStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILLED: _ClassVar[ProtoOADealStatus]
    PARTIALLY_FILLED: _ClassVar[ProtoOADealStatus]
    REJECTED: _ClassVar[ProtoOADealStatus]
    INTERNALLY_REJECTED: _ClassVar[ProtoOADealStatus]
    ERROR: _ClassVar[ProtoOADealStatus]
    MISSED: _ClassVar[ProtoOADealStatus]

class ProtoOAChangeBalanceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BALANCE_DEPOSIT: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_STRATEGY_COMMISSION_INNER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_STRATEGY_COMMISSION_INNER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_IB_COMMISSIONS: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_IB_SHARED_PERCENTAGE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_IB_SHARED_PERCENTAGE_FROM_SUB_IB: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_IB_SHARED_PERCENTAGE_FROM_BROKER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_REBATE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_REBATE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_STRATEGY_COMMISSION_OUTER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_STRATEGY_COMMISSION_OUTER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_BONUS_COMPENSATION: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_IB_SHARED_PERCENTAGE_TO_BROKER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_DIVIDENDS: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_DIVIDENDS: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_GSL_CHARGE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_ROLLOVER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_NONWITHDRAWABLE_BONUS: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_NONWITHDRAWABLE_BONUS: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_SWAP: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_SWAP: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_MANAGEMENT_FEE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_MANAGEMENT_FEE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_PERFORMANCE_FEE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_FOR_SUBACCOUNT: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_TO_SUBACCOUNT: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_FROM_SUBACCOUNT: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_FROM_SUBACCOUNT: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_COPY_FEE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_INACTIVITY_FEE: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_TRANSFER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_WITHDRAW_TRANSFER: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_CONVERTED_BONUS: _ClassVar[ProtoOAChangeBalanceType]
    BALANCE_DEPOSIT_NEGATIVE_BALANCE_PROTECTION: _ClassVar[ProtoOAChangeBalanceType]

class ProtoOAAccessRights(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FULL_ACCESS: _ClassVar[ProtoOAAccessRights]
    CLOSE_ONLY: _ClassVar[ProtoOAAccessRights]
    NO_TRADING: _ClassVar[ProtoOAAccessRights]
    NO_LOGIN: _ClassVar[ProtoOAAccessRights]

class ProtoOATotalMarginCalculationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAX: _ClassVar[ProtoOATotalMarginCalculationType]
    SUM: _ClassVar[ProtoOATotalMarginCalculationType]
    NET: _ClassVar[ProtoOATotalMarginCalculationType]

class ProtoOAAccountType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEDGED: _ClassVar[ProtoOAAccountType]
    NETTED: _ClassVar[ProtoOAAccountType]
    SPREAD_BETTING: _ClassVar[ProtoOAAccountType]

class ProtoOALimitedRiskMarginCalculationStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCORDING_TO_LEVERAGE: _ClassVar[ProtoOALimitedRiskMarginCalculationStrategy]
    ACCORDING_TO_GSL: _ClassVar[ProtoOALimitedRiskMarginCalculationStrategy]
    ACCORDING_TO_GSL_AND_LEVERAGE: _ClassVar[ProtoOALimitedRiskMarginCalculationStrategy]
PROTO_OA_SYMBOLS_LIST_RES: ProtoOAPayloadType
PROTO_OA_SYMBOL_BY_ID_RES: ProtoOAPayloadType
PROTO_OA_TRADER_UPDATE_EVENT: ProtoOAPayloadType
PROTO_OA_EXECUTION_EVENT: ProtoOAPayloadType
PROTO_OA_SPOT_EVENT: ProtoOAPayloadType
ORDER_ACCEPTED: ProtoOAExecutionType
ORDER_FILLED: ProtoOAExecutionType
ORDER_REPLACED: ProtoOAExecutionType
ORDER_CANCELLED: ProtoOAExecutionType
ORDER_EXPIRED: ProtoOAExecutionType
ORDER_REJECTED: ProtoOAExecutionType
ORDER_CANCEL_REJECTED: ProtoOAExecutionType
SWAP: ProtoOAExecutionType
DEPOSIT_WITHDRAW: ProtoOAExecutionType
ORDER_PARTIAL_FILL: ProtoOAExecutionType
BONUS_DEPOSIT_WITHDRAW: ProtoOAExecutionType
BUY: ProtoOATradeSide
SELL: ProtoOATradeSide
FILLED: ProtoOADealStatus
PARTIALLY_FILLED: ProtoOADealStatus
REJECTED: ProtoOADealStatus
INTERNALLY_REJECTED: ProtoOADealStatus
ERROR: ProtoOADealStatus
MISSED: ProtoOADealStatus
BALANCE_DEPOSIT: ProtoOAChangeBalanceType
BALANCE_WITHDRAW: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_STRATEGY_COMMISSION_INNER: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_STRATEGY_COMMISSION_INNER: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_IB_COMMISSIONS: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_IB_SHARED_PERCENTAGE: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_IB_SHARED_PERCENTAGE_FROM_SUB_IB: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_IB_SHARED_PERCENTAGE_FROM_BROKER: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_REBATE: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_REBATE: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_STRATEGY_COMMISSION_OUTER: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_STRATEGY_COMMISSION_OUTER: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_BONUS_COMPENSATION: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_IB_SHARED_PERCENTAGE_TO_BROKER: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_DIVIDENDS: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_DIVIDENDS: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_GSL_CHARGE: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_ROLLOVER: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_NONWITHDRAWABLE_BONUS: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_NONWITHDRAWABLE_BONUS: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_SWAP: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_SWAP: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_MANAGEMENT_FEE: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_MANAGEMENT_FEE: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_PERFORMANCE_FEE: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_FOR_SUBACCOUNT: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_TO_SUBACCOUNT: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_FROM_SUBACCOUNT: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_FROM_SUBACCOUNT: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_COPY_FEE: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_INACTIVITY_FEE: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_TRANSFER: ProtoOAChangeBalanceType
BALANCE_WITHDRAW_TRANSFER: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_CONVERTED_BONUS: ProtoOAChangeBalanceType
BALANCE_DEPOSIT_NEGATIVE_BALANCE_PROTECTION: ProtoOAChangeBalanceType
FULL_ACCESS: ProtoOAAccessRights
CLOSE_ONLY: ProtoOAAccessRights
NO_TRADING: ProtoOAAccessRights
NO_LOGIN: ProtoOAAccessRights
MAX: ProtoOATotalMarginCalculationType
SUM: ProtoOATotalMarginCalculationType
NET: ProtoOATotalMarginCalculationType
HEDGED: ProtoOAAccountType
NETTED: ProtoOAAccountType
SPREAD_BETTING: ProtoOAAccountType
ACCORDING_TO_LEVERAGE: ProtoOALimitedRiskMarginCalculationStrategy
ACCORDING_TO_GSL: ProtoOALimitedRiskMarginCalculationStrategy
ACCORDING_TO_GSL_AND_LEVERAGE: ProtoOALimitedRiskMarginCalculationStrategy

class ProtoMessage(_message.Message):
    __slots__ = ("payloadType", "payload", "clientMsgId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CLIENTMSGID_FIELD_NUMBER: _ClassVar[int]
    payloadType: int
    payload: bytes
    clientMsgId: str
    def __init__(self, payloadType: _Optional[int] = ..., payload: _Optional[bytes] = ..., clientMsgId: _Optional[str] = ...) -> None: ...

class ProtoOAClosePositionDetail(_message.Message):
    __slots__ = ("entryPrice", "grossProfit", "swap", "commission", "balance", "quoteToDepositConversionRate", "closedVolume", "balanceVersion", "moneyDigits", "pnlConversionFee")
    ENTRYPRICE_FIELD_NUMBER: _ClassVar[int]
    GROSSPROFIT_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    QUOTETODEPOSITCONVERSIONRATE_FIELD_NUMBER: _ClassVar[int]
    CLOSEDVOLUME_FIELD_NUMBER: _ClassVar[int]
    BALANCEVERSION_FIELD_NUMBER: _ClassVar[int]
    MONEYDIGITS_FIELD_NUMBER: _ClassVar[int]
    PNLCONVERSIONFEE_FIELD_NUMBER: _ClassVar[int]
    entryPrice: float
    grossProfit: int
    swap: int
    commission: int
    balance: int
    quoteToDepositConversionRate: float
    closedVolume: int
    balanceVersion: int
    moneyDigits: int
    pnlConversionFee: int
    def __init__(self, entryPrice: _Optional[float] = ..., grossProfit: _Optional[int] = ..., swap: _Optional[int] = ..., commission: _Optional[int] = ..., balance: _Optional[int] = ..., quoteToDepositConversionRate: _Optional[float] = ..., closedVolume: _Optional[int] = ..., balanceVersion: _Optional[int] = ..., moneyDigits: _Optional[int] = ..., pnlConversionFee: _Optional[int] = ...) -> None: ...

class ProtoOADeal(_message.Message):
    __slots__ = ("dealId", "orderId", "positionId", "volume", "filledVolume", "symbolId", "createTimestamp", "executionTimestamp", "utcLastUpdateTimestamp", "executionPrice", "tradeSide", "dealStatus", "marginRate", "commission", "baseToUsdConversionRate", "closePositionDetail", "moneyDigits")
    DEALID_FIELD_NUMBER: _ClassVar[int]
    ORDERID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    FILLEDVOLUME_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    CREATETIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UTCLASTUPDATETIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONPRICE_FIELD_NUMBER: _ClassVar[int]
    TRADESIDE_FIELD_NUMBER: _ClassVar[int]
    DEALSTATUS_FIELD_NUMBER: _ClassVar[int]
    MARGINRATE_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    BASETOUSDCONVERSIONRATE_FIELD_NUMBER: _ClassVar[int]
    CLOSEPOSITIONDETAIL_FIELD_NUMBER: _ClassVar[int]
    MONEYDIGITS_FIELD_NUMBER: _ClassVar[int]
    dealId: int
    orderId: int
    positionId: int
    volume: int
    filledVolume: int
    symbolId: int
    createTimestamp: int
    executionTimestamp: int
    utcLastUpdateTimestamp: int
    executionPrice: float
    tradeSide: ProtoOATradeSide
    dealStatus: ProtoOADealStatus
    marginRate: float
    commission: int
    baseToUsdConversionRate: float
    closePositionDetail: ProtoOAClosePositionDetail
    moneyDigits: int
    def __init__(self, dealId: _Optional[int] = ..., orderId: _Optional[int] = ..., positionId: _Optional[int] = ..., volume: _Optional[int] = ..., filledVolume: _Optional[int] = ..., symbolId: _Optional[int] = ..., createTimestamp: _Optional[int] = ..., executionTimestamp: _Optional[int] = ..., utcLastUpdateTimestamp: _Optional[int] = ..., executionPrice: _Optional[float] = ..., tradeSide: _Optional[_Union[ProtoOATradeSide, str]] = ..., dealStatus: _Optional[_Union[ProtoOADealStatus, str]] = ..., marginRate: _Optional[float] = ..., commission: _Optional[int] = ..., baseToUsdConversionRate: _Optional[float] = ..., closePositionDetail: _Optional[_Union[ProtoOAClosePositionDetail, _Mapping]] = ..., moneyDigits: _Optional[int] = ...) -> None: ...

class ProtoOADepositWithdraw(_message.Message):
    __slots__ = ("operationType", "balanceHistoryId", "balance", "delta", "changeBalanceTimestamp", "externalNote", "balanceVersion", "equity", "moneyDigits")
    OPERATIONTYPE_FIELD_NUMBER: _ClassVar[int]
    BALANCEHISTORYID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CHANGEBALANCETIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXTERNALNOTE_FIELD_NUMBER: _ClassVar[int]
    BALANCEVERSION_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    MONEYDIGITS_FIELD_NUMBER: _ClassVar[int]
    operationType: ProtoOAChangeBalanceType
    balanceHistoryId: int
    balance: int
    delta: int
    changeBalanceTimestamp: int
    externalNote: str
    balanceVersion: int
    equity: int
    moneyDigits: int
    def __init__(self, operationType: _Optional[_Union[ProtoOAChangeBalanceType, str]] = ..., balanceHistoryId: _Optional[int] = ..., balance: _Optional[int] = ..., delta: _Optional[int] = ..., changeBalanceTimestamp: _Optional[int] = ..., externalNote: _Optional[str] = ..., balanceVersion: _Optional[int] = ..., equity: _Optional[int] = ..., moneyDigits: _Optional[int] = ...) -> None: ...

class ProtoOAExecutionEvent(_message.Message):
    __slots__ = ("ctidTraderAccountId", "executionType", "deal", "depositWithdraw", "errorCode", "isServerEvent")
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONTYPE_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    DEPOSITWITHDRAW_FIELD_NUMBER: _ClassVar[int]
    ERRORCODE_FIELD_NUMBER: _ClassVar[int]
    ISSERVEREVENT_FIELD_NUMBER: _ClassVar[int]
    ctidTraderAccountId: int
    executionType: ProtoOAExecutionType
    deal: ProtoOADeal
    depositWithdraw: ProtoOADepositWithdraw
    errorCode: str
    isServerEvent: bool
    def __init__(self, ctidTraderAccountId: _Optional[int] = ..., executionType: _Optional[_Union[ProtoOAExecutionType, str]] = ..., deal: _Optional[_Union[ProtoOADeal, _Mapping]] = ..., depositWithdraw: _Optional[_Union[ProtoOADepositWithdraw, _Mapping]] = ..., errorCode: _Optional[str] = ..., isServerEvent: _Optional[bool] = ...) -> None: ...

class ProtoOASpotEvent(_message.Message):
    __slots__ = ("ctidTraderAccountId", "symbolId", "bid", "ask", "sessionClose", "timestamp")
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    SESSIONCLOSE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ctidTraderAccountId: int
    symbolId: int
    bid: int
    ask: int
    sessionClose: int
    timestamp: int
    def __init__(self, ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[int] = ..., bid: _Optional[int] = ..., ask: _Optional[int] = ..., sessionClose: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class ProtoOATrader(_message.Message):
    __slots__ = ("ctidTraderAccountId", "balance", "balanceVersion", "managerBonus", "ibBonus", "nonWithdrawableBonus", "accessRights", "depositAssetId", "swapFree", "leverageInCents", "totalMarginCalculationType", "maxLeverage", "frenchRisk", "traderLogin", "accountType", "brokerName", "registrationTimestamp", "isLimitedRisk", "limitedRiskMarginCalculationStrategy", "moneyDigits")
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    BALANCEVERSION_FIELD_NUMBER: _ClassVar[int]
    MANAGERBONUS_FIELD_NUMBER: _ClassVar[int]
    IBBONUS_FIELD_NUMBER: _ClassVar[int]
    NONWITHDRAWABLEBONUS_FIELD_NUMBER: _ClassVar[int]
    ACCESSRIGHTS_FIELD_NUMBER: _ClassVar[int]
    DEPOSITASSETID_FIELD_NUMBER: _ClassVar[int]
    SWAPFREE_FIELD_NUMBER: _ClassVar[int]
    LEVERAGEINCENTS_FIELD_NUMBER: _ClassVar[int]
    TOTALMARGINCALCULATIONTYPE_FIELD_NUMBER: _ClassVar[int]
    MAXLEVERAGE_FIELD_NUMBER: _ClassVar[int]
    FRENCHRISK_FIELD_NUMBER: _ClassVar[int]
    TRADERLOGIN_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTTYPE_FIELD_NUMBER: _ClassVar[int]
    BROKERNAME_FIELD_NUMBER: _ClassVar[int]
    REGISTRATIONTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ISLIMITEDRISK_FIELD_NUMBER: _ClassVar[int]
    LIMITEDRISKMARGINCALCULATIONSTRATEGY_FIELD_NUMBER: _ClassVar[int]
    MONEYDIGITS_FIELD_NUMBER: _ClassVar[int]
    ctidTraderAccountId: int
    balance: int
    balanceVersion: int
    managerBonus: int
    ibBonus: int
    nonWithdrawableBonus: int
    accessRights: ProtoOAAccessRights
    depositAssetId: int
    swapFree: bool
    leverageInCents: int
    totalMarginCalculationType: ProtoOATotalMarginCalculationType
    maxLeverage: int
    frenchRisk: bool
    traderLogin: int
    accountType: ProtoOAAccountType
    brokerName: str
    registrationTimestamp: int
    isLimitedRisk: bool
    limitedRiskMarginCalculationStrategy: ProtoOALimitedRiskMarginCalculationStrategy
    moneyDigits: int
    def __init__(self, ctidTraderAccountId: _Optional[int] = ..., balance: _Optional[int] = ..., balanceVersion: _Optional[int] = ..., managerBonus: _Optional[int] = ..., ibBonus: _Optional[int] = ..., nonWithdrawableBonus: _Optional[int] = ..., accessRights: _Optional[_Union[ProtoOAAccessRights, str]] = ..., depositAssetId: _Optional[int] = ..., swapFree: _Optional[bool] = ..., leverageInCents: _Optional[int] = ..., totalMarginCalculationType: _Optional[_Union[ProtoOATotalMarginCalculationType, str]] = ..., maxLeverage: _Optional[int] = ..., frenchRisk: _Optional[bool] = ..., traderLogin: _Optional[int] = ..., accountType: _Optional[_Union[ProtoOAAccountType, str]] = ..., brokerName: _Optional[str] = ..., registrationTimestamp: _Optional[int] = ..., isLimitedRisk: _Optional[bool] = ..., limitedRiskMarginCalculationStrategy: _Optional[_Union[ProtoOALimitedRiskMarginCalculationStrategy, str]] = ..., moneyDigits: _Optional[int] = ...) -> None: ...

class ProtoOATraderUpdatedEvent(_message.Message):
    __slots__ = ("ctidTraderAccountId", "trader")
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    TRADER_FIELD_NUMBER: _ClassVar[int]
    ctidTraderAccountId: int
    trader: ProtoOATrader
    def __init__(self, ctidTraderAccountId: _Optional[int] = ..., trader: _Optional[_Union[ProtoOATrader, _Mapping]] = ...) -> None: ...

class ProtoOALightSymbol(_message.Message):
    __slots__ = ("symbolId", "symbolName", "enabled", "baseAssetId", "quoteAssetId")
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLNAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    BASEASSETID_FIELD_NUMBER: _ClassVar[int]
    QUOTEASSETID_FIELD_NUMBER: _ClassVar[int]
    symbolId: int
    symbolName: str
    enabled: bool
    baseAssetId: int
    quoteAssetId: int
    def __init__(self, symbolId: _Optional[int] = ..., symbolName: _Optional[str] = ..., enabled: _Optional[bool] = ..., baseAssetId: _Optional[int] = ..., quoteAssetId: _Optional[int] = ...) -> None: ...

class ProtoOASymbolsListRes(_message.Message):
    __slots__ = ("ctidTraderAccountId", "symbol")
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ctidTraderAccountId: int
    symbol: _containers.RepeatedCompositeFieldContainer[ProtoOALightSymbol]
    def __init__(self, ctidTraderAccountId: _Optional[int] = ..., symbol: _Optional[_Iterable[_Union[ProtoOALightSymbol, _Mapping]]] = ...) -> None: ...

class ProtoOASymbol(_message.Message):
    __slots__ = ("symbolId", "digits", "pipPosition", "lotSize")
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    PIPPOSITION_FIELD_NUMBER: _ClassVar[int]
    LOTSIZE_FIELD_NUMBER: _ClassVar[int]
    symbolId: int
    digits: int
    pipPosition: int
    lotSize: int
    def __init__(self, symbolId: _Optional[int] = ..., digits: _Optional[int] = ..., pipPosition: _Optional[int] = ..., lotSize: _Optional[int] = ...) -> None: ...

class ProtoOASymbolByIdRes(_message.Message):
    __slots__ = ("ctidTraderAccountId", "symbol")
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ctidTraderAccountId: int
    symbol: _containers.RepeatedCompositeFieldContainer[ProtoOASymbol]
    def __init__(self, ctidTraderAccountId: _Optional[int] = ..., symbol: _Optional[_Iterable[_Union[ProtoOASymbol, _Mapping]]] = ...) -> None: ...
