-- The platform's last login of each account (MT5 LastAccess, MT4 lastdate): lets the dormant-
-- account rule know an account's history from before the engine started watching it.
ALTER TABLE accounts_store ADD COLUMN IF NOT EXISTS last_access Nullable(DateTime64(3, 'UTC')) AFTER registration;
DROP VIEW IF EXISTS accounts;
CREATE VIEW IF NOT EXISTS accounts AS
SELECT * FROM accounts_store FINAL;
