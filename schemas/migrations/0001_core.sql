-- brokerstream core tables. Facts are stored in *_store tables that keep every version;
-- the views named as in docs/data-contract.md show each fact once, latest version,
-- deletes removed (ReplacingMergeTree with is_deleted, read with FINAL).

CREATE TABLE IF NOT EXISTS deals_store
(
    deal_key        String,
    tenant          LowCardinality(String),
    platform        LowCardinality(String),
    server          LowCardinality(String),
    login           UInt64,
    deal_id         String,
    order_id        String,
    position_id     String,
    symbol          LowCardinality(String),
    platform_symbol LowCardinality(String),
    side            LowCardinality(String),
    entry           LowCardinality(String),
    lots            Decimal(18, 8),
    signed_lots     Decimal(18, 8),
    contract_size   Decimal(18, 8),
    units           Decimal(38, 8),
    price           Decimal(18, 8),
    notional        Decimal(38, 8),
    profit          Decimal(38, 8),
    swap            Decimal(38, 8),
    commission      Decimal(38, 8),
    fee             Decimal(38, 8),
    currency        LowCardinality(String),
    reason          LowCardinality(String),
    canceled        Bool,
    comment         String,
    external_id     String,
    time            DateTime64(3, 'UTC'),
    event           LowCardinality(String),
    version         UInt64,
    is_deleted      UInt8,
    source          String,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant, deal_key);

CREATE VIEW IF NOT EXISTS deals AS
SELECT * EXCEPT (is_deleted) FROM deals_store FINAL;

CREATE TABLE IF NOT EXISTS balance_operations_store
(
    op_key                  String,
    tenant                  LowCardinality(String),
    platform                LowCardinality(String),
    server                  LowCardinality(String),
    login                   UInt64,
    op_id                   String,
    kind                    LowCardinality(String),
    amount                  Decimal(38, 8),
    currency                LowCardinality(String),
    status                  LowCardinality(String),
    provider                LowCardinality(String),
    method                  LowCardinality(String),
    payer_name              String,
    instrument_fingerprint  String,
    country                 LowCardinality(String),
    comment                 String,
    time                    DateTime64(3, 'UTC'),
    event                   LowCardinality(String),
    version                 UInt64,
    is_deleted              UInt8,
    source                  String,
    ingested_at             DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant, op_key);

CREATE VIEW IF NOT EXISTS balance_operations AS
SELECT * EXCEPT (is_deleted) FROM balance_operations_store FINAL;

CREATE TABLE IF NOT EXISTS dead_letters_store
(
    dl_key      String,
    tenant      LowCardinality(String),
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    key         String,
    raw         String,
    headers     Map(String, String),
    reason      String,
    stage       LowCardinality(String),
    time        DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, dl_key);

CREATE VIEW IF NOT EXISTS dead_letters AS
SELECT * FROM dead_letters_store FINAL;
