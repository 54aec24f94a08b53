"""Per-tenant ClickHouse users limited to their own rows by row policies (ClickHouse server).

For every tenant `t` of the configuration, `tenant_grants_sql` makes:

* a user `tenant_<t>` (password from $BROKERSTREAM_TENANT_<T>_CLICKHOUSE_PASSWORD), in the
  settings profile `brokerstream_tenant` (readonly = 2: reads only), with the role
  `brokerstream_tenant_reader`, which holds SELECT on each table and view of the database that
  has a tenant column (not on `schema_migrations`, nor on the materialized views: they are read
  through their target tables, which have the grant and the policy);
* on every table, view and materialized view of the database, a RESTRICTIVE row policy
  `tenant_<t>` USING tenant = '<t>' TO tenant_<t>;
* on the same objects, one PERMISSIVE policy `brokerstream_all_rows` USING 1 TO ALL.

Why both: once a table has any row policy, ClickHouse shows a user only the rows some permissive
policy of theirs allows (depending on `users_without_row_policies_can_read_rows`, nothing at all
otherwise), so `brokerstream_all_rows` keeps the engine's own user and Grafana's all-tenant user
seeing everything; a restrictive policy is ANDed with whatever permissive ones apply, so a tenant
user sees only their tenant even if someone later grants them more, or a role goes missing.
The views are SQL SECURITY INVOKER (ClickHouse's default for plain views), so a view reads its
`_store` table with the tenant user's own policy; the policies on the views themselves are a
second fence.

The SQL is generated from the live schema (after `brokerstream migrate`), so a table added by a
later migration gets its policies the next time this runs (`engine-init` runs it at every
start); a table without a tenant column stops the generation with its name, unless it is in
`EXEMPT` with the reason. Statements are idempotent (IF NOT EXISTS / OR REPLACE; ALTER USER sets
the password again, which rotates it).

Embedded ClickHouse (chdb) has no access control to speak of: its only user is `default` from a
read-only users.xml, so CREATE USER / ROLE / ROW POLICY are refused (ACCESS_DENIED) and there is
no way to run a query as another user. There the dashboard page limits each query itself
(`additional_table_filters`, see services/dashboard/server.py), with the same conditions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.dashboard.definitions import quote

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

PROFILE = "brokerstream_tenant"
ROLE = "brokerstream_tenant_reader"
ALL_ROWS_POLICY = "brokerstream_all_rows"
# Objects of the database that hold no tenant data, each with why; tenant users get no grant.
EXEMPT: dict[str, str] = {
    "schema_migrations": "migration bookkeeping (version, file name, time): no tenant data",
}
_IDENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class SchemaObject:
    name: str
    engine: str  # MergeTree family, View, MaterializedView, Null, ...
    has_tenant: bool

    @property
    def readable(self) -> bool:
        """Granted to tenant users: tables and plain views (not materialized views)."""
        return self.engine != "MaterializedView"


class GrantError(ValueError):
    """The grants cannot be generated (a table without tenant column, a missing password)."""


def ident(name: str) -> str:
    """A ClickHouse identifier in backticks (tenant ids may hold '-')."""
    if not _IDENT.match(name):
        raise GrantError(f"{name!r} is not a name brokerstream makes")
    return f"`{name}`"


def user_name(tenant: str) -> str:
    return f"tenant_{tenant}"


def password_env(tenant: str) -> str:
    return f"BROKERSTREAM_TENANT_{tenant.upper().replace('-', '_')}_CLICKHOUSE_PASSWORD"


def schema_objects(client: Client, database: str) -> list[SchemaObject]:
    """Every table, view and materialized view of `database`, from the server's catalogue."""
    rows = client.query(
        "SELECT t.name, t.engine, countIf(c.name = 'tenant') > 0 FROM system.tables AS t "
        "LEFT JOIN system.columns AS c ON c.database = t.database AND c.table = t.name "
        "WHERE t.database = {db:String} AND NOT t.is_temporary GROUP BY t.name, t.engine ORDER BY t.name",
        parameters={"db": database}).result_rows
    return [SchemaObject(str(name), str(engine), bool(has)) for name, engine, has in rows]


def tenant_condition(tenant: str) -> str:
    """The rows of `tenant`: the row policies' USING, and the dashboard page's filter."""
    return f"tenant = {quote(tenant)}"


