# Run by the clickhouse-server image on its first start (mounted in /docker-entrypoint-initdb.d,
# sourced as the admin user): Grafana's own ClickHouse user, allowed to read the brokerstream
# tables and nothing else. GRAFANA_CLICKHOUSE_PASSWORD comes from deploy/.env (no quotes in it).
"${clickhouseclient[@]}" <<SQL
CREATE USER IF NOT EXISTS grafana IDENTIFIED WITH sha256_password BY '${GRAFANA_CLICKHOUSE_PASSWORD}';
GRANT SELECT ON brokerstream.* TO grafana;
SQL
