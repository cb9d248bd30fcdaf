"""Shared by every report page: number formatting, Markdown tables, figure saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.fileio import naming_the_file


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines


def save_figure(fig, png: Path) -> None:
    import matplotlib.pyplot as plt

    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    try:
        with naming_the_file(png):
            fig.savefig(tmp, dpi=110)
            tmp.replace(png)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves nothing behind
