-- Rules in observe-only mode still write their alerts (for tuning), marked mode = 'observe';
-- compliance works from mode = 'alert', the only ones published on the alerts topic.
ALTER TABLE alerts_store ADD COLUMN IF NOT EXISTS mode LowCardinality(String) DEFAULT 'alert' AFTER detected_at;
DROP VIEW IF EXISTS alerts;
CREATE VIEW IF NOT EXISTS alerts AS
SELECT * FROM alerts_store FINAL;
