# syntax=docker/dockerfile:1
# The v4only image: `v4only serve` by default; every other command too (`v4only certs`, `review`, ...).
#   make image     (docker, podman or buildah; tags v4only:VERSION, the manifests' image, and writes dist/)
# tests/test_image.py builds it with buildah through `make image` and runs it as the manifests run it.

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
# No bytecode yet (--no-compile): see the last step. kubernetes ships an asyncio client (kubernetes/aio, 42 MB)
# that v4only never imports; the sync client does not need it (tests/test_image.py imports every module).
COPY requirements.lock ./
RUN pip install --no-deps --no-compile --only-binary=:all: -r requirements.lock \
 && rm -rf /opt/v4only/lib/python3*/site-packages/kubernetes/aio
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# Bytecode for exactly the modules the CLI loads (`--help` builds every command's parser), as listed by
# `python -v` while no .pyc exists (the script, not `-m`: /src must not shadow the installed package). The
# read-only root cannot cache bytecode at run time; all of site-packages would add ~40 MB nothing loads.
# Hash-checked: layer tars round file times to whole seconds, voiding about half of timestamp-checked .pyc.
# pip and setuptools leave: nothing installs at run time.
RUN pip install --no-deps --no-compile . \
 && pip check \
 && v4only --help > /dev/null \
 && python -v /opt/v4only/bin/v4only --help 2>&1 >/dev/null \
    | sed -n 's|^# code object from \(/opt/v4only/.*\.py\)$|\1|p' \
    | python -m compileall -q --invalidation-mode checked-hash -i - \
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
