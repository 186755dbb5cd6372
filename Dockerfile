# syntax=docker/dockerfile:1
# The v4only image: `v4only serve` by default; every other command too (`v4only certs`, `review`, ...).
#   docker build -t v4only:0.1.0 .
# tests/test_dockerfile.py replays the build stage's install steps in a fresh venv (no container engine
# needed), so a requirements.lock that misses a package fails the tests, not a deployment.

# One pinned base for both stages: the venv's interpreter path must be the same in each.
# Pin the digest too when you publish (docker buildx imagetools inspect python:3.11.14-slim-bookworm).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/v4only
ENV PATH=/opt/v4only/bin:$PATH
WORKDIR /src
# Dependencies before the code: this layer is rebuilt only when the lock changes. Exact versions, no
# resolver (--no-deps: the lock lists every transitive dependency), wheels only (no compiler in the image).
COPY requirements.lock ./
RUN pip install --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN pip install --no-deps . \
 && pip check \
 && v4only --help > /dev/null \
 && pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="v4only" \
      org.opencontainers.image.description="Mutating admission webhook: IPv6 off where the kubelet allows it, an IPv4 fallback where it does not" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/v4only/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Only the venv crosses over: no build tree, no pip cache, no compiler (the slim base has none).
COPY --from=build /opt/v4only /opt/v4only
# Numeric, so `runAsNonRoot` can verify it without an /etc/passwd entry (Kubernetes checks the number).
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["v4only"]
CMD ["serve"]
