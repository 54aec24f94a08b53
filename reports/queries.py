"""Every query a statement or report figure comes from, in one place. docs/data-contract.md
("Reports") lists each figure with the query named here; tests/test_reports.py recomputes the
figures from the raw `*_store` tables without these queries.

Conventions:

- Times are UTC; a period is `[from, to)` (`--from 2024-12-01 --to 2024-12-31` is every
  instant of those days: `to` is the day after the last one, 00:00).
- An account is `platform:server:login` (accounts.account_key).
- **Balance** (as on an MT5/MT4 statement) = the platform's balance operations except credit
  (`balance_operations`, `platform != 'psp'`, every kind but `credit` and
  `so_compensation_credit`: deposits, withdrawals, charges, corrections, bonuses, commissions,
  agent payments, dividends, taxes, ...) + the money of every deal that is not canceled
  (`profit + swap + commission + fee`: MT5 charges commission on the deal it is paid on; an
  MT4 position's money and a cTrader close's gross profit and swap are on its closing deal).
  **Credit** = the `credit` and `so_compensation_credit` operations. Payment-provider rows
  (`platform = 'psp'`) are payments, not account balance: the platform's own deposit is the
  balance operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.identity import ACCOUNT_KEY_SQL


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    figure: str  # which figures it gives, in words (the data contract's "Reports" table)
    sql: str


ACCOUNT_KEY = ACCOUNT_KEY_SQL
CREDIT_KINDS = "('credit', 'so_compensation_credit')"
_MINE = (f"tenant = {{tenant:String}} AND has({{accounts:Array(String)}}, {ACCOUNT_KEY})")
_PERIOD = "time >= {t_from:DateTime64(3, 'UTC')} AND time < {t_to:DateTime64(3, 'UTC')}"
_ZERO = "toDecimal128(0, 8)"

QUERIES: dict[str, Query] = {}


def _q(name: str, figure: str, sql: str) -> Query:
    query = QUERIES[name] = Query(name, figure, sql.strip())
    return query


# -- client statement ----------------------------------------------------------------------------

CLIENT_ACCOUNTS = _q("client_accounts", "the client's accounts (CRM client id)", """
SELECT account_key, platform, server, login, currency, name, `group`, client_id
FROM accounts WHERE tenant = {tenant:String} AND client_id = {client:String}
ORDER BY account_key
""")

LOGIN_ACCOUNTS = _q("login_accounts", "the account of --login (and --server)", """
SELECT account_key, platform, server, login, currency, name, `group`, client_id
FROM accounts WHERE tenant = {tenant:String} AND login = {login:UInt64}
  AND ({server:String} = '' OR server = {server:String})
ORDER BY account_key
""")

BALANCE_AT = _q("balance_at", "opening balance and credit (at --from), closing (at --to + 1 day)", f"""
SELECT account_key, sum(balance) AS balance, sum(credit) AS credit, count() AS records
FROM (
    SELECT {ACCOUNT_KEY} AS account_key,
           if(kind IN {CREDIT_KINDS}, {_ZERO}, amount) AS balance,
           if(kind IN {CREDIT_KINDS}, amount, {_ZERO}) AS credit
    FROM balance_operations
    WHERE {_MINE} AND platform != 'psp' AND time < {{at:DateTime64(3, 'UTC')}}
    UNION ALL
    SELECT {ACCOUNT_KEY}, profit + swap + commission + fee, {_ZERO}
    FROM deals WHERE {_MINE} AND NOT canceled AND time < {{at:DateTime64(3, 'UTC')}}
)
GROUP BY account_key
""")

PERIOD_MOVEMENTS = _q("period_movements", "deposits, withdrawals, other operations, credit, profit, "
                      "swap, commission and fees of each account in the period", f"""
SELECT account_key, category, count() AS records, sum(amount) AS amount
FROM (
    SELECT {ACCOUNT_KEY} AS account_key,
           multiIf(kind = 'balance' AND amount >= 0, 'deposits', kind = 'balance', 'withdrawals',
                   kind IN {CREDIT_KINDS}, 'credit', 'other_operations') AS category,
           amount
    FROM balance_operations WHERE {_MINE} AND platform != 'psp' AND {_PERIOD}
    UNION ALL
    SELECT {ACCOUNT_KEY}, part.1, part.2
    FROM deals
    ARRAY JOIN [('profit', profit), ('swap', swap), ('commission', commission), ('fees', fee)] AS part
    WHERE {_MINE} AND NOT canceled AND {_PERIOD}
)
GROUP BY account_key, category
ORDER BY account_key, category
""")

PERIOD_DEALS = _q("period_deals", "the deals lines", f"""
SELECT time, login, server, deal_id, position_id, symbol, side, entry, lots, price,
       profit, swap, commission, fee, currency, comment
FROM deals WHERE {_MINE} AND NOT canceled AND {_PERIOD}
ORDER BY time, deal_key
""")

PERIOD_OPERATIONS = _q("period_operations", "the balance and credit operations lines", f"""
SELECT time, login, server, op_id, kind, amount, currency, comment
FROM balance_operations WHERE {_MINE} AND platform != 'psp' AND {_PERIOD}
ORDER BY time, op_key
""")

PLATFORM_BALANCE = _q("platform_balance", "the balance the platform last reported, and when", f"""
SELECT account_key, balance, credit, updated_at,
       (SELECT min(time) FROM (
            SELECT time FROM deals WHERE {_MINE}
            UNION ALL SELECT time FROM balance_operations WHERE {_MINE} AND platform != 'psp'))
       AS history_from
