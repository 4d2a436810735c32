"""Tests of posts-api."""
