"""Chronicle-like projects and the "images" made of them, built as an image build does, while DNS is healthy.

Every image is a directory: pyproject.toml, uv.lock (locked against the lab's index) and, for most kinds, a
.venv synced at build time. Images are built in the router namespace, whose /etc/hosts names the index:
the builder's DNS is never the pod's, so an image can be built whatever the lab's DNS server is set to.
Builds share one uv cache (warm wheels); a pod starts with an empty cache of its own, as a container does.

Kinds (remedy-lab.md: the F1 matrix, and "What UV_NO_SYNC=1 does to real images"):
- SYNCED_NO_DEV: dependency six, dev group tomli; `uv sync --no-dev`. `uv run` syncs the default groups
  (dev included), so it goes to the index at start.
- COPIED_AFTER_SYNC: a package (setuptools build backend), dependency six; `uv sync`, then a pyproject.toml
  newer than the install (what `COPY . .` after the sync step gives): `uv run` rebuilds the editable project
  and fetches setuptools.
- SYNCED_WITHOUT_EXTRA: dependency six, extra `toml` = tomli; `uv sync` (no extra); started with
  `uv run --extra toml`.
- UNSYNCED: locked, no .venv; `uv run` installs everything at start (the user's current workers).
"""

from __future__ import annotations

import os
import shutil
import time
from enum import Enum
from pathlib import Path

from tests.lab.harness import INDEX_URL, Lab, Ran

INDEX = f'[[tool.uv.index]]\nname = "lab"\nurl = "{INDEX_URL}"\ndefault = true\n'


class Image(Enum):
    SYNCED_NO_DEV = "synced --no-dev"
    COPIED_AFTER_SYNC = "synced, then COPY . ."
    SYNCED_WITHOUT_EXTRA = "synced without extra"
    UNSYNCED = "no venv"


def pyproject(image: Image) -> str:
    text = '[project]\nname = "chronicle"\nversion = "0.1.0"\nrequires-python = ">=3.9"\ndependencies = ["six"]\n'
    if image is Image.SYNCED_WITHOUT_EXTRA:
        text += '\n[project.optional-dependencies]\ntoml = ["tomli"]\n'
    if image in (Image.SYNCED_NO_DEV, Image.UNSYNCED):
        text += '\n[dependency-groups]\ndev = ["tomli"]\n'
    if image is Image.COPIED_AFTER_SYNC:
        text += '\n[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        text += '\n[tool.setuptools]\npy-modules = ["chronicle"]\n'
    return text + "\n" + INDEX


def start_command(image: Image) -> list[str]:
    """How the pod starts Chronicle: `uv run` (with the extra the image was synced without)."""
    module = "tomli" if image is Image.SYNCED_WITHOUT_EXTRA else "six"
    extra = ["--extra", "toml"] if image is Image.SYNCED_WITHOUT_EXTRA else []
    return ["run", *extra, "python", "-c", f"import {module}; print('chronicle started')"]


def build_env(lab: Lab) -> dict[str, str]:
    return lab.env({"UV_CACHE_DIR": str(lab.tools.build_cache), "UV_LINK_MODE": "copy"})


def build(lab: Lab, image: Image, dest: Path) -> Path:
    """The image in `dest` (a new directory), built in the router namespace with healthy DNS."""
    dest.mkdir(parents=True)
    (dest / "pyproject.toml").write_text(pyproject(image))
    if image is Image.COPIED_AFTER_SYNC:
        (dest / "chronicle.py").write_text("import six\n")
    steps = [["lock"]]
    if image is Image.SYNCED_NO_DEV:
        steps.append(["sync", "--no-dev"])
    elif image is not Image.UNSYNCED:
        steps.append(["sync"])
    for step in steps:
        ran = uv(lab, step, cwd=dest, namespace=lab.router)
        assert ran.returncode == 0, f"building {image.value}: uv {' '.join(step)}\n{ran.output}"
    if image is Image.COPIED_AFTER_SYNC:
        later = time.time() + 60
        os.utime(dest / "pyproject.toml", (later, later))
    return dest


def uv(lab: Lab, args: list[str], *, cwd: Path, namespace: str) -> Ran:
    return lab.run([str(lab.tools.uv), *args], env=build_env(lab), cwd=cwd, namespace=namespace, timeout=60)


def remove(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
