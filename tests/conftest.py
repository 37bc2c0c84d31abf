"""Root pytest configuration: registers the real-server fixtures in `tests.servers`."""

pytest_plugins = ["tests.servers.fixtures"]
