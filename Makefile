# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
# Development mode for the commands a newcomer runs here (DEBUG defaults to
# False everywhere else); a DEBUG already in the environment wins.
DEV := DEBUG=$${DEBUG:-True}
HOST ?= 127.0.0.1
PORT ?= 8000
# Every worker shares the machine's cores with the test database.
PYTEST_WORKERS ?= 2

.PHONY: install run run-prod test test-fast lint format bench messages lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

# Installs the exact versions of requirements-dev.lock (runtime and dev
# dependencies, each checked against its hash), then compiles the
# translations. Production installs requirements.lock the same way.
$(VENV)/.installed: requirements-dev.lock | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $@

# After a change to the dependencies in pyproject.toml: pins what it now
# asks for, keeping every other pin. `make lock UPGRADE=1` moves every pin
# to the newest release pyproject.toml allows. Then `make test`, and commit
# both files.
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock: $(PY)
	$(PY) -m pip install --quiet pip-tools
	$(PY) -m piptools compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml
	$(PY) -m piptools compile $(LOCK_FLAGS) --extra dev -o requirements-dev.lock pyproject.toml

install: $(VENV)/.installed
	@if command -v msgfmt >/dev/null; then \
		$(DEV) $(MANAGE) compilemessages --ignore '.venv' --ignore 'var' -v 0; \
	else \
		echo "msgfmt (GNU gettext) not found: using the committed .mo files"; \
	fi

# Migrates (roles come with the migrations), loads the demo data (once; a
# refusal is shown and the site starts anyway), then serves the site on
# http://$(HOST):$(PORT) and runs the django-q2 worker beside it.
run: install
	@mkdir -p var/mail
	$(DEV) $(MANAGE) migrate --no-input
	-$(DEV) $(MANAGE) load_demo_data
	@if [ -n "$$SUPERUSER_EMAIL" ] || grep -qs '^SUPERUSER_EMAIL=.' .env; then \
		$(DEV) $(MANAGE) create_custom_super_user --no-input; fi
	@echo "Site: http://$(HOST):$(PORT)/  Mail is written to var/mail/ unless EMAIL_URL is set."
	@trap 'kill 0' EXIT INT TERM; export $(DEV); \
		$(MANAGE) qcluster & \
		$(MANAGE) runserver $(HOST):$(PORT)

# Production mode on this machine: DEBUG=False behind gunicorn with the
# manifest static storage, plus the worker. Needs SECRET_KEY and
# ALLOWED_HOSTS (in .env or the environment); plain HTTP on loopback, so
# the HTTPS redirect and secure cookies are off here only.
run-prod: install
	@mkdir -p var/mail
	DEBUG=False SECURE_SSL_REDIRECT=False SESSION_COOKIE_SECURE=False CSRF_COOKIE_SECURE=False \
		$(MANAGE) collectstatic --no-input -v 0
	DEBUG=False $(MANAGE) migrate --no-input
	@trap 'kill 0' EXIT INT TERM; \
		export DEBUG=False SECURE_SSL_REDIRECT=False SESSION_COOKIE_SECURE=False CSRF_COOKIE_SECURE=False; \
		$(MANAGE) qcluster & \
		$(VENV)/bin/gunicorn project.wsgi --bind $(HOST):$(PORT) --workers 3 --access-logfile -

# Tests marked solo judge how sending adapts to a server's timing: they run
# after the others, alone, so no other test shares the cores meanwhile (5:
# none of them was selected).
test: install lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not solo" $(PYTEST_ARGS)
	$(PY) -m pytest -m solo $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Everything but the tests that start processes or a browser (marked slow).
test-fast: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow and not solo" $(PYTEST_ARGS)
	$(PY) -m pytest -m "solo and not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench $(BENCH)

# Refreshes the Russian catalogue after strings change (needs GNU gettext).
messages: install
	$(DEV) $(MANAGE) makemessages -l ru --ignore '.venv/*' --ignore 'var/*' --no-obsolete
	$(DEV) $(MANAGE) compilemessages --ignore '.venv' --ignore 'var'

clean:
	rm -rf $(VENV) var .pytest_cache
