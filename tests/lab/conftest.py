"""Fixtures of the remedy lab (tests/lab/harness.py), for its own tests and for scenarios built on it.

- `lab_tools` (session): uv, the index's wheels, the probes (tests/lab/tools.py). Fails with one line when
  namespaces cannot be made here.
- `lab` (per test): a fresh Lab with the default state (F1's trap on, AAAA answered, pod resolv.conf the
  kubelet's with the trap domain), removed afterwards.
- `remedy_run` (session): every case of tests/lab/matrix.py measured once; printed at the end of the run.

V4ONLY_SKIP_LAB=1 leaves every test marked `lab` out (skipped, said in the summary); nothing else does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.lab import matrix, netns, tools
from tests.lab.harness import Lab

SKIP_VARIABLE = "V4ONLY_SKIP_LAB"
_RUN = pytest.StashKey[matrix.Run]()
_TOOLS_SECONDS = pytest.StashKey[float]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(SKIP_VARIABLE) != "1":
        return
    skip = pytest.mark.skip(reason=f"{SKIP_VARIABLE}=1: the remedy lab is left out")
    for item in items:
        if item.get_closest_marker("lab"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_tools(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tools.Tools:
    why = ""
    try:
        netns.check_can_make_namespaces()
    except netns.LabUnavailable as exc:
        why = str(exc)
    if why:  # failed outside the except block: one line, no chained traceback
        pytest.fail(f"{why} ({SKIP_VARIABLE}=1 leaves the lab out)", pytrace=False)
    started = time.monotonic()
    prepared = tools.prepare(tmp_path_factory.mktemp("lab-tools"))
    request.config.stash[_TOOLS_SECONDS] = time.monotonic() - started
    return prepared


@pytest.fixture
def lab(lab_tools: tools.Tools) -> Iterator[Lab]:
    with Lab(lab_tools) as made:
        yield made


@pytest.fixture(scope="session")
def remedy_run(request: pytest.FixtureRequest, lab_tools: tools.Tools) -> matrix.Run:
    run = matrix.measure(lab_tools, matrix.all_cases())
    request.config.stash[_RUN] = run
    return run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is None:
        return
    terminalreporter.section("remedy lab: measured by this run")
    terminalreporter.write_line(matrix.render_all(run))
    tools_seconds = config.stash.get(_TOOLS_SECONDS, 0.0)
    terminalreporter.write_line(f"tools (uv, wheels, probes): {tools_seconds:.1f} s")
