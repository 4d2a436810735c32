"""``python -m bench``: make sure wrk and the bench venv exist, then run the benchmark there."""

from bench.bootstrap import main

main()
