"""The Dockerfile and its build context, read as text: the shape every image build relies on.

The build itself (buildah, through `make image`) and the image it makes, run as the manifests run it, are
tests/test_image.py: it replaced the replay of the build stage's RUN steps in a venv that used to live here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
VENV_IN_IMAGE = "/opt/v4only"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    parsed = []
    for line in logical:
        word, _, rest = line.partition(" ")
        parsed.append((word.upper(), rest.strip()))
    return parsed


def build_stage(text: str) -> list[tuple[str, str]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in instructions(text):
        if word == "FROM":
            stages.append([(word, rest)])
        elif stages:
            stages[-1].append((word, rest))
    (build,) = [s for s in stages if re.search(r"\bAS build$", s[0][1], re.IGNORECASE)]
    return build


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    parsed = instructions(text)
    args = dict(rest.split("=", 1) for word, rest in parsed if word == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    froms = [rest for word, rest in parsed if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    final = parsed[[i for i, (word, _) in enumerate(parsed) if word == "FROM"][-1] :]
    final_words = [word for word, _ in final]
    assert "RUN" not in final_words, "the final stage only copies the venv: no compilers, no pip runs"
    assert ("USER", "65532:65532") in final
    assert ("ENTRYPOINT", '["v4only"]') in final and ("CMD", '["serve"]') in final
    assert ("COPY", f"--from=build {VENV_IN_IMAGE} {VENV_IN_IMAGE}") in final
    # Dependencies are installed from the lock before the code is copied (layer caching).
    build = build_stage(text)
    steps = [f"{word} {rest}" for word, rest in build]
    lock_install = next(i for i, s in enumerate(steps) if "-r requirements.lock" in s)
    code_copy = next(i for i, s in enumerate(steps) if s.startswith("COPY webhook"))
    assert lock_install < code_copy
    assert "--no-deps" in steps[lock_install]
    assert any(re.match(r"RUN pip install --no-deps( --no-compile)? \. ", s) for s in steps[code_copy:])
    # Nothing installs at run time, and the final stage copies the venv as the build left it.
    assert "pip uninstall --yes pip setuptools" in steps[-1]
    assert ("ENV", "PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1") in [
        (w, " ".join(r.split())) for w, r in build
    ]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    copied = {"requirements.lock", "pyproject.toml", "README.md", "webhook/"}
    assert {line[1:] for line in lines if line.startswith("!")} == copied
