"""Tests of the matcher core and its snapshot codec."""
