"""Reliability and security, proven on real processes: ``posts-api serve`` in subprocesses.

Each module starts its own servers (and, for the cache faults, its own ``redis-server``), breaks
something for real, and checks what a client sees: schema fuzzing (``test_fuzz``), faults of
the cache, the database and the server process (``test_faults``), races and several hosts
(``test_concurrency``), and the attack surface (``test_attacks``). RELIABILITY.md at the root
lists every fault, attack and bad input tried, and the test that tries it.
"""
