-- IB commissions: one row per IB per tier per deal version. Rows never change: a correction
-- adds reversal rows, so sums over any period are what is owed, each row explained.

CREATE TABLE IF NOT EXISTS ib_commissions_store
(
    commission_id     String,
    tenant            LowCardinality(String),
    deal_key          String,
    deal_version      UInt64,
    revision          UInt32,
    account_key       String,
    login             UInt64,
    symbol            LowCardinality(String),
    symbol_group      LowCardinality(String),
    deal_time         DateTime64(3, 'UTC'),
    ib_id             LowCardinality(String),
    tier              UInt8,
    tier_chain        String,
    plan_id           LowCardinality(String),
    plan_version      UInt32,
    distribution      LowCardinality(String),
    volume_tier       UInt8,
    lots              Decimal(18, 8),
    rate              Decimal(38, 8),
    markup            Decimal(18, 8),
    client_commission Decimal(38, 8),
    gross             Decimal(38, 8),
    deal_total        Decimal(38, 8),
    amount            Decimal(38, 8),
    currency          LowCardinality(String),
    amount_usd        Decimal(38, 8),
    capped            LowCardinality(String),
    basis             String,
    kind              LowCardinality(String),
    reverses          String,
    reason            LowCardinality(String),
    caused_by         String,
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, commission_id);

CREATE VIEW IF NOT EXISTS ib_commissions AS
SELECT * FROM ib_commissions_store FINAL;

-- Payouts per IB: own earnings (tier 1, its own clients) and overrides (tier 2+, clients of
-- the IBs below it). Reversals are included, so the sums are what is owed.
CREATE VIEW IF NOT EXISTS ib_payouts_daily AS
SELECT tenant, ib_id, toDate(deal_time) AS day, currency,
       sumIf(amount, tier = 1) AS own, sumIf(amount, tier > 1) AS override, sum(amount) AS total,
       sum(amount_usd) AS total_usd, countIf(kind = 'earn') AS earn_rows,
       countIf(kind = 'reversal') AS reversal_rows
FROM ib_commissions_store FINAL
GROUP BY tenant, ib_id, day, currency;

CREATE VIEW IF NOT EXISTS ib_payouts_monthly AS
SELECT tenant, ib_id, toStartOfMonth(deal_time) AS month, currency,
       sumIf(amount, tier = 1) AS own, sumIf(amount, tier > 1) AS override, sum(amount) AS total,
       sum(amount_usd) AS total_usd, countIf(kind = 'earn') AS earn_rows,
       countIf(kind = 'reversal') AS reversal_rows
FROM ib_commissions_store FINAL
GROUP BY tenant, ib_id, month, currency;

-- Deals or account events the commission engine could not price (unknown IB, no rate, ...).
CREATE TABLE IF NOT EXISTS commission_issues_store
(
    tenant      LowCardinality(String),
    key         String,
    version     UInt64,
    reason      String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, key, version, reason);

CREATE VIEW IF NOT EXISTS commission_issues AS
SELECT * FROM commission_issues_store FINAL;
