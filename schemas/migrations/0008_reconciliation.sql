-- Issue 16: continuous reconciliation of money between the payment providers and the trading
-- platforms (docs/reconciliation.md). One row per version of a break (opened, updated,
-- resolved); `version` orders them, so the view shows each break's latest state. Ids are
-- deterministic (`<kind>:<anchor op_key>`): a replay or a resume writes the same rows again.
CREATE TABLE IF NOT EXISTS reconciliation_breaks_store
(
    break_id          String,
    tenant            LowCardinality(String),
    kind              LowCardinality(String),
    status            LowCardinality(String),
    event             LowCardinality(String),
    provider          LowCardinality(String),
    server            LowCardinality(String),
    login             UInt64,
    reference         String,
    psp_op_key        String,
    psp_op_id         String,
    psp_kind          LowCardinality(String),
    psp_status        LowCardinality(String),
    psp_amount        Nullable(Decimal(38, 8)),
    psp_currency      LowCardinality(String),
    platform_op_key   String,
    platform_op_id    String,
    platform_amount   Nullable(Decimal(38, 8)),
    platform_currency LowCardinality(String),
    detail            String,
    basis_time        DateTime64(3, 'UTC'),
    detected_at       DateTime64(3, 'UTC'),
    updated_at        DateTime64(3, 'UTC'),
    resolved_at       Nullable(DateTime64(3, 'UTC')),
    resolution        String,
    version           UInt64,
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, break_id);

CREATE VIEW IF NOT EXISTS reconciliation_breaks AS
SELECT * FROM reconciliation_breaks_store FINAL;
