-- Withdrawal decisions (docs/withdrawals.md): one row per decision of a PSP withdrawal request,
-- approve / hold / reject with the reasons and what would release a hold. A held request that
-- is re-decided gets a higher `revision`; the view keeps the latest revision per request.

CREATE TABLE IF NOT EXISTS withdrawal_decisions_store
(
    request_key            String,
    tenant                 LowCardinality(String),
    account_key            String,
    server                 LowCardinality(String),
    login                  UInt64,
    request_id             String,
    provider               LowCardinality(String),
    method                 LowCardinality(String),
    instrument_fingerprint String,
    amount                 Decimal(38, 8),
    currency               LowCardinality(String),
    decision               LowCardinality(String),
    reason_codes           Array(String),
    reasons                String,
    release_conditions     Array(String),
    policy_version         UInt32,
    requested_at           DateTime64(3, 'UTC'),
    decided_at             DateTime64(3, 'UTC'),
    revision               UInt32,
    decision_id            String,
    ingested_at            DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (tenant, request_key);

CREATE VIEW IF NOT EXISTS withdrawal_decisions AS
SELECT * FROM withdrawal_decisions_store FINAL;