def tenant_grants_sql(database: str, objects: Sequence[SchemaObject], tenants: Sequence[str],
                      passwords: Mapping[str, str]) -> list[str]:
    """The statements that create (or bring up to date) the tenant users of `tenants` and the
    row policies on every object of `database`. `passwords`: tenant -> ClickHouse password."""
    if not objects:
        raise GrantError(f"database {database!r} has no tables: run `brokerstream migrate` first")
    missing = [o.name for o in objects if not o.has_tenant and o.name not in EXEMPT]
    if missing:
        raise GrantError(f"no tenant column in {', '.join(missing)}: add one, or list the table in "
                         "services.tenant_grants.EXEMPT with the reason it holds no tenant data")
    lacking = [password_env(t) for t in tenants if not passwords.get(t)]
    if lacking:
        raise GrantError(f"no ClickHouse password for the tenant user(s): set {', '.join(lacking)}")
    db = ident(database)
    scoped = [o for o in objects if o.name not in EXEMPT]
    out = [
        f"CREATE SETTINGS PROFILE IF NOT EXISTS {PROFILE} SETTINGS readonly = 2, max_execution_time = 120",
        f"CREATE ROLE IF NOT EXISTS {ROLE}",
        # Start from nothing, so a table dropped or exempted later loses its grant too.
        f"REVOKE ALL ON *.* FROM {ROLE}",
        *(f"GRANT SELECT ON {db}.{ident(o.name)} TO {ROLE}" for o in scoped if o.readable),
        *(f"CREATE ROW POLICY OR REPLACE {ALL_ROWS_POLICY} ON {db}.{ident(o.name)} AS permissive "
          "FOR SELECT USING 1 TO ALL" for o in scoped),
    ]
    for tenant in tenants:
        user = ident(user_name(tenant))
        password = quote(passwords[tenant])
        out += [
            f"CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_password BY {password} "
            f"DEFAULT DATABASE {db} SETTINGS PROFILE {quote(PROFILE)}",
            f"ALTER USER {user} IDENTIFIED WITH sha256_password BY {password}",
            f"GRANT {ROLE} TO {user}",
            f"SET DEFAULT ROLE {ROLE} TO {user}",
            *(f"CREATE ROW POLICY OR REPLACE {user} ON {db}.{ident(o.name)} AS restrictive "
              f"FOR SELECT USING {tenant_condition(tenant)} TO {user}" for o in scoped),
        ]
    return out


def passwords_from_env(tenants: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {t: env[password_env(t)] for t in tenants if env.get(password_env(t))}


def redact(statement: str) -> str:
    """A statement with its password literal replaced, for logs and dry runs."""
    return re.sub(r"(BY )'(?:[^'\\]|\\.)*'", r"\1'…'", statement)


# -- Grafana: one organisation and one ClickHouse data source per tenant user ----------------

GRAFANA_FIRST_ORG = 2  # org 1 is the broker's own (all tenants, the `grafana` ClickHouse user)


def grafana_org_name(tenant: str) -> str:
    return f"brokerstream {tenant}"


def grafana_tenant_provisioning(tenants: Sequence[str]) -> tuple[dict[str, object], dict[str, object]]:
    """(datasources, dashboards) provisioning documents for Grafana: tenant i (in configuration
    order) in organisation GRAFANA_FIRST_ORG + i, whose only ClickHouse data source logs in as
    tenant_<t> (same uid as org 1's, so the dashboards' JSON works unchanged in every org)."""
    datasources: list[dict[str, object]] = []
    providers: list[dict[str, object]] = []
    for i, tenant in enumerate(tenants):
        org = GRAFANA_FIRST_ORG + i
        env = f"BROKERSTREAM_CLICKHOUSE_PASSWORD_{tenant.upper().replace('-', '_')}"
        datasources.append({
            "orgId": org,
            "name": f"brokerstream ClickHouse ({tenant})",
            "uid": "brokerstream-clickhouse",
            "type": "grafana-clickhouse-datasource",
            "access": "proxy",
            "isDefault": True,
            "editable": False,
            "jsonData": {"host": "$BROKERSTREAM_CLICKHOUSE_HOST", "port": 9000, "protocol": "native",
                         "secure": False, "username": user_name(tenant), "defaultDatabase": "brokerstream",
                         "queryTimeout": "60"},
            "secureJsonData": {"password": f"${env}"},
        })
        providers.append({
            "name": f"brokerstream-{tenant}",
            "orgId": org,
            "folder": "brokerstream",
            "type": "file",
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            # the tenant orgs get the ClickHouse dashboards only: engine health is the
            # broker's (org 1), as on the built-in page
            "options": {"path": "/var/lib/grafana/dashboards/brokerstream-tenants",
                        "foldersFromFilesStructure": False},
        })
    return ({"apiVersion": 1, "datasources": datasources}, {"apiVersion": 1, "providers": providers})
