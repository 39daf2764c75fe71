# Needs only python3 and (for tests) redis-server. Everything else goes into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.DEFAULT_GOAL := help
.PHONY: help venv chromium demo test lint format bench clean distclean

help:
	@echo "make demo       run the demo site on http://127.0.0.1:8000 (Redis if REDIS_URL is set)"
	@echo "make test       run the test suite (uses REDIS_URL or starts a private redis-server)"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make bench      benchmark against naive Channels and the raw floor (docs/performance.md)"
	@echo "make clean      remove build artefacts and caches (distclean: also .venv)"

venv: $(STAMP)

# Re-installs only when the pins or the package metadata change.
$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	@touch $(STAMP)

demo: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/daphne -b 127.0.0.1 -p 8000 demo_site.asgi:application

# The browser tests drive Debian's chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing chromium for the browser tests"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else \
			echo "The browser tests need chromium at /usr/bin/chromium: sudo apt-get install chromium" >&2; \
			exit 1; \
		fi; }

test: venv chromium
	bash scripts/with-redis.sh $(BIN)/pytest --cov --cov-report=term-missing:skip-covered
	bash scripts/with-redis.sh $(BIN)/python manage.py test tests --settings=tests.settings

bench: venv
	bash scripts/with-redis.sh $(BIN)/python -m rtdelivery.bench --json bench-results.json

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy rtdelivery

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf build dist *.egg-info .coverage .coverage.* htmlcov test-artifacts \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
