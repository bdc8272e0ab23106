# The two commands (see README): `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test install install-dev migrate seed lint check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs are stamped so repeated runs are instant; the lock pins every transitive version.
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The embedded default in local-demo mode: DEBUG on (plain-HTTP cookies on 127.0.0.1).
run: export DEBUG ?= 1
run: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py seed_demo --if-empty
	@# The embedded default's system of record is files: adjustments are exported as CSV for import.
	echo '{"layout": "netsuite", "subsidiary": "Demo", "adjustment_account": "Inventory Adjustments"}' \
		| $(BIN)/python manage.py backend_connect --org demo --kind file --name files --if-missing
	$(BIN)/python manage.py collectstatic --noinput -v0
	@echo ""
	@echo "Cyclecount is starting on http://127.0.0.1:$(PORT)/  (admin: /admin/, API docs: /api/docs/)"
	@echo "Log in with a demo user from var/demo-credentials.txt (username password):"
	@sed 's/^/    /' var/demo-credentials.txt 2>/dev/null || echo "    (run: $(BIN)/python manage.py seed_demo --password CHOOSE-ONE)"
	@echo "Ctrl-C stops web, worker and beat."
	@echo ""
	PORT=$(PORT) $(BIN)/honcho start -f Procfile

test: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
