"""The Dockerfile's build stage, replayed without a container engine.

The build stage's COPY and RUN instructions are read from the Dockerfile itself and run, in order, in a fresh
venv standing in for /opt/v4only: `pip install --no-deps -r requirements.lock`, then `pip install --no-deps .`,
`pip check` and `v4only --help`. So a lock that misses a transitive dependency, or a module that imports a
package the lock lacks, fails here and not in a cluster. It needs the package index pip is configured with;
a missing requirements.lock fails (it is never skipped). Takes about a minute.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert any(s.startswith("RUN pip install --no-deps .") for s in steps[code_copy:])
    assert ("ENV", "PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1") in [
        (w, " ".join(r.split())) for w, r in build
    ]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    copied = {"requirements.lock", "pyproject.toml", "README.md", "webhook/"}
    assert {line[1:] for line in lines if line.startswith("!")} == copied


@pytest.mark.timeout(900)
def test_build_stage_installs_and_runs(tmp_path: Path) -> None:
    assert (ROOT / "requirements.lock").is_file(), "requirements.lock is missing: the image cannot be built"
    context = tmp_path / "src"
    context.mkdir()
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    ran: list[str] = []
    for word, rest in build_stage(DOCKERFILE.read_text())[1:]:
        if word == "ENV":
            for part in shlex.split(rest.replace(VENV_IN_IMAGE, str(venv))):
                name, value = part.split("=", 1)
                env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value)
        elif word == "COPY":
            *sources, destination = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), rest
            target = context / destination
            for source in sources:
                origin = ROOT / source
                assert origin.exists(), f"COPY {source}: missing from the repository"
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif word == "RUN":
            command = rest.replace(VENV_IN_IMAGE, str(venv))
            if command.startswith("python -m venv"):
                command = command.replace("python", shlex.quote(sys.executable), 1)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            assert result.returncode == 0, f"RUN {rest}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            ran.append(command)
        elif word not in {"WORKDIR", "ARG", "LABEL"}:
            raise AssertionError(f"the build stage uses {word}, which this test does not replay")
    assert any("-r requirements.lock" in command for command in ran)

    # The installed package (not this checkout) answers, and every module imports with only the lock installed.
    help_run = subprocess.run(
        [str(venv / "bin" / "v4only"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: v4only" in help_run.stdout
    probe = (
        "import importlib, pkgutil, webhook, sys\n"
        "assert webhook.__file__.startswith(sys.prefix), webhook.__file__\n"
        "for m in pkgutil.walk_packages(webhook.__path__, 'webhook.'):\n"
        "    if not m.name.endswith('.__main__'):\n"
        "        importlib.import_module(m.name)\n"
    )
    imports = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert imports.returncode == 0, imports.stderr
