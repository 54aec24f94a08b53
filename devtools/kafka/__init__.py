"""Local Apache Kafka broker runtime for development and tests."""
