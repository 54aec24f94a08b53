"""The dashboards: Grafana dashboard definitions (`definitions`) and the built-in page."""
