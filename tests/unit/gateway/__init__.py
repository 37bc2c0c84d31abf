"""Unit tests of the gateway's pure parts: validation, auth, rate limiting, event groups."""
