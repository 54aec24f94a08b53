-- Issue 16, the partner view: the partner tree and the plans' per-lot rates and volume tiers as
-- the commissions files configure them, so that SQL (Grafana, the built-in page) can show an
-- IB's tree and its progress to the next tier. Written by the engine at start from
-- `commissions:` (pipelines/partner_tables.py); every load writes a complete set stamped
-- `loaded_at`, and the views show only each tenant's latest load (an IB or plan removed from the
-- file disappears from them; the _store tables keep what earlier loads said).

-- One row per IB per moment at which any link of the tenant's tree changes (an IB's master or
-- plan): the whole tree as it is from `effective_from` on, each IB with its path from the top.
CREATE TABLE IF NOT EXISTS ib_tree_store
(
    tenant          LowCardinality(String),
    effective_from  DateTime64(3, 'UTC'),
    ib_id           String,
    name            String,
    parent          String,
    plan_id         String,
    path            String,
    depth           UInt8,
    agent_logins    Array(String),
    loaded_at       DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (tenant, effective_from, ib_id);

-- Every snapshot of the latest load: the tree at any moment is the snapshot with the latest
-- effective_from at or before it.
CREATE VIEW IF NOT EXISTS ib_tree_history AS
SELECT * FROM ib_tree_store FINAL
WHERE (tenant, loaded_at) IN (SELECT tenant, max(loaded_at) FROM ib_tree_store GROUP BY tenant);

-- The tree in force now (wall clock): per tenant the latest snapshot that has started, else the
-- first one (a file whose every link lies in the future).
CREATE VIEW IF NOT EXISTS ib_tree AS
SELECT * FROM ib_tree_history
WHERE (tenant, effective_from) IN (
    SELECT tenant, if(countIf(effective_from <= now64(3)) > 0,
                      maxIf(effective_from, effective_from <= now64(3)), min(effective_from))
    FROM ib_tree_history GROUP BY tenant);

-- One row per plan version, volume tier (0 = the base rates) and symbol group: the per-lot rate
-- in force from `from_lots` lots in the IB's month (0 for the base); `set_at_tier`: the tier
-- itself sets this rate (every base rate does). A tier lists only the groups
-- whose rate changes; the others keep the rate of the tier below, as in commissions/plans.py.
CREATE TABLE IF NOT EXISTS ib_plan_tiers_store
(
    tenant          LowCardinality(String),
    plan_id         String,
    plan_name       String,
    plan_version    UInt32,
    effective_from  DateTime64(3, 'UTC'),
    distribution    LowCardinality(String),
    charge          LowCardinality(String),
    tier            UInt8,
    from_lots       Decimal(18, 8),
    symbol_group    LowCardinality(String),
    per_lot         Decimal(38, 8),
    set_at_tier     Bool,
    currency        LowCardinality(String),
    loaded_at       DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (tenant, plan_id, plan_version, tier, symbol_group);

CREATE VIEW IF NOT EXISTS ib_plan_tiers AS
SELECT * FROM ib_plan_tiers_store FINAL
WHERE (tenant, loaded_at) IN (SELECT tenant, max(loaded_at) FROM ib_plan_tiers_store GROUP BY tenant);

-- Which accounts belong to which IB: those it was paid for as the direct IB (tier-1 commission
-- rows: `paid`), and those whose platform Agent field names the IB or one of its agent logins
-- (`agent`; an account may not have traded yet). An account moved between IBs is listed under both.
CREATE VIEW IF NOT EXISTS ib_clients AS
SELECT tenant, ib_id, account_key, arraySort(groupUniqArray(source)) AS sources
FROM (
    SELECT tenant, ib_id, account_key, 'paid' AS source FROM ib_commissions WHERE tier = 1
    UNION ALL
    SELECT a.tenant AS tenant, t.ib_id AS ib_id, a.account_key AS account_key, 'agent' AS source
    FROM accounts AS a
    INNER JOIN (SELECT tenant, ib_id, arrayJoin(arrayConcat([ib_id], agent_logins)) AS agent FROM ib_tree) AS t
        ON t.tenant = a.tenant AND t.agent = a.agent
    WHERE a.agent != ''
)
GROUP BY tenant, ib_id, account_key;
