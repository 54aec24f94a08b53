#!/bin/sh
# The tenant users and row policies on a ClickHouse server (docs/production.md, Tenant
# isolation), for a deployment other than deploy/compose.yaml (whose engine-init runs
# `brokerstream tenants grants --apply` at every start). Needs BROKERSTREAM_CLICKHOUSE (a user with
# access management), BROKERSTREAM_CONFIG, and BROKERSTREAM_TENANT_<ID>_CLICKHOUSE_PASSWORD for
# every tenant. Not run here: there is no ClickHouse server on the build machine.
#   deploy/tenant-grants.sh            apply for every tenant
#   deploy/tenant-grants.sh --tenant acme
#   deploy/tenant-grants.sh --print    print the SQL instead (for clickhouse-client --multiquery)
set -eu
brokerstream migrate
if [ "${1:-}" = "--print" ]; then
  shift
  exec brokerstream tenants grants "$@"
fi
exec brokerstream tenants grants --apply "$@"
