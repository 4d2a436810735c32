"""Posts: each user's own text posts, and the cached list of them."""
