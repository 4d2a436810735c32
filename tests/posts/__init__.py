"""Rules of the posts domain, tested below the HTTP layer."""
