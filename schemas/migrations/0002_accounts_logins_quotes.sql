-- Accounts (latest merged state), logins, and quotes kept at one-second resolution.

CREATE TABLE IF NOT EXISTS accounts_store
(
    account_key   String,
    tenant        LowCardinality(String),
    platform      LowCardinality(String),
    server        LowCardinality(String),
    login         UInt64,
    name          String,
    `group`       LowCardinality(String),
    country       LowCardinality(String),
    email         String,
    currency      LowCardinality(String),
    leverage      UInt32,
    agent         String,
    agent_from    Nullable(DateTime64(3, 'UTC')),
    client_id     String,
    registration  Nullable(DateTime64(3, 'UTC')),
    date_of_birth Nullable(Date32),
    kyc_status    LowCardinality(String),
    status        LowCardinality(String),
    balance       Nullable(Decimal(38, 8)),
    credit        Nullable(Decimal(38, 8)),
    equity        Nullable(Decimal(38, 8)),
    margin        Nullable(Decimal(38, 8)),
    margin_free   Nullable(Decimal(38, 8)),
    margin_level  Nullable(Decimal(38, 8)),
    first_seen    DateTime64(3, 'UTC'),
    updated_at    DateTime64(3, 'UTC'),
    version       UInt64,
    source        String,
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, account_key);

CREATE VIEW IF NOT EXISTS accounts AS
SELECT * FROM accounts_store FINAL;

CREATE TABLE IF NOT EXISTS logins_store
(
    login_key   String,
    tenant      LowCardinality(String),
    platform    LowCardinality(String),
    server      LowCardinality(String),
    login       UInt64,
    kind        LowCardinality(String),
    ip          String,
    device      String,
    session_id  String,
    client_type LowCardinality(String),
    build       String,
    time        DateTime64(3, 'UTC'),
    version     UInt64,
    source      String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, login_key);

CREATE VIEW IF NOT EXISTS logins AS
SELECT * FROM logins_store FINAL;

-- Ticks are not stored one by one: inserts into quotes_in (a Null table) feed two
-- aggregations. Every aggregate is idempotent (last / min / max), so a replay changes nothing;
-- argMax skips NULLs, so a cTrader spot that leaves out an unchanged bid keeps the last bid.
CREATE TABLE IF NOT EXISTS quotes_in
(
    tenant          LowCardinality(String),
    platform        LowCardinality(String),
    server          LowCardinality(String),
    symbol          LowCardinality(String),
    platform_symbol LowCardinality(String),
    bid             Nullable(Decimal(18, 8)),
    ask             Nullable(Decimal(18, 8)),
    time            DateTime64(3, 'UTC'),
    source          String
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS quotes_1s_store
(
    tenant   LowCardinality(String),
    server   LowCardinality(String),
    symbol   LowCardinality(String),
    second   DateTime('UTC'),
    bid_last AggregateFunction(argMax, Nullable(Decimal(18, 8)), DateTime64(3, 'UTC')),
    ask_last AggregateFunction(argMax, Nullable(Decimal(18, 8)), DateTime64(3, 'UTC')),
    bid_low  SimpleAggregateFunction(min, Nullable(Decimal(18, 8))),
    bid_high SimpleAggregateFunction(max, Nullable(Decimal(18, 8))),
    ask_low  SimpleAggregateFunction(min, Nullable(Decimal(18, 8))),
    ask_high SimpleAggregateFunction(max, Nullable(Decimal(18, 8)))
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, server, symbol, second);

CREATE MATERIALIZED VIEW IF NOT EXISTS quotes_1s_mv TO quotes_1s_store AS
SELECT tenant, server, symbol, toStartOfSecond(time) AS second,
       argMaxState(bid, time) AS bid_last,
       argMaxState(ask, time) AS ask_last,
       min(bid) AS bid_low, max(bid) AS bid_high, min(ask) AS ask_low, max(ask) AS ask_high
FROM quotes_in
GROUP BY tenant, server, symbol, second;

CREATE VIEW IF NOT EXISTS quotes AS
SELECT tenant, server, symbol, second,
       argMaxMerge(bid_last) AS bid, argMaxMerge(ask_last) AS ask,
       min(bid_low) AS bid_low, max(bid_high) AS bid_high,
       min(ask_low) AS ask_low, max(ask_high) AS ask_high
FROM quotes_1s_store
GROUP BY tenant, server, symbol, second;

CREATE TABLE IF NOT EXISTS latest_quotes_store
(
    tenant LowCardinality(String),
    server LowCardinality(String),
    symbol LowCardinality(String),
    bid_last  AggregateFunction(argMax, Nullable(Decimal(18, 8)), DateTime64(3, 'UTC')),
    ask_last  AggregateFunction(argMax, Nullable(Decimal(18, 8)), DateTime64(3, 'UTC')),
    last_time SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, server, symbol);

CREATE MATERIALIZED VIEW IF NOT EXISTS latest_quotes_mv TO latest_quotes_store AS
SELECT tenant, server, symbol,
       argMaxState(bid, time) AS bid_last,
       argMaxState(ask, time) AS ask_last,
       max(time) AS last_time
FROM quotes_in
GROUP BY tenant, server, symbol;

CREATE VIEW IF NOT EXISTS latest_quotes AS
SELECT tenant, server, symbol, argMaxMerge(bid_last) AS bid, argMaxMerge(ask_last) AS ask,
       max(last_time) AS time
FROM latest_quotes_store
GROUP BY tenant, server, symbol;
