"""Shared by every report page: number formatting, Markdown tables, the escaping of user text
(names from run tables and configs, warnings, units) into Markdown and figures, figure saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.errors import printable
from mixscale.fileio import atomic_write_bytes


class Markdown(str):
    """Text already in Markdown, its user parts escaped by ``md``: ``markdown_table`` and
    ``md`` take it as it is. Every other string is user text and is escaped."""


# Characters that are Markdown inside a line or a table cell (CommonMark, GFM, Python-Markdown
# with its table extension). Backslash escapes where every renderer honours them; character
# references where one does not (Python-Markdown shows "\~" as is) or where HTML is the danger.
_BACKSLASHED = frozenset("\\`*[]|{}")
_REFERENCES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "~": "&#126;"}


def md(value: Any) -> Markdown:
    """User text as literal Markdown inside a line or a table cell: no HTML (``<script>``), no
    link (``[x](javascript:...)``), no emphasis or code span, no table cell boundary (``|``), no
    line break (it and every control character are shown as ``\\n``, ``\\x1b``, ...). Reads
    the same in the raw file: a ``_`` inside a word (``wiki_en``) is not emphasis anywhere and
    stays bare; ``$`` is not Markdown (only some renderers' math extension) and stays, so a
    cost unit of ``$`` reads as itself. Never for the start of a line: every report line starts
    with the package's own text."""
    if isinstance(value, Markdown):
        return value
    text = printable(str(value))
    out = []
    for i, c in enumerate(text):
        if c in _REFERENCES:
            out.append(_REFERENCES[c])
        elif c in _BACKSLASHED or (c == "_" and not _inside_a_word(text, i)):
            out.append("\\" + c)
        else:
            out.append(c)
    return Markdown("".join(out))


def _inside_a_word(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def bold(value: Any) -> Markdown:
    return Markdown(f"**{md(value)}**")


def interval(low: float, high: float, spec: str = ".4g") -> Markdown:
    """``[low, high]``: the package's own brackets, no link."""
    return Markdown(f"[{low:{spec}}, {high:{spec}}]")


def joined(values: Any, separator: str = ", ") -> Markdown:
    """User names joined by the package's separator (``", "``, ``" > "``, ``" / "``)."""
    return Markdown(separator.join(md(v) for v in values))


def figure_text(value: Any) -> str:
    """User text on a figure (legend, title, tick): matplotlib reads a pair of ``$`` as
    mathtext (and fails on bad TeX); a control character would be drawn as a box."""
    return printable(str(value)).replace("$", r"\$")


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def cell(value: Any) -> str:
    """A table cell: numbers formatted, Markdown as it is, anything else escaped."""
    if isinstance(value, Markdown):
        return value
    if value is None or isinstance(value, int | float):
        return fmt(value)
    return md(fmt(value))


def markdown_table(header: list[Any], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
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
