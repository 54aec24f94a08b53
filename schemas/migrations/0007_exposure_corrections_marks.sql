-- Issue 14. `mark_source`: which price feed marked a position - `own` (its own platform symbol
-- on its own server), `canonical` (another feed of the canonical symbol on the same server),
-- `other_server` (the canonical symbol on another server), '' (no price).
ALTER TABLE positions_store ADD COLUMN IF NOT EXISTS mark_source LowCardinality(String) DEFAULT '' AFTER mark_price;
DROP VIEW IF EXISTS positions;
CREATE VIEW IF NOT EXISTS positions AS
SELECT * EXCEPT (is_deleted) FROM positions_store FINAL;

-- Corrections (dealer updates/deletes, late deals) that exposure could not apply, because the
-- position had left memory and its stored deals could not vouch for it. Each also raises a
-- `correction.unapplied` risk alert. Never silent.
CREATE TABLE IF NOT EXISTS correction_issues_store
(
    tenant        LowCardinality(String),
    account_key   String,
    deal_key      String,
    version       UInt64,
    event         LowCardinality(String),
    position_ref  String,
    deal_time     DateTime64(3, 'UTC'),
    reason        String,
    detected_at   DateTime64(3, 'UTC'),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, deal_key, version);

CREATE VIEW IF NOT EXISTS correction_issues AS
SELECT * FROM correction_issues_store FINAL;
