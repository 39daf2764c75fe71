# Needs only python3 and (for tests) redis-server. Everything else goes into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.DEFAULT_GOAL := help
.PHONY: help venv chromium demo test test-py312 test-py313 lint format bench clean distclean client client-lint

# RTDELIVERY_SKIP_BROWSER=1 make test: everything but tests/browser, so no Chromium is needed.
ifeq ($(RTDELIVERY_SKIP_BROWSER),1)
BROWSER      :=
PYTEST_SKIP  := --ignore=tests/browser
else
BROWSER      := chromium
PYTEST_SKIP  :=
endif

help:
	@echo "make demo       run the demo site on http://127.0.0.1:8000 (Redis if REDIS_URL is set)"
	@echo "make test       run the test suite (uses REDIS_URL or starts a private redis-server);"
	@echo "                installs Debian's chromium with apt-get if it is missing, for the browser"
	@echo "                tests: RTDELIVERY_SKIP_BROWSER=1 make test skips those tests instead"
	@echo "make test-py313 the suite without the browser and fault tests on Python 3.13 and the newest Django"
	@echo "                (test-py312: the same on Python 3.12)"
	@echo "make lint       ruff check, ruff format --check, mypy; the browser client's build is current"
	@echo "                and its .d.ts type-checks (needs node and npm)"
	@echo "make client     build the browser client (client/src) into rtdelivery/static/rtdelivery/"
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

# The browser tests drive Debian's chromium (Playwright cannot download browsers here), or the
# browser $$CHROMIUM names. Say so before installing anything, and how to do without.
chromium:
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
		echo "make test: the browser tests (tests/browser) need Chromium, which is not installed."; \
		echo "make test: to run the tests without them instead: RTDELIVERY_SKIP_BROWSER=1 make test"; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make test: installing Debian's chromium now: apt-get update && apt-get install -y chromium"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else \
			echo "make test: install it (sudo apt-get install chromium) or set CHROMIUM=/path/to/chrome" >&2; \
			exit 1; \
		fi; }

# The npm package's test (tests/test_client_package.py) needs client/node_modules: installed
# first when npm is here (CI has it), else that one test is skipped and says why.
NPM_STAMP := $(if $(shell command -v npm 2>/dev/null),client/node_modules/.stamp,)

test: venv $(BROWSER) $(NPM_STAMP)
	$(BIN)/python scripts/check-tested-versions.py
	bash scripts/with-redis.sh $(BIN)/pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_SKIP)
	bash scripts/with-redis.sh $(BIN)/python manage.py test tests --settings=tests.settings

# Legs beside `make test`: the suite without the browser tests on Python 3.13 (in .ci/run) or
# 3.12 with the newest Django that setup.cfg allows (requirements.txt's markers pick it on 3.12+;
# the check fails if they did not, or if setup.cfg's classifiers do not list the versions
# tested). Each venv lives in .venv/py3XX, so .gitignore and distclean cover it. Python comes from PATH or pyenv
# (scripts/find-python.sh), or from PYTHON313=/path/to/python3.13 (PYTHON312=...).
.PRECIOUS: $(VENV)/py3%/.stamp
$(VENV)/py3%/.stamp: requirements.txt setup.cfg pyproject.toml
	@python="$${PYTHON3$*:-$$(bash scripts/find-python.sh 3.$*)}" && \
		{ test -x $(@D)/bin/python || "$$python" -m venv $(@D); }
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	$(@D)/bin/python -m pip install --quiet -r requirements.txt -e .
	@touch $@

test-py312 test-py313: test-py3%: $(VENV)/py3%/.stamp
	$(VENV)/py3$*/bin/python scripts/check-tested-versions.py --newest-django
	bash scripts/with-redis.sh $(VENV)/py3$*/bin/pytest --ignore=tests/browser -m "not fault" -p no:cacheprovider

bench: venv
	bash scripts/with-redis.sh $(BIN)/python -m bench --json bench-results.json

lint: venv client-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy rtdelivery

# The browser client: client/src is the source, rtdelivery/static/rtdelivery/ the committed build
# (so the wheel needs no node). npm ci runs again only when the lockfile changed.
client/node_modules/.stamp: client/package.json client/package-lock.json
	cd client && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

client: client/node_modules/.stamp
	cd client && node build.mjs

client-lint: client/node_modules/.stamp
	cd client && node build.mjs --check
	cd client && node_modules/.bin/tsc --noEmit -p tsconfig.json
	cd client && node check-docs.mjs

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf build dist *.egg-info .coverage .coverage.* htmlcov test-artifacts \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
