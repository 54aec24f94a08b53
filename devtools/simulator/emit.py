"""Per-platform message encoders: the exact shapes the bridges publish.

- MT5 (Web API JSON, every value a string): deals (IMTDeal), users (IMTUser), account states
  (IMTAccount), online records (IMTOnline) and ticks (MqlTick plus its symbol).
- MT4 (Manager API records as JSON numbers): TradeRecord, UserRecord, ConOnline, TickInfo.
- cTrader Open API: ProtoMessage envelopes around ProtoOAExecutionEvent (deals with
  closePositionDetail, deposits/withdrawals), ProtoOASpotEvent and ProtoOATraderUpdatedEvent,
  built with the project's generated classes and serialised to protobuf bytes.
- CRM (`crm.accounts`, docs/crm.md): account_opened, kyc_status, ib_assigned, ...

Every function takes UTC milliseconds and does the platform's own time arithmetic (server
time zones for MT4/MT5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from connectors.ctrader_proto import openapi_subset_pb2 as pb

dumps = orjson.dumps

# MT5 IMTUser rights: enabled + password change + trailing + expert + OTP-less (a usual 483).
RIGHTS_ENABLED = 483
RIGHTS_DISABLED = 482


def iso(ms: int) -> str:
    """UTC time as ISO 8601 with milliseconds and Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# -- MT5 ----------------------------------------------------------------------------------------


def mt5_deal(
    deal: int, login: int, order: int, action: int, entry: int, reason: int, digits: int,
    contract: str, t_server: int, symbol: str, price: str, volume: int, volume_closed: int,
    profit: float, profit_raw: float, storage: float, commission: float, rate: float,
    position: int, comment: str, price_position: str, sl: str, tp: str, bid: str, ask: str,
    expert: int, tick_value: float, tick_size: str, value: float,
) -> bytes:
    """An IMTDeal as the Web API answers it (volumes: Volume 1/10000 lot, VolumeExt 1/10^8).

    Hot path: written as one template (the same bytes orjson would write for these values;
    `symbol` and `comment` never hold characters that JSON escapes)."""
    return (
        f'{{"Deal":"{deal}","ExternalID":"","Login":"{login}","Dealer":"0","Order":"{order}",'
        f'"Action":"{action}","Entry":"{entry}","Reason":"{reason}","Digits":"{digits}",'
        f'"DigitsCurrency":"2","ContractSize":"{contract}","Time":"{t_server // 1000}",'
        f'"TimeMsc":"{t_server}","Symbol":"{symbol}","Price":"{price}","Volume":"{volume}",'
        f'"VolumeExt":"{volume * 10_000}","VolumeClosed":"{volume_closed}",'
        f'"VolumeClosedExt":"{volume_closed * 10_000}","Profit":"{profit:.2f}",'
        f'"ProfitRaw":"{profit_raw:.2f}","Storage":"{storage:.2f}","Commission":"{commission:.2f}",'
        f'"Fee":"0.00","Value":"{value:.2f}","RateProfit":"{rate:.8f}","RateMargin":"{rate:.8f}",'
        f'"ExpertID":"{expert}","PositionID":"{position}","Comment":"{comment}",'
        f'"PricePosition":"{price_position}","PriceSL":"{sl}","PriceTP":"{tp}",'
        f'"PriceGateway":"{price}","TickValue":"{tick_value:.5f}","TickSize":"{tick_size}",'
        f'"Flags":"0","Gateway":"","ModifyFlags":"0","MarketBid":"{bid}","MarketAsk":"{ask}",'
        f'"MarketLast":"0.00000"}}'
    ).encode()


