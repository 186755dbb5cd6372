# The two commands a newcomer needs: `make serve` (the webhook, no cluster) and `make test` (everything CI runs).
# `make image` builds the container image the manifests name (README, "Get the image into your cluster").
# `make lab` runs the remedy lab alone and prints the matrix it measured (README, "Which remedy cures what").
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The manifests name exactly this (tests/test_manifests.py holds them, and pyproject's version, to it).
# Unqualified on purpose: an archive tagged v4only:X imports into containerd as docker.io/library/v4only:X,
# which is what the kubelet looks for when a pod names v4only:X.
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE := v4only:$(VERSION)
ARCHIVE := dist/v4only-$(VERSION).tar
# Overrides: ENGINE=docker|podman|buildah; PYTHON_IMAGE=a base of your own (a mirror, a digest).
ENGINE ?=
PYTHON_IMAGE ?=

.PHONY: serve test bench image lab

# The remedy lab's tools (the uv binary, the index's wheels, the musl 1.2.5 probe built with zig) fetched and
# built into ~/.cache/v4only/lab before pytest starts, so a cold cache (40 s of CPU, once per machine)
# is paid outside any test's timeout; the lab builds them itself too when run by pytest alone.
LAB_TOOLS := $(if $(filter 1,$(V4ONLY_SKIP_LAB)),@true,$(BIN)/python -m tests.lab.tools)

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Flags for the demo: make serve ARGS='--assume forbidden --namespace-labels v4only.io/inject=enabled'
serve: $(STAMP)
	$(BIN)/v4only serve --dev $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy webhook
	$(LAB_TOOLS)
	$(BIN)/pytest

# root: the lab makes network namespaces (make test runs it too)
lab: $(STAMP)
	$(LAB_TOOLS)
	$(BIN)/pytest -q -m lab tests/lab

bench: $(STAMP)
	$(BIN)/python bench/admission.py

# The archive carries one tag, which containerd (MicroK8s, k3s, kind) stores as docker.io/library/v4only:X:
# docker save writes v4only:X. podman and buildah name a local build localhost/v4only:X and would write that
# name too, so they also tag docker.io/library/v4only:X and push that to the archive.
image:
	@engine='$(ENGINE)'; \
	if [ -z "$$engine" ]; then \
		if docker info >/dev/null 2>&1; then engine=docker; \
		elif command -v podman >/dev/null; then engine=podman; \
		elif command -v buildah >/dev/null; then engine=buildah; \
		else echo "make image: no container engine found: install docker (with its daemon running), podman or buildah" >&2; exit 1; fi; \
	fi; \
	set -ex; \
	$$engine build -t $(IMAGE) $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) .; \
	mkdir -p $(dir $(ARCHIVE)); rm -f $(ARCHIVE); \
	if [ $$engine = docker ]; then docker save -o $(ARCHIVE) $(IMAGE); \
	else $$engine tag $(IMAGE) docker.io/library/$(IMAGE); \
		$$engine push docker.io/library/$(IMAGE) docker-archive:$(ARCHIVE):$(IMAGE); fi
	@echo "image $(IMAGE): $(ARCHIVE)"
