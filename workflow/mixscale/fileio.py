"""Atomic file output (temp file + rename) and tolerant readers that raise InputError."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixscale.errors import InputError, environment_errno


@contextmanager
def naming_the_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """A write that fails for want of space or permission raises an OSError naming ``path``,
    the file the user asked for (libraries wrap the OSError, or name a temporary file)."""
    try:
        yield
    except Exception as exc:
        code = environment_errno(exc)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from exc


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text so that readers see either the old file or the complete new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes so that readers see either the old file or the complete new one."""
    target = Path(path)
    with naming_the_file(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``path``, then swap it in. Readers see the
    old folder or the complete new one; if building fails the old one stays and the temporary
    is removed. (The old folder is renamed aside before the swap, so a crash between the two
    renames leaves it recoverable as ``<name>.old``, never half-deleted.)"""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with naming_the_file(target):
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    try:
        with naming_the_file(target):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(target.name + ".old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None: JSON has no NaN, and a silent NaN is a bug magnet."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return _json_safe(value.tolist())
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str], fix: str = "fix or regenerate the file") -> Any:
    """The JSON value of a file; an empty, truncated, not-UTF-8 or invalid file raises an
    InputError with ``fix`` (how to regenerate it). ``mixscale.shapes.read_kind`` checks what
    it holds: call that, not this."""
    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "", _not_a_file(p), "check the path")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(str(p), "", "not UTF-8 text (damaged?)", fix) from exc
    if not text.strip():
        raise InputError(str(p), "", "empty file", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if _unclosed(text):
            raise InputError(str(p), "", "invalid JSON: truncated (it stops mid-way)", fix) from exc
        raise InputError(str(p), f"line {exc.lineno}", f"invalid JSON ({exc.msg})", fix) from exc
    except RecursionError as exc:
        raise InputError(str(p), "", "JSON nested too deeply", fix) from exc


def _not_a_file(p: Path) -> str:
    """Why ``p`` cannot be read as a file (a FIFO or device is never opened: it could block)."""
    if p.is_dir():
        return "a folder, not a file"
    return "not a regular file" if p.exists() else "file not found"


def _unclosed(text: str) -> bool:
    """Whether JSON text ends inside a string, object or list: cut off, not mistyped."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
    return in_string or depth > 0


def read_tsv_rows(path: str | os.PathLike[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a tab-separated file. Blank lines are skipped; lines starting with
    '#' before the header are comments. After the header every other line is a row, so a run
    id may start with '#' (a comment there would be a row: one line says so)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "", _not_a_file(p), "check the path")
    try:
        text = p.read_text(encoding="utf-8-sig")  # spreadsheets write a byte-order mark
    except UnicodeDecodeError as exc:
        raise InputError(str(p), "", "not UTF-8 text", "pass a tab-separated text file") from exc
    lines = text.splitlines()
    top = next((i for i, ln in enumerate(lines) if ln.strip() and not _comment(ln)), None)
    if top is None:
        raise InputError(str(p), "", "empty table", "add a header line and one row per run")
    header = [h.strip() for h in lines[top].split("\t")]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(str(p), f"column {dup[0]}", "duplicate column", "keep one column each")
    rows = []
    for number, line in enumerate(lines[top + 1 :], start=top + 2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != len(header):
            if _comment(line):
                raise InputError(
                    str(p),
                    f"line {number}",
                    "a '#' comment after the header",
                    "move comments above the header line (below it every line is a row)",
                )
            raise InputError(
                str(p),
                f"line {number}",
                f"has {len(cells)} fields, header has {len(header)}",
                "separate fields with single tabs",
            )
        rows.append(cells)
    return header, rows


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def write_tsv(path: str | os.PathLike[str], header: list[str], rows: list[list[Any]]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return repr(v)
        return str(v)

    lines = ["\t".join(header)] + ["\t".join(fmt(v) for v in row) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def parse_number(source: str, row: int, column: str, text: str) -> float:
    """A finite number from a table cell, or an InputError naming the row and column."""
    try:
        value = float(text)
    except ValueError as exc:
        raise InputError(
            source, f"row {row}, column {column}", f"'{text}' is not a number", "write a number"
        ) from exc
    if not math.isfinite(value):
        raise InputError(
            source,
            f"row {row}, column {column}",
            f"value is {text} (not finite)",
            "rerun or drop that run; NaN/inf usually means the run diverged",
        )
    return value
