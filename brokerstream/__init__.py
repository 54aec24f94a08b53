"""brokerstream."""
