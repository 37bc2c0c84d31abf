"""The ubscore service on a real gRPC server, over the in-memory bus and real Kafka."""
