"""Development tools production never imports: the simulated brokerage, the local Kafka broker, the demo."""
