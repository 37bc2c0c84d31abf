"""End-to-end tests: `ordermesh up` as a real process, driven through the gateway."""
