"""risk_rules."""
