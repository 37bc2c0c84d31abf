"""Contract suites: one abstract suite per port, bound to every implementation."""
