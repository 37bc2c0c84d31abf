"""The log bus: one small interface, over Kafka and over an in-memory log with its semantics."""
