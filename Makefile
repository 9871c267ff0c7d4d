# The two set-up commands of the README: `make run` serves the site, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench bench-frames soak messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.serve-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.serve-deps

run: $(VENV)/.serve-deps
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python -m chatsite.logs -b $(HOST) -p $(PORT) chatsite.asgi:application

test: $(VENV)/.test-deps
	.ci/ensure-redis
	.ci/ensure-chromium
	$(BIN)/ruff check chatsite chat tests bench
	$(BIN)/python manage.py makemigrations --check --dry-run >/dev/null
	.ci/validate-deploy
	$(BIN)/pytest
	.ci/postgres-suite $(BIN)/python

# After changing a user-facing string: extract every string (templates, Python, the page's scripts)
# into locale/zh_Hans/*.po, translate the new entries there, then compile the .mo files (committed).
MESSAGES_IGNORE := --ignore=.venv --ignore=tests --ignore=bench --ignore=staticfiles --ignore="chat/static/chat/vendor/*"
messages: $(VENV)/.test-deps
	$(BIN)/python manage.py makemessages -l zh_Hans --no-obsolete --no-location $(MESSAGES_IGNORE)
	$(BIN)/python manage.py makemessages -l zh_Hans -d djangojs --no-obsolete --no-location $(MESSAGES_IGNORE)
	$(BIN)/python manage.py compilemessages -l zh_Hans --ignore=.venv

lint: $(VENV)/.test-deps
	$(BIN)/ruff check chatsite chat tests bench
	$(BIN)/ruff format --check chatsite chat tests bench

bench-frames: $(VENV)/.test-deps
	.ci/ensure-redis
	$(BIN)/python -m bench.frames --tabs 4 --tokens 600 --rate 60

# The relay benchmark behind docs/BENCHMARKS.md: every run, then the plot (about 10 minutes).
bench: $(VENV)/.test-deps
	.ci/ensure-redis
	$(BIN)/python -m bench.relay --matrix
	$(BIN)/python -m bench.plot
	$(BIN)/python -m bench.report

# The soak behind docs/RELIABILITY.md: a mixed load, a Redis restart and a daphne crash; then whether
# anything leaked (MINUTES of load, then about a minute of set-up and checks).
MINUTES ?= 10
soak: $(VENV)/.test-deps
	.ci/ensure-redis
	$(BIN)/python -m bench.soak --minutes $(MINUTES)
