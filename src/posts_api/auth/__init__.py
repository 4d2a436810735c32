"""Accounts: sign-up, log-in, access tokens and log-in throttling."""
