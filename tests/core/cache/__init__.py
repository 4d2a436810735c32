"""Tests of the cache package, one module per concern."""
