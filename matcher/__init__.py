"""ordermesh matcher service."""
