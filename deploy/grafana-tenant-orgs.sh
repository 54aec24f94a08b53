#!/bin/sh
# One Grafana organisation per tenant, for deploy/compose.yaml's `grafana-tenants` service (run
# once Grafana answers; safe to run again). Grafana cannot provision organisations, and refuses to
# start when a provisioning file names one that does not exist, so the tenant files
# (dashboards/provisioning/tenants/, from `brokerstream tenants grafana`) are copied into
# Grafana's provisioning volumes only after the organisations exist, and then reloaded.
#   grafana-tenant-orgs.sh TENANT...   (in configuration order: org ids 2, 3, ...)
# Needs GRAFANA_URL (http://grafana:3000) and GRAFANA_ADMIN_PASSWORD. Not run here (no Docker).
set -eu
: "${GRAFANA_URL:?}" "${GRAFANA_ADMIN_PASSWORD:?}"
api() { curl -fsS -u "admin:${GRAFANA_ADMIN_PASSWORD}" -H 'Content-Type: application/json' "$@"; }

i=0
until curl -fsS "${GRAFANA_URL}/api/health" >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 120 ] || { echo "Grafana did not answer" >&2; exit 1; }; sleep 1
done

expected=2
for tenant in "$@"; do
  name="brokerstream%20${tenant}"
  if ! id=$(api "${GRAFANA_URL}/api/orgs/name/${name}" 2>/dev/null | sed -n 's/^{"id":\([0-9]*\).*/\1/p') || [ -z "$id" ]; then
    id=$(api -X POST "${GRAFANA_URL}/api/orgs" -d "{\"name\":\"brokerstream ${tenant}\"}" \
         | sed -n 's/.*"orgId":\([0-9]*\).*/\1/p')
  fi
  if [ "$id" != "$expected" ]; then
    # the provisioning files name organisations by id: a mismatch would show one tenant's data
    # source in another's organisation, so stop instead
    echo "organisation 'brokerstream ${tenant}' has id ${id}, the provisioning expects ${expected}" >&2
    exit 1
  fi
  echo "organisation 'brokerstream ${tenant}': id ${id}"
  expected=$((expected + 1))
done

cp /tenants/datasources.yaml /provisioning/datasources/tenants.yaml
cp /tenants/dashboards.yaml /provisioning/dashboards/tenants.yaml
api -X POST "${GRAFANA_URL}/api/admin/provisioning/datasources/reload" >/dev/null
api -X POST "${GRAFANA_URL}/api/admin/provisioning/dashboards/reload" >/dev/null
echo "tenant data sources and dashboards provisioned"
