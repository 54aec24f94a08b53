-- Live exposure and P&L for the risk desk, and the alert stream (risk alerts from limits and
-- margin; AML and fraud alerts share the table). Snapshots are emitted by the engine when
-- event time crosses an interval boundary, so a replay writes the same rows.

CREATE TABLE IF NOT EXISTS positions_store
(
    position_key          String,
    tenant                LowCardinality(String),
    platform              LowCardinality(String),
    server                LowCardinality(String),
    login                 UInt64,
    account_key           String,
    `group`               LowCardinality(String),
    book                  LowCardinality(String),
    mode                  LowCardinality(String),
    position_id           String,
    symbol                LowCardinality(String),
    side                  LowCardinality(String),
    lots                  Decimal(18, 8),
    units                 Decimal(38, 8),
    open_price            Decimal(18, 8),
    mark_price            Nullable(Decimal(18, 8)),
    profit_currency       LowCardinality(String),
    floating_pnl          Nullable(Decimal(38, 8)),
    account_currency      LowCardinality(String),
    floating_pnl_account  Nullable(Decimal(38, 8)),
    floating_pnl_usd      Nullable(Decimal(38, 8)),
    notional_usd          Nullable(Decimal(38, 8)),
    realised_pnl          Decimal(38, 8),
    gross_pnl             Decimal(38, 8),
    opened_at             Nullable(DateTime64(3, 'UTC')),
    updated_at            DateTime64(3, 'UTC'),
    incomplete            Bool,
    as_of                 DateTime64(3, 'UTC'),
    version               UInt64,
    is_deleted            UInt8,
    ingested_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant, position_key);

CREATE VIEW IF NOT EXISTS positions AS
SELECT * EXCEPT (is_deleted) FROM positions_store FINAL;

-- side: 'clients' (the clients' net position) or 'broker' (minus the clients' times each
-- book's B-book share: what the broker itself carries).
CREATE TABLE IF NOT EXISTS exposure_store
(
    side             LowCardinality(String),
    tenant           LowCardinality(String),
    book             LowCardinality(String),
    symbol           LowCardinality(String),
    net_lots         Decimal(18, 8),
    net_units        Decimal(38, 8),
    net_notional_usd Nullable(Decimal(38, 8)),
    floating_pnl_usd Nullable(Decimal(38, 8)),
    as_of            DateTime64(3, 'UTC'),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(as_of)
ORDER BY (tenant, side, book, symbol);

CREATE VIEW IF NOT EXISTS exposure AS
SELECT * EXCEPT (side) FROM exposure_store FINAL WHERE side = 'clients';

CREATE VIEW IF NOT EXISTS broker_exposure AS
SELECT * EXCEPT (side) FROM exposure_store FINAL WHERE side = 'broker';

CREATE TABLE IF NOT EXISTS currency_exposure_store
(
    side        LowCardinality(String),
    tenant      LowCardinality(String),
    book        LowCardinality(String),
    currency    LowCardinality(String),
    net_amount  Nullable(Decimal(38, 8)),
    net_usd     Nullable(Decimal(38, 8)),
    as_of       DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(as_of)
ORDER BY (tenant, side, book, currency);

CREATE VIEW IF NOT EXISTS currency_exposure AS
SELECT * EXCEPT (side) FROM currency_exposure_store FINAL WHERE side = 'clients';

CREATE VIEW IF NOT EXISTS broker_currency_exposure AS
SELECT * EXCEPT (side) FROM currency_exposure_store FINAL WHERE side = 'broker';

-- Every snapshot, for charts: exposure and P&L over time (clients and broker).
CREATE TABLE IF NOT EXISTS exposure_history
(
    side             LowCardinality(String),
    tenant           LowCardinality(String),
    book             LowCardinality(String),
    symbol           LowCardinality(String),
    net_lots         Decimal(18, 8),
    net_units        Decimal(38, 8),
    net_notional_usd Nullable(Decimal(38, 8)),
    floating_pnl_usd Nullable(Decimal(38, 8)),
    as_of            DateTime64(3, 'UTC'),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, side, book, symbol, as_of);

-- Per account: open exposure and floating P&L, for the risk desk's top lists
-- (ORDER BY gross_notional_usd DESC, floating_pnl_usd DESC or ASC).
CREATE VIEW IF NOT EXISTS account_exposure AS
SELECT tenant, account_key, login, any(`group`) AS `group`, any(book) AS book, count() AS positions,
       sum(notional_usd) AS gross_notional_usd, sum(floating_pnl_usd) AS floating_pnl_usd,
       max(as_of) AS as_of
FROM positions
GROUP BY tenant, account_key, login;

CREATE TABLE IF NOT EXISTS alerts_store
(
    alert_id     String,
    rule_id      LowCardinality(String),
    rule_version UInt32,
    category     LowCardinality(String),
    severity     LowCardinality(String),
    tenant       LowCardinality(String),
    subject      String,
    summary      String,
    facts        String,
    evidence     Array(String),
    event_time   DateTime64(3, 'UTC'),
    detected_at  DateTime64(3, 'UTC'),
    ingested_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, alert_id);

CREATE VIEW IF NOT EXISTS alerts AS
SELECT * FROM alerts_store FINAL;
