"""Tests of the auth domain's rules, below the HTTP layer."""