FROM accounts WHERE tenant = {{tenant:String}} AND has({{accounts:Array(String)}}, account_key)
ORDER BY account_key
""")

# -- daily pack ---------------------------------------------------------------------------------

_DAY = "toDate(time) = {day:Date}"

DAILY_CLIENT_PNL = _q("daily_client_pnl", "clients' realised profit, swap and charges per account "
                      "and symbol (-> broker P&L by book and symbol)", f"""
SELECT d.account_key AS account_key, a.`group` AS account_group, d.symbol AS symbol,
       d.currency AS currency, count() AS deals, sum(d.lots) AS lots, sum(d.profit) AS profit,
       sum(d.swap) AS swap, sum(d.commission) AS commission, sum(d.fee) AS fee
FROM (SELECT {ACCOUNT_KEY} AS account_key, platform, server, login, symbol, currency, lots,
             profit, swap, commission, fee
      FROM deals WHERE tenant = {{tenant:String}} AND NOT canceled AND {_DAY}) AS d
LEFT JOIN (SELECT account_key, `group` FROM accounts WHERE tenant = {{tenant:String}}) AS a
    ON a.account_key = d.account_key
GROUP BY account_key, account_group, symbol, currency
ORDER BY account_key, symbol
""")

DAILY_CASH = _q("daily_cash", "client deposits, withdrawals and net per currency", f"""
SELECT currency, countIf(amount >= 0) AS deposit_count, sumIf(amount, amount >= 0) AS deposits,
       countIf(amount < 0) AS withdrawal_count, sumIf(amount, amount < 0) AS withdrawals,
       sum(amount) AS net
FROM balance_operations
WHERE tenant = {{tenant:String}} AND platform != 'psp' AND kind = 'balance' AND {_DAY}
GROUP BY currency ORDER BY currency
""")

DAILY_PAYMENTS = _q("daily_payments", "payment-provider payments by provider, kind and status", f"""
SELECT provider, kind, status, currency, count() AS payments, sum(amount) AS amount
FROM balance_operations WHERE tenant = {{tenant:String}} AND platform = 'psp' AND {_DAY}
GROUP BY provider, kind, status, currency ORDER BY provider, kind, status, currency
""")

DAILY_IB_PAYOUTS = _q("daily_ib_payouts", "IB payouts of the day (own, override, total)", """
SELECT ib_id, currency, own, override, total, total_usd, earn_rows, reversal_rows
FROM ib_payouts_daily WHERE tenant = {tenant:String} AND day = {day:Date}
ORDER BY ib_id, currency
""")

DAILY_NEW_ACCOUNTS = _q("daily_new_accounts", "accounts registered that day, with their KYC status", """
SELECT account_key, login, server, name, `group`, country, currency, kyc_status,
       coalesce(registration, first_seen) AS registered
FROM accounts
WHERE tenant = {tenant:String} AND toDate(coalesce(registration, first_seen)) = {day:Date}
ORDER BY registered, account_key
""")

DAILY_KYC = _q("daily_kyc", "the new accounts per KYC status", """
SELECT if(kyc_status = '', 'unknown', kyc_status) AS kyc_status, count() AS accounts
FROM accounts
WHERE tenant = {tenant:String} AND toDate(coalesce(registration, first_seen)) = {day:Date}
GROUP BY kyc_status ORDER BY kyc_status
""")

# A limit alert whose facts say `recovered` and a `margin.margin_recovered` alert close an
# earlier breach; every other alert opens something (AML and fraud cases are closed outside).
ALERT_CLOSES = ("((startsWith(rule_id, 'limit.') AND JSONExtractString(facts, 'kind') = 'recovered') "
                "OR rule_id = 'margin.margin_recovered')")

DAILY_ALERTS = _q("daily_alerts", "alerts opened and closed per rule", f"""
SELECT category, rule_id, countIf(NOT closes) AS opened, countIf(closes) AS closed
FROM (SELECT category, rule_id, {ALERT_CLOSES} AS closes
      FROM alerts WHERE tenant = {{tenant:String}} AND mode = 'alert'
        AND toDate(event_time) = {{day:Date}})
GROUP BY category, rule_id ORDER BY category, rule_id
""")

# -- IB statements and the payout run -------------------------------------------------------------

IB_MONTHLY_PAYOUTS = _q("ib_monthly_payouts", "every IB's payout for the month (the payout run)", """
SELECT tenant, ib_id, currency, own, override, total, total_usd, earn_rows, reversal_rows
FROM ib_payouts_monthly
WHERE ({tenant:String} = '' OR tenant = {tenant:String}) AND month = {month:Date}
ORDER BY tenant, ib_id, currency
""")

KNOWN_IBS = _q("known_ibs", "the IBs commission rows name (an unknown --ib is an error)", """
SELECT DISTINCT ib_id FROM ib_commissions
WHERE {tenant:String} = '' OR tenant = {tenant:String} ORDER BY ib_id
""")


def ib_rows_sql(columns: tuple[str, ...]) -> str:
    """One IB's commission rows of a month (every IB's for ib = ''): its statement's lines."""
    return (f"SELECT {', '.join(columns)} FROM ib_commissions "
            "WHERE ({ib:String} = '' OR ib_id = {ib:String}) "
            "AND ({tenant:String} = '' OR tenant = {tenant:String}) "
            "AND formatDateTime(deal_time, '%Y-%m') = {month:String} ORDER BY deal_time, commission_id")


IB_STATEMENT_ROWS = _q("ib_statement_rows", "an IB's statement lines and its summary (own, override, "
                       "total per day and month)", ib_rows_sql(("<ROW_COLUMNS>",)))
