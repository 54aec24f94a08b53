"""Statements and reports people file: the client statement, the daily report pack per tenant,
IB statements and the month's payout run, each as CSV, XLSX and PDF from one typed model.
Every figure comes from a query of reports/queries.py (docs/reports.md, docs/data-contract.md)."""
