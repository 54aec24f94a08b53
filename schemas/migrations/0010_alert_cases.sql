-- Issue 16: alert cases. Compliance works alerts as cases; every step is a row of the
-- append-only action log (who, when, what), and a case's state is what its actions fold to
-- (cases/model.py does it in Python, the `cases` view in SQL, in the same (at, action_id)
-- order). Rows are never updated: ReplacingMergeTree on the action id only collapses a retried
-- write of the same action (the same id is always the same row).
CREATE TABLE IF NOT EXISTS alert_actions_store
(
    tenant       LowCardinality(String),
    action_id    String,
    case_id      String,
    action       LowCardinality(String),
    actor        String,
    at           DateTime64(3, 'UTC'),
    alert_ids    Array(String),
    client       String,
    severity     LowCardinality(String),
    alert_time   Nullable(DateTime64(3, 'UTC')),
    assignee     String,
    reason       LowCardinality(String),
    note         String,
    ingested_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, case_id, action_id);

CREATE VIEW IF NOT EXISTS alert_actions AS
SELECT * FROM alert_actions_store FINAL;

-- Case membership: one row per alert and the case it was filed into (open / link actions).
CREATE VIEW IF NOT EXISTS alert_cases AS
SELECT tenant, case_id, alert_id, client, at AS filed_at
FROM alert_actions ARRAY JOIN alert_ids AS alert_id
WHERE action IN ('open', 'link');

-- Each case's current state, folded from its actions: status from the last open/link/close/
-- reopen (a link to a closed case opens it again), assignee from the last assign, acknowledged
-- when the last acknowledge came after the last reopen.
CREATE VIEW IF NOT EXISTS cases AS
SELECT
    tenant, case_id, first_client AS client,
    if(last_status_action = 'close', 'closed', 'open') AS status,
    arrayElement(['low', 'medium', 'high', 'critical'], top_rank) AS severity,
    top_rank AS severity_rank,
    member_ids AS alert_ids,
    length(member_ids) AS alerts,
    last_assignee AS assignee,
    acks > 0 AND last_ack > last_reopen AS acknowledged,
    if(acknowledged, last_ack_actor, '') AS acknowledged_by,
    first_open AS opened_at,
    first_raised AS raised_at,
    if(status = 'closed', last_close_at, NULL) AS closed_at,
    if(status = 'closed', last_close_reason, '') AS close_reason,
    last_at AS last_action_at,
    n_actions AS actions,
    n_notes AS notes
FROM
(
    SELECT
        tenant, case_id,
        argMinIf(client, (at, action_id), action = 'open') AS first_client,
        argMaxIf(action, (at, action_id), action IN ('open', 'link', 'close', 'reopen')) AS last_status_action,
        toUInt8(maxIf(indexOf(['low', 'medium', 'high', 'critical'], severity), action IN ('open', 'link'))) AS top_rank,
        arrayDistinct(arrayFlatten(groupArrayIf(alert_ids, action IN ('open', 'link')))) AS member_ids,
        argMaxIf(assignee, (at, action_id), action = 'assign') AS last_assignee,
        countIf(action = 'acknowledge') AS acks,
        maxIf((at, action_id), action = 'acknowledge') AS last_ack,
        maxIf((at, action_id), action = 'reopen') AS last_reopen,
        argMaxIf(actor, (at, action_id), action = 'acknowledge') AS last_ack_actor,
        minIf(at, action = 'open') AS first_open,
        minIf(assumeNotNull(alert_time), action IN ('open', 'link') AND alert_time IS NOT NULL) AS first_raised,
        argMaxIf(at, (at, action_id), action = 'close') AS last_close_at,
        argMaxIf(reason, (at, action_id), action = 'close') AS last_close_reason,
        max(at) AS last_at,
        count() AS n_actions,
        countIf(action = 'note' OR (action IN ('close', 'reopen') AND note != '')) AS n_notes,
        countIf(action = 'open') AS opens
    FROM alert_actions
    GROUP BY tenant, case_id
)
WHERE opens > 0;
