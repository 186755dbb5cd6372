"""Plain-text rendering shared by `doctor`, `doctor --webhook` and `patch`."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded, no line ends in spaces."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers) - 1)]
    return [
        "  ".join([*(str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), str(row[-1])])
        .rstrip()
        for row in [headers, *rows]
    ]


def problems_block(problems: Sequence[str], *, none: str) -> list[str]:
    """The closing block of a report: `PROBLEMS (n)` and a line each, or the one line saying all is well."""
    if not problems:
        return [none]
    return [f"PROBLEMS ({len(problems)})", *(f"- {p}" for p in problems)]
