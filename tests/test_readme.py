"""The README's commands run as written from a clean clone (issue 15): every `v4only review` line, and the
kustomization it tells you to write, built by the real `kubectl kustomize`."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.helpers import ensure_kubectl

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def _review_commands() -> list[str]:
    commands = []
    for block in _blocks("sh"):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command.startswith(".venv/bin/v4only review"):
                commands.append(command)
    return commands


def test_the_readme_shows_review_commands() -> None:
    assert len(_review_commands()) >= 3


@pytest.mark.parametrize("command", _review_commands())
def test_every_review_command_in_the_readme_runs(command: str) -> None:
    executable = ROOT / ".venv" / "bin" / "v4only"
    assert executable.exists(), "make test creates .venv/"
    done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


KUSTOMIZATIONS = [textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)```", README, re.S)
                  if "my-v4only/kustomization.yaml" in b]


def test_the_readme_shows_both_kustomizations() -> None:
    assert len(KUSTOMIZATIONS) == 2


@pytest.mark.parametrize("block", KUSTOMIZATIONS, ids=["registry", "patcher"])
def test_every_kustomization_in_the_readme_builds(tmp_path: Path, block: str) -> None:
    (tmp_path / "v4only").symlink_to(ROOT)
    (tmp_path / "my-v4only").mkdir()
    (tmp_path / "my-v4only" / "kustomization.yaml").write_text(block)
    kubectl = ensure_kubectl()
    built = subprocess.run([kubectl, "kustomize", str(tmp_path / "my-v4only")], capture_output=True, text=True,
                           timeout=60)
    assert built.returncode == 0, built.stderr
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(built.stdout) if o}
    container = objects[("Deployment", "v4only")]["spec"]["template"]["spec"]["containers"][0]
    if "components" in block:
        assert ("ClusterRole", "v4only-patcher") in objects
        assert container["args"][-1] == "--reconcile" and "--publish-node-labels" in container["args"]
    else:
        assert container["image"] == "registry.example.com/v4only:0.1.0"
