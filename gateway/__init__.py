"""ordermesh gateway service."""
