"""The Grafana dashboards (JSON) and their provisioning files: package data, no code."""
