"""Every row of remedy-lab.md's tables, measured in the lab with the real uv, and compared with the result
recorded there: F1 and its remedies, UV_NO_SYNC on three kinds of image, a cluster DNS that blocks AAAA,
the cost of each DNS remedy, F2, and the summary "which remedy cures what" (README).

The whole matrix is measured once per session (the `remedy_run` fixture: about 20 s, concurrently); each
cell is one test here, so a failure names its table, row and column and shows the command's output.
"""

from __future__ import annotations

import re

import pytest

from tests.lab import matrix
from tests.lab.harness import INDEX_IPV6, ROUTER_IP

pytestmark = pytest.mark.lab

CELLS = [(table, cell) for table in matrix.tables() for cell in table.cells]


def cell_id(table: matrix.Table, cell: matrix.Cell) -> str:
    return re.sub(r"[^A-Za-z0-9.:=_-]+", "_", f"{table.key}|{cell.row}|{cell.column}").strip("_")


@pytest.mark.parametrize(("table", "cell"), CELLS, ids=[cell_id(t, c) for t, c in CELLS])
def test_cell_reproduces_remedy_lab(remedy_run: matrix.Run, table: matrix.Table, cell: matrix.Cell) -> None:
    measured = remedy_run.results[cell.case]
    problems = list(matrix.mismatches(cell.expect, measured))
    assert not problems, (
        f"{table.title} / {cell.row} / {cell.column}: {'; '.join(problems)}\n"
        f"$ {' '.join(measured.ran.argv)}\n{measured.ran.output[-3000:]}"
    )


def test_f1_is_the_trap_domain_answering_nodata(remedy_run: matrix.Run) -> None:
    """The failing lookup is the search-list expansion under the trap, answered NOERROR with no records; the
    name itself has both records (so the sysctl, which changes nothing musl asks, cannot help)."""
    none = next(c for t, c in CELLS if t.key == "f1" and c.row == "none" and c.case.client is matrix.Client.GLIBC)
    assert remedy_run.results[none.case].detail == f"{ROUTER_IP}, {INDEX_IPV6}"


def test_the_hang_bound_is_a_lost_syn_not_a_slow_machine(remedy_run: matrix.Run) -> None:
    """F2 without the sysctl: the probes printed both addresses, IPv6 first (a global source address sorts it
    first), and never a connect result: they were still waiting on the IPv6 SYN when killed."""
    for client in (matrix.Client.MUSL, matrix.Client.GLIBC):
        case = matrix.Case(matrix.F2, matrix.Resolv.NODE, client, connect=True)
        ran = remedy_run.results[case].ran
        assert ran.timed_out
        assert ran.stdout.splitlines() == [f"addr {INDEX_IPV6}", f"addr {ROUTER_IP}"], ran.output
        cured = remedy_run.results[matrix.Case(matrix.F2_SYSCTL, matrix.Resolv.NODE, client, connect=True)].ran
        assert cured.stdout.splitlines() == [f"addr {ROUTER_IP}", f"addr {INDEX_IPV6}", f"connected {ROUTER_IP}"]
