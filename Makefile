# The two commands a newcomer needs: `make serve` (the webhook, no cluster) and `make test` (everything CI runs).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test bench

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/v4only serve --dev

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy webhook
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/admission.py
