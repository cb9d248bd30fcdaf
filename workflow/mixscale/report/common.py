"""Shared by every report page: number formatting, Markdown tables, figure saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.fileio import atomic_write_bytes


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


def save_figure(fig, path: Path) -> None:
    """The figure as the file ``path`` names (PNG, or another format matplotlib knows by the
    suffix: .pdf, .svg), written like every output (``fileio.atomic_write_bytes``)."""
    import io

    import matplotlib.pyplot as plt

    try:
        kind = path.suffix.lstrip(".").lower()
        if kind not in fig.canvas.get_supported_filetypes():
            kind = "png"
        buffer = io.BytesIO()
        fig.savefig(buffer, format=kind, dpi=110)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
