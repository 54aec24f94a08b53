"""The client and the IB the client and partner views are tested with, picked from the simulated
brokerage (tests/test_dashboards.py, test_dashboard_page.py, test_client_partner_views.py)."""

from __future__ import annotations

from pipelines.store import Store

CLIENT_KEY = "if(client_id = '', account_key, client_id)"  # as dashboards/client.json


def rich_client(store: Store) -> str:
    """A CRM client with several accounts, open positions, payments, alerts and logins."""
    client = store.scalar(f"""
        SELECT {CLIENT_KEY} AS client FROM accounts
        GROUP BY client
        HAVING count() > 1
           AND countIf(account_key IN (SELECT subject FROM alerts)) > 0
           AND countIf(account_key IN (SELECT account_key FROM positions)) > 0
           AND countIf((server, login) IN (SELECT server, login FROM balance_operations
                                           WHERE provider != '')) > 0
           AND countIf((server, login) IN (SELECT server, login FROM logins)) > 0
        ORDER BY countIf(account_key IN (SELECT account_key FROM positions)) DESC, client
        LIMIT 1""")
    assert client, "the simulated data has no client with several accounts and all kinds of data"
    return str(client)


def client_value(store: Store, client: str) -> str:
    """The client variable's value for `client`: "<client id> — <name>"."""
    return str(store.scalar(f"SELECT concat({CLIENT_KEY}, ' — ', argMax(name, updated_at)) FROM accounts "
                            f"WHERE {CLIENT_KEY} = %(c)s GROUP BY {CLIENT_KEY}", {"c": client}))


def busy_ib(store: Store) -> str:
    """The top-level IB whose tree has the most commission rows, with reversals."""
    ib = store.scalar("""
        SELECT t.ib_id FROM ib_tree AS t
        INNER JOIN (SELECT ib_id, count() AS n FROM ib_commissions GROUP BY ib_id
                    HAVING countIf(kind = 'reversal') > 0) AS c ON c.ib_id = t.ib_id
        WHERE t.depth = 0 ORDER BY c.n DESC, t.ib_id LIMIT 1""")
    assert ib, "the simulated data has no IB tree with commissions"
    return str(ib)
