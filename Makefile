# The few commands of posts-api. Each target sets up what it needs: a fresh clone needs only
# Python 3.11+ and make. Dependencies come from uv.lock, exactly.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
BIN := .venv/bin

.PHONY: install run test lint audit format bench bench-smoke bench-headline soak container-check clean

install: .venv/.synced

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

run: install  ## serve on http://127.0.0.1:8000 with SQLite and the in-process cache
	$(BIN)/posts-api serve

# Two pytest-xdist workers, a test file at a time each; each worker has Redis databases of its
# own (tests/support.py: TEST_REDIS_DB_* list one per worker) and databases of its own.
test: install  ## the whole suite (MariaDB and Redis parts skip, with a reason, when absent)
	$(BIN)/pytest -m "not container and not alone" -n 2 --dist loadfile
	$(BIN)/pytest -m "alone"

lint: install  ## what CI checks besides the tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

audit: install  ## known vulnerabilities in the locked dependencies (needs PyPI's JSON API)
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --format requirements-txt \
		--output-file .venv/requirements-audit.txt --quiet
	$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
		-r .venv/requirements-audit.txt

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## the full benchmark (~30 min): writes BENCHMARKS.md and bench/ceiling.png
	$(BIN)/python -m bench

bench-smoke: install  ## the benchmark end to end in a few minutes; fails if any request failed
	$(BIN)/python -m bench --smoke

bench-headline: install  ## print the README's headline table from the latest full or short run
	$(BIN)/python -m bench.report --headline \
		"$$(ls -td bench/results/*/ | grep -v smoke | head -1)results.json"

soak: install  ## three minutes of mixed load on two workers (MariaDB + Redis); see RELIABILITY.md
	$(BIN)/python -m bench.soak

# Root, and Debian's packages: the tests run their own dockerd and debootstrap the base image.
container-check: install  ## build and run the image and compose.yaml (~3 min; ~1.5 with .cache/)
	@missing=""; for tool in dockerd docker-compose debootstrap; do \
		command -v $$tool >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			-o DPkg::Lock::Timeout=300 docker.io docker-compose debootstrap; fi
	$(BIN)/pytest -m container tests/container

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
