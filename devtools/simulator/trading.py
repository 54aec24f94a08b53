"""Trading: positions opened and closed in each platform's own format, with realistic money.

- MT5: a deal per fill, IN then OUT with the same PositionID (partial closes are OUT deals for
  part of the volume); netting accounts add to a position or reverse it with an INOUT deal;
  stop-outs are OUT deals with Reason 5 (SO); dealers now and then correct or delete a deal.
- MT4: one TradeRecord per position, added when opened and updated when closed; a partial
  close updates the record to the closed part ("to #B") and adds the remainder as a new order
  ("from #A") with the original open time and price; stop-outs say "so: ..." in the comment.
- cTrader: execution events with deals; the closing deal carries closePositionDetail (entry
  price, gross profit, swap, commission, balance); large orders sometimes fill in two parts.

Profit is the price move x volume x contract size, converted from the symbol's quote currency
to the account currency at the time of the close; raw-spread accounts pay commission per lot
and side; positions held over the daily rollover accrue swap (triple on Wednesdays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from connectors.ctrader_proto import openapi_subset_pb2 as pb
from devtools.simulator import emit
from devtools.simulator.market import DAY_MS, HOUR_MS, Symbol, is_open, week_ms

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage
    from devtools.simulator.typologies import Case
    from devtools.simulator.world import SimAccount

COMMISSION_PER_LOT_SIDE = 3.5  # raw-spread accounts, in the account currency
STOP_OUT_LEVEL = 50.0  # margin level (%) at which the server closes positions
MARGIN_CHECK_MS = 15 * 60_000  # while the margin level is low; less often when it is high
SNAPSHOT_MS = 12 * HOUR_MS

# MT5 deal reasons / MT4 trade reasons by how the client trades
MT5_REASON = {"desktop": 0, "expert": 1, "mobile": 16, "web": 17}
MT4_REASON = {"desktop": 0, "expert": 1, "mobile": 5, "web": 6}
MT5_SL, MT5_TP, MT5_SO, MT5_DEALER = 3, 4, 5, 2


@dataclass(slots=True, eq=False)
class Position:
    pid: int  # MT5 PositionID / MT4 order ticket / cTrader positionId
    acc: SimAccount
    sym: Symbol
    psym: str  # the platform's symbol name
    raw: bool
    side: int  # 0 buy, 1 sell
    vol: int  # open volume in 1/100 lot
    open_pts: int  # open price in points
    open_ms: int
    channel: str  # desktop / mobile / web / expert
    magic: int
    sl_pts: int
    tp_pts: int
    case: Case | None
    comment: str = ""
    swap: float = 0.0  # accrued, account currency
    commission: float = 0.0  # charged on the open side so far (MT4: round turn, booked at close)
    closed: bool = False
    close_token: int = 0


class Trading:
    def __init__(self, sim: Brokerage) -> None:
        self.sim = sim
        self.recent_mt5: list[tuple[bytes, str, str, int]] = []  # (deal doc, server, key, deal)
        self.open_count = 0
        self.stop_outs = 0

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def price_text(sym: Symbol, pts: int) -> str:
        return sym.fmt % (pts * sym.point)

    def _mt5_trade(self, acc: SimAccount, sym: Symbol, psym: str, action: int, entry: int,
                   reason: int, pts: int, vol: int, vol_closed: int, profit: float,
                   profit_raw: float, storage: float, commission: float, conv: float,
                   position: int, comment: str, position_pts: int, sl_pts: int, tp_pts: int,
                   bid: int, ask: int, expert: int) -> tuple[bytes, int]:
        """An MT5 trade deal (vol in 1/100 lot); returns (message, deal ticket)."""
        srv = acc.server
        deal = srv.ticket()
        fmt = sym.fmt
        point = sym.point
        price = fmt % (pts * point)
        doc = emit.mt5_deal(
            deal, acc.login, srv.order(), action, entry, reason, sym.digits, sym.contract_text,
            self.sim.now + srv.offset_ms, psym, price, vol * 100, vol_closed * 100, profit,
            profit_raw, storage, commission, conv, position, comment,
            fmt % (position_pts * point), fmt % (sl_pts * point), fmt % (tp_pts * point),
            fmt % (bid * point), fmt % (ask * point), expert, point * sym.contract * conv,
            sym.tick_size, vol / 100.0 * sym.contract * pts * point * conv,
        )
        return doc, deal

    def margin(self, acc: SimAccount, fresh: bool = False) -> tuple[float, float]:
        """(equity, margin) of the account at the last mids (`fresh`: advanced to now)."""
        sim = self.sim
        m = sim.market
        equity = acc.balance + acc.credit
        margin = 0.0
        ccy = acc.server.currency
        mids = m.mid
        for pos in acc.positions:
            mid = m.advance(pos.sym.idx, sim.now) if fresh else mids[pos.sym.idx]
            lots = pos.vol / 100.0
            conv = m.rate(pos.sym.quote_ccy, ccy)
            move = mid - pos.open_pts * pos.sym.point
            equity += (move if pos.side == 0 else -move) * lots * pos.sym.contract * conv + pos.swap
            margin += lots * pos.sym.contract * mid * conv / acc.leverage
        return equity, margin

    def required_margin(self, acc: SimAccount, sym: Symbol, vol: int) -> float:
        m = self.sim.market
        mid = m.mid[sym.idx]
        return vol / 100.0 * sym.contract * mid * m.rate(sym.quote_ccy, acc.server.currency) / acc.leverage

    def lots_for(self, acc: SimAccount, sym: Symbol) -> int:
        """A lot size in 1/100 lot: many 0.01-1, a fat tail, scaled to the instrument."""
        rng = self.sim.rng
        lots = acc.lot_median * rng.lognormvariate(0.0, 0.75)
        if rng.random() < 0.03:
            lots *= rng.paretovariate(1.6)
        lots *= sym.lot_scale
        return max(1, min(10_000, round(lots * 100)))

    def hold_ms(self, acc: SimAccount) -> int:
        rng = self.sim.rng
        p = acc.profile
        seconds = p.hold_median_s * rng.lognormvariate(0.0, p.hold_sigma)
        return int(min(max(seconds, 2.0), 30 * 86_400.0) * 1000)

    # -- opening --------------------------------------------------------------------------------

    def open(self, acc: SimAccount, sym: Symbol, side: int, vol: int, *, hold_ms: int | None = None,
             channel: str = "desktop", case: Case | None = None, magic: int = 0,
             partial_close: bool | None = None, close_reason: str = "") -> Position | None:
        """Open a position now at the server's current price and schedule its close."""
        sim = self.sim
        srv = acc.server
        if not is_open(sym, sim.now):
            return None
        if srv.platform == "mt5" and not acc.hedging:
            for pos in acc.positions:
                if pos.sym is sym and not pos.closed:
                    return self._netting(acc, pos, side, vol, channel, case)
        bid, ask = sim.quote(srv, sym, acc.raw)
        pts = ask if side == 0 else bid
        sl = tp = 0
        if sim.rng.random() < 0.35:
            dist = sym.spread * sim.rng.randint(15, 120)
            sl = pts - dist if side == 0 else pts + dist
            tp = pts + dist * 2 if side == 0 else pts - dist * 2
        pos = Position(
            pid=0, acc=acc, sym=sym, psym=sym.name + acc.suffix, raw=acc.raw, side=side, vol=vol,
            open_pts=pts, open_ms=sim.now, channel=channel, magic=magic, sl_pts=max(sl, 0),
            tp_pts=max(tp, 0), case=case,
        )
        if acc.raw:
            pos.commission = -round(COMMISSION_PER_LOT_SIDE * vol / 100.0, 2)
        platform = srv.platform
        if platform == "mt5":
            self._mt5_open(pos, bid, ask)
        elif platform == "mt4":
            self._mt4_open(pos, bid, ask)
        else:
            self._ct_open(pos)
        acc.positions.append(pos)
        acc.trades += 1
        self.open_count += 1
        hold = self.hold_ms(acc) if hold_ms is None else hold_ms
        close_at = self._tradable_at(sym, sim.now + hold)
        rng = sim.rng
        if partial_close is None:
            partial_close = vol >= 4 and rng.random() < 0.12
        if partial_close and vol >= 2:
            sim.at(sim.now + int(hold * rng.uniform(0.2, 0.7)), self._partial_due,
                   (pos, pos.close_token))
        sim.at(close_at, self._close_due, (pos, pos.close_token, close_reason))
        if not acc.margin_at:  # one margin-check chain per account with positions
            acc.margin_at = sim.now + MARGIN_CHECK_MS
            sim.at(acc.margin_at, self._margin_due, acc)
        return pos

    def _tradable_at(self, sym: Symbol, t: int) -> int:
        """A close planned while the market is shut happens when it reopens."""
        if is_open(sym, t):
            return t
        for _ in range(60):
            t += HOUR_MS
            if is_open(sym, t):
                return t + self.sim.rng.randint(1_000, 600_000)
        return t

    def _mt5_open(self, pos: Position, bid: int, ask: int) -> None:
        sim = self.sim
        acc, srv, sym = pos.acc, pos.acc.server, pos.sym
        pos.pid = srv.next_order + 1  # the opening order's ticket names the position
        conv = sim.market.rate(sym.quote_ccy, srv.currency)
        acc.balance += pos.commission
        doc, deal = self._mt5_trade(
            acc, sym, pos.psym, pos.side, 0, MT5_REASON[pos.channel], pos.open_pts, pos.vol, 0,
            0.0, 0.0, 0.0, pos.commission, conv, pos.pid, self._open_comment(pos), pos.open_pts,
            pos.sl_pts, pos.tp_pts, bid, ask, pos.magic)
        self._mt5_emit(acc, doc, deal, pos.case)

    def _open_comment(self, pos: Position) -> str:
        if pos.channel == "expert":
            return f"EA {pos.magic}" if pos.magic else "expert"
        return ""

    def _mt5_emit(self, acc: SimAccount, doc: bytes, deal: int, case: Case | None) -> None:
        sim = self.sim
        srv = acc.server
        key = str(acc.login)
        sim.emit("mt5.deals", key, doc, {"server": srv.name, "event": "add"}, case,
                 f"mt5:{srv.name}:{deal}")
        recent = self.recent_mt5
        recent.append((doc, srv.name, key, deal))
        if len(recent) > 512:
            del recent[:256]

    def _mt4_open(self, pos: Position, bid: int, ask: int) -> None:
        _acc, srv = pos.acc, pos.acc.server
        pos.pid = srv.order()
        self._mt4_record(pos, "add", bid, ask, open_only=True)

    def _mt4_record(self, pos: Position, event: str, bid: int, ask: int, *, open_only: bool,
                    close_pts: int = 0, profit: float = 0.0, swap: float = 0.0,
                    commission: float = 0.0, comment: str = "", state: int = 0,
                    vol: int | None = None) -> None:
        sim = self.sim
        acc, srv, sym = pos.acc, pos.acc.server, pos.sym
        point = sym.point
        t_s = (sim.now + srv.offset_ms) // 1000
        open_s = (pos.open_ms + srv.offset_ms) // 1000
        conv = sim.market.rate(sym.quote_ccy, srv.currency)
        volume = pos.vol if vol is None else vol
        if open_only:  # an open record shows the current price and the floating profit
            current = bid if pos.side == 0 else ask
            move = (current - pos.open_pts) * point * (1 if pos.side == 0 else -1)
            floating = move * volume / 100.0 * sym.contract * conv
            doc = emit.mt4_trade(
                order=pos.pid, login=acc.login, symbol=pos.psym, digits=sym.digits, cmd=pos.side,
                volume=volume, open_s=open_s, state=0, open_price=pos.open_pts * point,
                sl=round(pos.sl_pts * point, sym.digits), tp=round(pos.tp_pts * point, sym.digits),
                close_s=0, reason=MT4_REASON[pos.channel], conv=round(conv, 6),
                commission=pos.commission * 2, storage=pos.swap, close_price=current * point,
                profit=floating, magic=pos.magic, comment=pos.comment or self._open_comment(pos),
                margin_rate=round(conv, 6), timestamp_s=t_s,
            )
            eid = f"mt4:{srv.name}:{pos.pid}:in"
        else:
            doc = emit.mt4_trade(
                order=pos.pid, login=acc.login, symbol=pos.psym, digits=sym.digits, cmd=pos.side,
                volume=volume, open_s=open_s, state=state, open_price=pos.open_pts * point,
                sl=round(pos.sl_pts * point, sym.digits), tp=round(pos.tp_pts * point, sym.digits),
                close_s=t_s, reason=MT4_REASON[pos.channel], conv=round(conv, 6),
                commission=commission, storage=swap, close_price=close_pts * point, profit=profit,
                magic=pos.magic, comment=comment, margin_rate=round(conv, 6), timestamp_s=t_s,
            )
            eid = f"mt4:{srv.name}:{pos.pid}:out"
        sim.emit("mt4.trades", str(acc.login), doc, {"server": srv.name, "event": event},
                 pos.case, eid)

    def _ct_open(self, pos: Position) -> None:
        sim = self.sim
        acc, srv, sym = pos.acc, pos.acc.server, pos.sym
        rng = sim.rng
        order = srv.order()
        srv.next_position += 1
        pos.pid = srv.next_position
        volume = pos.vol * sym.ctrader_lot // 100
        price = round(pos.open_pts * sym.point, sym.digits)
        cmsg = f"cm-{rng.getrandbits(40):010x}" if pos.channel != "expert" else f"api-{order}"
        if rng.random() < 0.004:  # rejected before filling: the connector keeps nothing
            sim.emit("ctrader.events", str(acc.login),
                     emit.ctrader_rejected(ctid=acc.login, client_msg_id=cmsg,
                                           error="MARKET_CLOSED" if rng.random() < 0.2
                                           else "NOT_ENOUGH_MONEY"),
                     {"server": srv.name})
            cmsg = f"cm-{rng.getrandbits(40):010x}"
        acc.balance += pos.commission
        base_usd = sim.market.usd_rate(sym.base_ccy) if sym.asset_class.startswith("fx") else 1.0
        margin_rate = price * sim.market.rate(sym.quote_ccy, "USD")
        parts = [volume]
        if pos.vol >= 500 and rng.random() < 0.3 and volume > 1:  # a big order filled in two
            first = volume * rng.randint(3, 7) // 10
            parts = [first, volume - first]
        commission = round(pos.commission * 100)
        for k, filled in enumerate(parts):
            deal = srv.ticket()
            part_commission = commission * filled // volume if k == 0 else \
                commission - commission * parts[0] // volume
            doc = emit.ctrader_deal(
                ctid=acc.login, deal_id=deal, order_id=order, position_id=pos.pid, volume=volume,
                filled=filled, symbol_id=sym.ctrader_id, t=sim.now + k * rng.randint(5, 80),
                price=price, side=pb.BUY if pos.side == 0 else pb.SELL,
                status=pb.PARTIALLY_FILLED if k < len(parts) - 1 else pb.FILLED,
                commission=part_commission, margin_rate=margin_rate, base_usd=base_usd,
                server_event=False, client_msg_id=cmsg, partial=k < len(parts) - 1,
            )
            sim.emit("ctrader.events", str(acc.login), doc, {"server": srv.name}, pos.case,
                     f"ctrader:{srv.name}:{deal}")

    # -- closing --------------------------------------------------------------------------------

    def _close_due(self, arg: tuple[Position, int, str]) -> None:
        pos, token, reason = arg
        if pos.closed or token != pos.close_token:
            return
        if not is_open(pos.sym, self.sim.now):
            self.sim.at(self._tradable_at(pos.sym, self.sim.now), self._close_due, arg)
            return
        self.close(pos, pos.vol, reason or "natural")

    def _partial_due(self, arg: tuple[Position, int]) -> None:
        pos, token = arg
        if pos.closed or token != pos.close_token or pos.vol < 2 or not is_open(pos.sym, self.sim.now):
            return
        part = max(1, pos.vol * self.sim.rng.choice((25, 30, 40, 50, 50, 60)) // 100)
        if part < pos.vol:
            self.close(pos, part, "client")

    def _natural_reason(self, pos: Position, close_pts: int) -> str:
        """Client close, or the stop loss / take profit the client had set."""
        gain = (close_pts - pos.open_pts) * (1 if pos.side == 0 else -1)
        r = self.sim.rng.random()
        if pos.sl_pts and gain < 0 and r < 0.45:
            return "sl"
        if pos.tp_pts and gain > 0 and r < 0.45:
            return "tp"
        return "client"

    def close(self, pos: Position, vol: int, reason: str, so_comment: str = "",
              case: Case | None = None) -> float:
        """Close `vol` (1/100 lot) of the position now; returns the profit booked."""
        sim = self.sim
        acc, srv, sym = pos.acc, pos.acc.server, pos.sym
        vol = min(vol, pos.vol)
        bid, ask = sim.quote(srv, sym, pos.raw)
        close_pts = bid if pos.side == 0 else ask
        if reason == "natural":
            reason = self._natural_reason(pos, close_pts)
        conv = sim.market.rate(sym.quote_ccy, srv.currency)
        lots = vol / 100.0
        move = (close_pts - pos.open_pts) * sym.point * (1 if pos.side == 0 else -1)
        profit_raw = move * lots * sym.contract
        profit = round(profit_raw * conv, 2)
        share = vol / pos.vol
        swap = round(pos.swap * share, 2)
        open_commission = round(pos.commission * share, 2)
        close_commission = -round(COMMISSION_PER_LOT_SIDE * lots, 2) if pos.raw else 0.0
        pos.swap -= swap
        pos.commission -= open_commission
        case = case or pos.case
        platform = srv.platform
        if platform == "mt5":
            acc.balance += profit + swap + close_commission
            self._mt5_close(pos, vol, close_pts, bid, ask, profit, profit_raw, swap,
                            close_commission, conv, reason, so_comment, case)
        elif platform == "mt4":
            acc.balance += profit + swap + open_commission + close_commission
            self._mt4_close(pos, vol, close_pts, bid, ask, profit, swap,
                            open_commission + close_commission, reason, so_comment)
        else:
            acc.balance += profit + swap + close_commission
            self._ct_close(pos, vol, close_pts, profit, swap, open_commission, close_commission,
                           conv, reason, case)
        pos.vol -= vol
        if pos.vol <= 0:
            pos.closed = True
            pos.close_token += 1
            if pos in acc.positions:
                acc.positions.remove(pos)
        return profit

    def _mt5_close(self, pos: Position, vol: int, close_pts: int, bid: int, ask: int,
                   profit: float, profit_raw: float, swap: float, commission: float, conv: float,
                   reason: str, so_comment: str, case: Case | None) -> None:
        acc, _srv, sym = pos.acc, pos.acc.server, pos.sym
        if reason == "client":
            code, comment = MT5_REASON[pos.channel], ""
        elif reason == "so":
            code, comment = MT5_SO, so_comment
        else:
            code = MT5_SL if reason == "sl" else MT5_TP if reason == "tp" else MT5_DEALER
            comment = f"[{reason} {self.price_text(sym, close_pts)}]"
        doc, deal = self._mt5_trade(
            acc, sym, pos.psym, 1 - pos.side, 1, code, close_pts, vol, vol, profit, profit_raw,
            swap, commission, conv, pos.pid, comment[:31], pos.open_pts,
            close_pts if reason == "sl" else pos.sl_pts, close_pts if reason == "tp" else pos.tp_pts,
            bid, ask, pos.magic)
        self._mt5_emit(acc, doc, deal, case)

    def _mt4_close(self, pos: Position, vol: int, close_pts: int, bid: int, ask: int,
                   profit: float, swap: float, commission: float, reason: str,
                   so_comment: str) -> None:
        srv = pos.acc.server
        base = {"sl": "[sl]", "tp": "[tp]", "so": so_comment}.get(reason, pos.comment)
        if vol >= pos.vol:  # the whole position: the record is updated to closed
            self._mt4_record(pos, "update", bid, ask, open_only=False, close_pts=close_pts,
                             profit=profit, swap=swap, commission=commission, comment=base[:31],
                             state=3)
            return
        # Partial close: this order becomes the closed part, the remainder a new order.
        remainder = srv.order()
        self._mt4_record(pos, "update", bid, ask, open_only=False, close_pts=close_pts,
                         profit=profit, swap=swap, commission=commission,
                         comment=f"to #{remainder}", state=4, vol=vol)
        old = pos.pid
        pos.pid = remainder
        pos.comment = f"from #{old}"
        self._mt4_record(pos, "add", bid, ask, open_only=True, vol=pos.vol - vol)

    def _ct_close(self, pos: Position, vol: int, close_pts: int, profit: float, swap: float,
                  open_commission: float, close_commission: float, conv: float, reason: str,
                  case: Case | None) -> None:
        sim = self.sim
        acc, srv, sym = pos.acc, pos.acc.server, pos.sym
        volume = vol * sym.ctrader_lot // 100
        deal = srv.ticket()
        acc.balance_version += 1
        server_event = reason in ("sl", "tp", "so")
        cmsg = "" if server_event else f"cm-{sim.rng.getrandbits(40):010x}"
        doc = emit.ctrader_deal(
            ctid=acc.login, deal_id=deal, order_id=srv.order(), position_id=pos.pid,
            volume=volume, filled=volume, symbol_id=sym.ctrader_id, t=sim.now,
            price=round(close_pts * sym.point, sym.digits),
            side=pb.SELL if pos.side == 0 else pb.BUY, status=pb.FILLED,
            commission=round(close_commission * 100),
            margin_rate=round(close_pts * sym.point * sim.market.rate(sym.quote_ccy, "USD"), 5),
            base_usd=sim.market.usd_rate(sym.base_ccy) if sym.asset_class.startswith("fx") else 1.0,
            server_event=server_event, client_msg_id=cmsg,
            close={
                "entryPrice": round(pos.open_pts * sym.point, sym.digits),
                "grossProfit": round(profit * 100), "swap": round(swap * 100),
                "commission": round((open_commission + close_commission) * 100),
                "balance": round(acc.balance * 100), "quoteToDepositConversionRate": conv,
                "closedVolume": volume, "balanceVersion": acc.balance_version,
            },
        )
        sim.emit("ctrader.events", str(acc.login), doc, {"server": srv.name}, case,
                 f"ctrader:{srv.name}:{deal}")

    # -- netting (MT5) --------------------------------------------------------------------------

    def _netting(self, acc: SimAccount, pos: Position, side: int, vol: int, channel: str,
                 case: Case | None) -> Position | None:
        """A deal on a symbol the netting account already holds: add to it, close it, or reverse
        it with one INOUT deal."""
        sim = self.sim
        if side == pos.side:
            srv, sym = acc.server, pos.sym
            bid, ask = sim.quote(srv, sym, pos.raw)
            pts = ask if side == 0 else bid
            total = pos.vol + vol
            pos.open_pts = round((pos.open_pts * pos.vol + pts * vol) / total)
            pos.vol = total
            commission = -round(COMMISSION_PER_LOT_SIDE * vol / 100.0, 2) if pos.raw else 0.0
            pos.commission += commission
            acc.balance += commission
            conv = sim.market.rate(sym.quote_ccy, srv.currency)
            doc, deal = self._mt5_trade(
                acc, sym, pos.psym, side, 0, MT5_REASON[channel], pts, vol, 0, 0.0, 0.0, 0.0,
                commission, conv, pos.pid, "", pos.open_pts, 0, 0, bid, ask, 0)
            self._mt5_emit(acc, doc, deal, case)
            return pos
        if vol <= pos.vol:
            self.close(pos, vol, "client", case=case)
            return None
        return self._reverse(acc, pos, vol, channel, case)

    def _reverse(self, acc: SimAccount, pos: Position, vol: int, channel: str,
                 case: Case | None) -> Position:
        sim = self.sim
        srv, sym = acc.server, pos.sym
        bid, ask = sim.quote(srv, sym, pos.raw)
        new_side = 1 - pos.side
        close_pts = bid if pos.side == 0 else ask
        conv = sim.market.rate(sym.quote_ccy, srv.currency)
        move = (close_pts - pos.open_pts) * sym.point * (1 if pos.side == 0 else -1)
        profit_raw = move * pos.vol / 100.0 * sym.contract
        profit = round(profit_raw * conv, 2)
        swap = round(pos.swap, 2)
        commission = -round(COMMISSION_PER_LOT_SIDE * vol / 100.0, 2) if pos.raw else 0.0
        acc.balance += profit + swap + commission
        doc, deal = self._mt5_trade(
            acc, sym, pos.psym, new_side, 2, MT5_REASON[channel], close_pts, vol, pos.vol,
            profit, profit_raw, swap, commission, conv, pos.pid, "", pos.open_pts, 0, 0, bid, ask, 0)
        self._mt5_emit(acc, doc, deal, case)
        pos.side = new_side
        pos.vol = vol - pos.vol
        pos.open_pts = close_pts
        pos.open_ms = sim.now
        pos.swap = 0.0
        pos.commission = commission * pos.vol / vol if vol else 0.0
        return pos

    # -- risk: swaps, margin checks, stop-outs --------------------------------------------------

    def rollover(self, _: object) -> None:
        """Daily swap on every open position (triple on Wednesday night), then the next one."""
        sim = self.sim
        triple = week_ms(sim.now) // DAY_MS == 2  # Wednesday
        for acc in sim.with_positions():
            for pos in acc.positions:
                per_lot = pos.sym.swap_long if pos.side == 0 else pos.sym.swap_short
                nights = 1 if pos.sym.always_open or not triple else 3
                pos.swap += per_lot * pos.vol / 100.0 * nights
        sim.at(sim.now + DAY_MS, self.rollover, None)

    def _margin_due(self, acc: SimAccount) -> None:
        acc.margin_at = 0
        if not acc.positions:
            return
        cushion = self.margin_check(acc)
        if acc.positions:
            # check again before prices can plausibly (3 sigma) move by the cushion
            sigma = max(p.sym.sigma_ms for p in acc.positions)
            wait_ms = (cushion / (3.0 * sigma)) ** 2
            wait = int(min(max(wait_ms, 60_000.0), 32.0 * MARGIN_CHECK_MS))
            acc.margin_at = self.sim.now + wait
            self.sim.at(acc.margin_at, self._margin_due, acc)

    def margin_check(self, acc: SimAccount) -> float:
        """Publish the account state now and then (MT5), stop the account out below 50%;
        returns the cushion: the relative price move that would reach the stop-out level."""
        sim = self.sim
        equity, margin = self.margin(acc, fresh=True)
        if margin <= 0:
            return 1.0
        level = equity / margin * 100.0
        srv = acc.server
        last = sim.last_snapshot.get(acc.key, 0)
        if srv.platform == "mt5" and (sim.now - last > SNAPSHOT_MS or
                                      (level < 100 and sim.now - last > HOUR_MS)):
            self.snapshot(acc, equity, margin, 2 if level < STOP_OUT_LEVEL else
                          1 if level < 100 else 0)
        if level < STOP_OUT_LEVEL:
            self.stop_out(acc, equity, margin)
            return 0.0
        # margin is notional / leverage: the exposure is margin x leverage
        return max(equity - margin * STOP_OUT_LEVEL / 100.0, 0.0) / (margin * acc.leverage)

    def snapshot(self, acc: SimAccount, equity: float, margin: float, so_activation: int) -> None:
        sim = self.sim
        floating = equity - acc.balance - acc.credit
        storage = sum(p.swap for p in acc.positions)
        sim.last_snapshot[acc.key] = sim.now
        sim.emit("mt5.users", str(acc.login),
                 emit.mt5_account(login=acc.login, balance=acc.balance, credit=acc.credit,
                                  margin=margin, equity=equity, floating=floating,
                                  storage=storage, leverage=acc.leverage,
                                  so_activation=so_activation),
                 {"server": acc.server.name, "event": "update"})

    def stop_out(self, acc: SimAccount, equity: float, margin: float) -> None:
        """The server closes the worst positions until the margin level is back above 50%."""
        sim = self.sim
        self.stop_outs += 1
        acc.stopped_out += 1
        for _ in range(len(acc.positions)):
            if not acc.positions or margin <= 0 or equity / margin * 100.0 >= STOP_OUT_LEVEL:
                break
            level = equity / margin * 100.0
            worst = min(acc.positions, key=lambda p: self._floating(p))
            if acc.server.platform == "mt4":
                comment = f"so: {level:.1f}%/{equity:.1f}/{margin:.1f}"
            else:
                comment = f"[so {level:.2f}%, {equity:.2f}/{margin:.2f}]"
            self.close(worst, worst.vol, "so", comment)
            equity, margin = self.margin(acc, fresh=True)
        if acc.balance < 0:  # negative balance protection: the broker writes the loss off
            amount = round(-acc.balance, 2)
            sim.cashier.platform_balance(acc, amount, "Negative balance protection", so=True)

    def _floating(self, pos: Position) -> float:
        m = self.sim.market
        move = m.mid[pos.sym.idx] - pos.open_pts * pos.sym.point
        return (move if pos.side == 0 else -move) * pos.vol / 100.0 * pos.sym.contract * \
            m.rate(pos.sym.quote_ccy, pos.acc.server.currency)

    # -- dealer corrections (MT5) ---------------------------------------------------------------

    def dealer_correction(self, _: object) -> None:
        """Now and then a dealer corrects a recent deal's price/profit, or deletes one."""
        sim = self.sim
        if self.recent_mt5:
            i = sim.rng.randrange(len(self.recent_mt5))
            doc_bytes, server, key, _deal = self.recent_mt5.pop(i)
            doc = orjson.loads(doc_bytes)
            if doc.get("Entry") == "1" and sim.rng.random() < 0.7:
                event = "update"
                profit = float(doc["Profit"])
                adj = round(abs(profit) * sim.rng.uniform(0.01, 0.08) + 0.5, 2)
                doc["Profit"] = f"{profit + adj:.2f}"
                doc["Comment"] = "dealer correction"
                doc["Dealer"] = "1001"
            else:
                event = "delete"
            sim.emit("mt5.deals", key, orjson.dumps(doc), {"server": server, "event": event})
        gap = sim.rng.expovariate(1.0 / max(sim.correction_gap_ms, 1.0))
        sim.at(sim.now + int(gap) + 1, self.dealer_correction, None)
