"""Services beside the engine: the PSP webhook receiver and the dashboard server."""