def mt5_balance(*, deal: int, login: int, action: int, t_server: int, amount: float,
                comment: str) -> bytes:
    """A money deal: Action 2 BALANCE (deposits/withdrawals, signed Profit), 19 SO_COMPENSATION..."""
    return dumps({
        "Deal": str(deal), "ExternalID": "", "Login": str(login), "Dealer": "1000",
        "Order": "0", "Action": str(action), "Entry": "0", "Reason": "2", "Digits": "0",
        "DigitsCurrency": "2", "ContractSize": "0.00", "Time": str(t_server // 1000),
        "TimeMsc": str(t_server), "Symbol": "", "Price": "0.00000", "Volume": "0",
        "VolumeExt": "0", "VolumeClosed": "0", "VolumeClosedExt": "0",
        "Profit": f"{amount:.2f}", "ProfitRaw": "0.00", "Storage": "0.00", "Commission": "0.00",
        "Fee": "0.00", "Value": "0.00", "RateProfit": "0.00000000", "RateMargin": "0.00000000",
        "ExpertID": "0", "PositionID": "0", "Comment": comment, "PricePosition": "0.00000",
        "PriceSL": "0.00000", "PriceTP": "0.00000", "PriceGateway": "0.00000", "TickValue": "0",
        "TickSize": "0", "Flags": "0", "Gateway": "", "ModifyFlags": "0", "MarketBid": "0.00000",
        "MarketAsk": "0.00000", "MarketLast": "0.00000",
    })


def mt5_user(*, login: int, group: str, rights: int, registration_s: int, last_access_s: int,
             last_ip: str, first: str, last: str, country_name: str, city: str, email: str,
             phone: str, client_id: int, leverage: int, agent: int, balance: float,
             credit: float, comment: str = "") -> bytes:
    """An IMTUser (Web API /api/user/get): every value a string."""
    return dumps({
        "Login": str(login), "Group": group, "CertSerialNumber": "0", "Rights": str(rights),
        "Registration": str(registration_s), "LastAccess": str(last_access_s),
        "LastPassChange": str(registration_s), "LastIP": last_ip, "Name": f"{first} {last}",
        "FirstName": first, "LastName": last, "MiddleName": "", "Company": "", "Account": "",
        "Country": country_name, "Language": "0", "ClientID": str(client_id), "City": city,
        "State": "", "ZipCode": "", "Address": "", "Phone": phone, "Email": email, "ID": "",
        "Status": "RE", "Comment": comment, "Color": "4278190080", "PhonePassword": "",
        "Leverage": str(leverage), "Agent": str(agent), "CurrencyDigits": "2",
        "Balance": f"{balance:.2f}", "Credit": f"{credit:.2f}", "InterestRate": "0.00",
        "CommissionDaily": "0.00", "CommissionMonthly": "0.00",
        "BalancePrevDay": f"{balance:.2f}", "BalancePrevMonth": f"{balance:.2f}",
        "EquityPrevDay": f"{balance:.2f}", "EquityPrevMonth": f"{balance:.2f}", "MQID": "",
        "LeadSource": "", "LeadCampaign": "",
    })


def mt5_account(*, login: int, balance: float, credit: float, margin: float, equity: float,
                floating: float, storage: float, leverage: int, so_activation: int) -> bytes:
    """An IMTAccount (Web API /api/user/account/get): the account's trading state."""
    level = equity / margin * 100 if margin > 0 else 0.0
    return dumps({
        "Login": str(login), "CurrencyDigits": "2", "Balance": f"{balance:.2f}",
        "Credit": f"{credit:.2f}", "Margin": f"{margin:.2f}",
        "MarginFree": f"{equity - margin:.2f}", "MarginLevel": f"{level:.2f}",
        "MarginLeverage": str(leverage), "Profit": f"{floating:.2f}", "Storage": f"{storage:.2f}",
        "Commission": "0.00", "Floating": f"{floating:.2f}", "Equity": f"{equity:.2f}",
        "SOActivation": str(so_activation), "SOTime": "0", "SOLevel": "0.00",
        "SOEquity": "0.00", "SOMargin": "0.00", "Assets": "0.00", "Liabilities": "0.00",
        "BlockedCommission": "0.00", "BlockedProfit": "0.00", "MarginInitial": "0.00",
        "MarginMaintenance": "0.00",
    })


def mt5_online(*, session: int, login: int, group: str, address: str, client_type: int,
               build: int, t_server_s: int, device: str) -> bytes:
    """An IMTOnline as a bridge publishes it (the kind travels in the `event` header)."""
    return dumps({
        "SessionID": str(session), "Login": str(login), "Group": group, "Address": address,
        "Type": str(client_type), "Build": str(build), "Time": str(t_server_s),
        "ComputerID": device,
    })


def mt5_tick(symbol: str, t_server: int, bid: str, ask: str, flags: int) -> bytes:
    """An MqlTick plus its symbol (flags: 2 bid changed, 4 ask changed)."""
    return (
        f'{{"symbol":"{symbol}","time":"{t_server // 1000}","bid":"{bid}","ask":"{ask}",'
        f'"last":"0","volume":"0","time_msc":"{t_server}","flags":"{flags}","volume_real":"0"}}'
    ).encode()


# -- MT4 ----------------------------------------------------------------------------------------


def mt4_trade(*, order: int, login: int, symbol: str, digits: int, cmd: int, volume: int,
              open_s: int, state: int, open_price: float, sl: float, tp: float, close_s: int,
              reason: int, conv: float, commission: float, storage: float, close_price: float,
              profit: float, magic: int, comment: str, margin_rate: float, timestamp_s: int) -> bytes:
    """A TradeRecord (Manager API) as JSON: volume in 1/100 lot, times in server seconds."""
    return dumps({
        "order": order, "login": login, "symbol": symbol, "digits": digits, "cmd": cmd,
        "volume": volume, "open_time": open_s, "state": state,
        "open_price": round(open_price, digits), "sl": sl, "tp": tp, "close_time": close_s,
        "expiration": 0, "reason": reason, "conv_rates": [conv, 0.0],
        "commission": round(commission, 2), "commission_agent": 0, "storage": round(storage, 2),
        "close_price": round(close_price, digits), "profit": round(profit, 2), "taxes": 0,
        "magic": magic, "comment": comment, "margin_rate": margin_rate,
        "timestamp": timestamp_s,
    })


def mt4_balance(*, order: int, login: int, t_server_s: int, amount: float, comment: str,
                cmd: int = 6) -> bytes:
    """A balance (cmd 6) or credit (cmd 7) record: the signed amount in `profit`."""
    return dumps({
        "order": order, "login": login, "symbol": "", "digits": 0, "cmd": cmd, "volume": 0,
        "open_time": t_server_s, "state": 0, "open_price": 0, "sl": 0, "tp": 0,
        "close_time": t_server_s, "expiration": 0, "reason": 2, "conv_rates": [0, 0],
        "commission": 0, "commission_agent": 0, "storage": 0, "close_price": 0,
        "profit": round(amount, 2), "taxes": 0, "magic": 0, "comment": comment,
        "margin_rate": 0, "timestamp": t_server_s,
    })


def mt4_user(*, login: int, group: str, enable: int, name: str, country: str, city: str,
             email: str, phone: str, leverage: int, agent: int, regdate_s: int, lastdate_s: int,
             balance: float, credit: float, comment: str = "") -> bytes:
    """A UserRecord (Manager API) as JSON."""
    return dumps({
        "login": login, "group": group, "password": "", "enable": enable,
        "enable_change_password": 1, "enable_read_only": 0, "name": name, "country": country,
        "city": city, "state": "", "zipcode": "", "address": "", "phone": phone, "email": email,
        "comment": comment, "id": "", "status": "RE", "regdate": regdate_s,
        "lastdate": lastdate_s, "leverage": leverage, "agent_account": agent,
        "balance": round(balance, 2), "prevmonthbalance": round(balance, 2),
        "prevbalance": round(balance, 2), "credit": round(credit, 2), "interestrate": 0,
        "taxes": 0, "send_reports": 1,
    })


def mt4_online(*, login: int, ip: int, counter: int, t_server_s: int) -> bytes:
    """A ConOnline record: ip is the in_addr read as a little-endian integer."""
    return dumps({"login": login, "ip": ip, "counter": counter, "time": t_server_s})


def mt4_tick(symbol: str, t_server: int, bid: float, ask: float) -> bytes:
    """A TickInfo: time in server seconds, ctm in server milliseconds."""
    return dumps({"symbol": symbol, "time": t_server // 1000, "bid": bid, "ask": ask,
                  "ctm": t_server})


# -- cTrader ------------------------------------------------------------------------------------

_EXEC = pb.PROTO_OA_EXECUTION_EVENT
_SPOT = pb.PROTO_OA_SPOT_EVENT
_TRADER = pb.PROTO_OA_TRADER_UPDATE_EVENT


def _wrap(payload_type: int, payload: bytes, client_msg_id: str = "") -> bytes:
    msg = pb.ProtoMessage(payloadType=payload_type, payload=payload)
    if client_msg_id:
        msg.clientMsgId = client_msg_id
    return msg.SerializeToString()


def ctrader_deal(
    *, ctid: int, deal_id: int, order_id: int, position_id: int, volume: int, filled: int,
    symbol_id: int, t: int, price: float, side: pb.ProtoOATradeSide,
    status: pb.ProtoOADealStatus, commission: int,
    margin_rate: float, base_usd: float, server_event: bool, client_msg_id: str,
    partial: bool = False, close: dict[str, Any] | None = None,
) -> bytes:
    """An execution event with a filled (or partially filled) deal; `close` fills
    closePositionDetail (money in cents, moneyDigits 2)."""
    deal = pb.ProtoOADeal(
        dealId=deal_id, orderId=order_id, positionId=position_id, volume=volume,
        filledVolume=filled, symbolId=symbol_id, createTimestamp=t - 3, executionTimestamp=t,
        utcLastUpdateTimestamp=t, executionPrice=price, tradeSide=side, dealStatus=status,
        marginRate=margin_rate, commission=commission, baseToUsdConversionRate=base_usd,
        moneyDigits=2,
    )
    if close is not None:
        deal.closePositionDetail.CopyFrom(pb.ProtoOAClosePositionDetail(moneyDigits=2, **close))
    event = pb.ProtoOAExecutionEvent(
        ctidTraderAccountId=ctid,
        executionType=pb.ORDER_PARTIAL_FILL if partial else pb.ORDER_FILLED, deal=deal,
    )
    if server_event:
        event.isServerEvent = True
    return _wrap(_EXEC, event.SerializeToString(), client_msg_id)


def ctrader_rejected(*, ctid: int, client_msg_id: str, error: str) -> bytes:
    """An order rejected before any fill (the connector keeps nothing of it)."""
    event = pb.ProtoOAExecutionEvent(ctidTraderAccountId=ctid, executionType=pb.ORDER_REJECTED,
                                     errorCode=error)
    return _wrap(_EXEC, event.SerializeToString(), client_msg_id)


def ctrader_balance(*, ctid: int, history_id: int, operation: pb.ProtoOAChangeBalanceType,
                    balance: int, delta: int,
                    t: int, note: str, version: int, equity: int) -> bytes:
    """A DEPOSIT_WITHDRAW execution event (money in cents; delta is the size of the move)."""
    op = pb.ProtoOADepositWithdraw(
        operationType=operation, balanceHistoryId=history_id, balance=balance, delta=delta,
        changeBalanceTimestamp=t, externalNote=note, balanceVersion=version, equity=equity,
        moneyDigits=2,
    )
    event = pb.ProtoOAExecutionEvent(ctidTraderAccountId=ctid, executionType=pb.DEPOSIT_WITHDRAW,
                                     depositWithdraw=op)
    return _wrap(_EXEC, event.SerializeToString())


def ctrader_spot(ctid: int, symbol_id: int, bid: int | None, ask: int | None, t: int) -> bytes:
    """A spot event; bid/ask (1/100000 of a price unit) are left out when unchanged."""
    spot = pb.ProtoOASpotEvent(ctidTraderAccountId=ctid, symbolId=symbol_id, timestamp=t)
    if bid is not None:
        spot.bid = bid
    if ask is not None:
        spot.ask = ask
    return _wrap(_SPOT, spot.SerializeToString())


def ctrader_trader(*, ctid: int, balance: int, version: int, leverage: int, trader_login: int,
                   hedged: bool, broker: str, registered_ms: int,
                   access: pb.ProtoOAAccessRights = pb.FULL_ACCESS) -> bytes:
    """A trader-updated event (account created or changed)."""
    trader = pb.ProtoOATrader(
        ctidTraderAccountId=ctid, balance=balance, balanceVersion=version, managerBonus=0,
        ibBonus=0, nonWithdrawableBonus=0, accessRights=access, depositAssetId=15,
        swapFree=False, leverageInCents=leverage * 100, totalMarginCalculationType=pb.MAX,
        maxLeverage=leverage * 100, frenchRisk=False, traderLogin=trader_login,
        accountType=pb.HEDGED if hedged else pb.NETTED, brokerName=broker,
        registrationTimestamp=registered_ms, isLimitedRisk=False, moneyDigits=2,
    )
    event = pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=ctid, trader=trader)
    return _wrap(_TRADER, event.SerializeToString())


# -- CRM ----------------------------------------------------------------------------------------


def crm_event(event: str, event_id: str, t_ms: int, tenant: str, platform: str, server: str,
              login: int, **fields: Any) -> bytes:
    """A `crm.accounts` event (docs/crm.md); `time` is ISO 8601 UTC."""
    doc: dict[str, Any] = {"event": event, "event_id": event_id, "time": iso(t_ms),
                           "tenant": tenant, "platform": platform, "server": server,
                           "login": login}
    doc.update({k: v for k, v in fields.items() if v is not None})
    return dumps(doc)
