"""Unit tests of the ubscore service adapters (no servers)."""
