"""One small structural check for the files mixscale writes and reads back.

A finished output can be truncated (a full disk, a killed copy), emptied, edited (a null
where a number was, a key removed, another domain added) or hold a NaN written as null.
Whatever reads it must stop with one line naming the file, the field and how to regenerate
it: not a traceback deep in a fit or a report, and never a silently wrong result. So every
such file has a kind (``mixscale.kinds``): the fields its readers use (others are not checked,
so a writer may add fields freely) and how to regenerate it; a reader reads through
``read_kind`` with the kind or its own view of it (the optional fields it needs).

Shapes: ``NUMBER`` (finite int or float), ``INTEGER``, ``TEXT``, ``NAME`` (a domain, run or
source name: the config's name pattern), ``BOOL``, ``NUMERIC_TEXT``; a dict
``{"key": shape, "key?": shape}`` (``?``: optional); ``Map(value)`` (name -> value, not
empty); ``List(item)``; ``Nullable(shape)``; ``Where(shape, test, problem)`` (a rule across
fields). Maps with the same ``keyset`` hold the same domains, within a file and across the
files one reader gathers (``read_kinds``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixscale.errors import InputError
from mixscale.fileio import read_json, read_tsv_rows

# The config schema's name pattern ($defs.name in config/schema.yaml; a test keeps the two
# equal): domain, run and source names become file names, wildcards and report cells.
NAME_PATTERN = "^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_-])?$"
NAME_RULE = "letters, digits, '_', '-' and '.', not starting or ending with '.'"
# Run ids (and seeds, steps) may hold '+' too: the plan's ids carry a target such as 3e+07
# (the workflow's `run` wildcard).
ID_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.+-]*$"
ID_RULE = "letters, digits, '_', '-', '+' and '.', not starting with '.'"
_NAME, _ID = re.compile(NAME_PATTERN), re.compile(ID_PATTERN)
MAX_NAME = 200  # longer names are not names (and would flood a one-line error)


def is_name(text: object) -> bool:
    return isinstance(text, str) and len(text) <= MAX_NAME and _NAME.match(text) is not None


def is_id(text: object) -> bool:
    return isinstance(text, str) and len(text) <= MAX_NAME and _ID.match(text) is not None


def shown(text: object, limit: int = 60) -> str:
    """A value as an error line shows it: quoted, cut at ``limit`` characters."""
    value = repr(text)
    return value if len(value) <= limit else value[: limit - 4] + "...'"


class ShapeError(Exception):
    """Where in a file its content differs from its kind's shape, and how."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


# --- shapes -----------------------------------------------------------------------------------


def _what(value: Any) -> str:
    """A JSON value's type, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class Scalar:
    word: str  # "a number"
    test: Callable[[Any], bool]
    null: str = "null"  # the problem when the value is null

    def check(self, value: Any, where: str, domains: Domains) -> None:
        if value is None:
            raise ShapeError(where, self.null)
        if not self.test(value):
            if self is NUMBER and isinstance(value, float):
                raise ShapeError(where, f"{value} is not finite")
            if isinstance(value, str):  # text of the wrong form: show it (escaped, cut short)
                raise ShapeError(where, f"{shown(value)} is not {self.word}")
            raise ShapeError(where, f"{_what(value)}, not {self.word}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


NUMBER = Scalar("a number", _finite, "null, not a number (a NaN or inf is written as null)")
INTEGER = Scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Scalar("text", lambda v: isinstance(v, str))
BOOL = Scalar("true/false", lambda v: isinstance(v, bool))
NAME = Scalar(f"a name ({NAME_RULE})", is_name)
RUN_ID = Scalar(f"a run id ({ID_RULE})", is_id)


def _numeric_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


NUMERIC_TEXT = Scalar("a number written as text", _numeric_text)  # a target label: "9e+05"


@dataclass(frozen=True)
class Nullable:
    shape: Any

    def check(self, value: Any, where: str, domains: Domains) -> None:
        if value is not None:
            check(self.shape, value, where, domains)


@dataclass(frozen=True)
class Map:
    """name -> value. ``keyset``: maps sharing it hold the same keys. ``keys``: what a key is
    (a name; ``NUMERIC`` for budgets; ``TEXT`` for labels such as seeds)."""

    value: Any
    keyset: str | None = None
    empty_ok: bool = False
    keys: str = "name"

    def check(self, value: Any, where: str, domains: Domains) -> None:
        if not isinstance(value, dict):
            raise ShapeError(where, f"{_what(value)}, not an object")
        if not value and not self.empty_ok:
            raise ShapeError(where, "empty")
        for key in value.keys() - _GOOD_NAMES if self.keys == "name" else value:
            _check_key(key, self.keys, where)
        if self.value is NUMBER:  # the common case, thousands of times a sweep: no paths built
            for key, item in value.items():
                if type(item) is not float or item - item != 0:  # not a finite float
                    check(NUMBER, item, _join(where, key), domains)
        else:
            for key, item in value.items():
                check(self.value, item, _join(where, key), domains)
        if self.keyset:
            domains.agree(self.keyset, value, where)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


NUMERIC = "numeric"
_GOOD_NAMES: set[str] = set()  # keys already found to be names (domains repeat in every file)


def _check_key(key: str, kind: str, where: str) -> None:
    if kind == "name":
        if not is_name(key):
            raise ShapeError(where, f"key {shown(key)} is not a name (use {NAME_RULE})")
        if len(_GOOD_NAMES) < 100_000:
            _GOOD_NAMES.add(key)
    if kind == NUMERIC:
        try:
            ok = math.isfinite(float(key))
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(where, f"key {shown(key)} is not a number")


@dataclass(frozen=True)
class List:
    item: Any
    empty_ok: bool = True

    def check(self, value: Any, where: str, domains: Domains) -> None:
        if not isinstance(value, list):
            raise ShapeError(where, f"{_what(value)}, not a list")
        if not value and not self.empty_ok:
            raise ShapeError(where, "empty")
        for i, item in enumerate(value):
            check(self.item, item, f"{where}[{i}]", domains)


@dataclass(frozen=True)
class Where:
    """A shape plus a rule its fields must meet together (``test`` on the checked value)."""

    shape: Any
    test: Callable[[Any], bool]
    problem: str

    def check(self, value: Any, where: str, domains: Domains) -> None:
        check(self.shape, value, where, domains)
        if not self.test(value):
            raise ShapeError(where, self.problem)


def check(shape: Any, value: Any, where: str, domains: Domains) -> None:
    """Raise ShapeError at the first place ``value`` differs from ``shape``."""
    if isinstance(shape, dict):
        _check_object(shape, value, where, domains)
    else:
        shape.check(value, where, domains)


def _check_object(shape: dict[str, Any], value: Any, where: str, domains: Domains) -> None:
    if not isinstance(value, dict):
        raise ShapeError(where, f"{_what(value)}, not an object")
    for name, sub, optional in _fields(shape):
        if name in value:
            check(sub, value[name], f"{where}.{name}" if where else name, domains)
        elif not optional:
            raise ShapeError(f"{where}.{name}" if where else name, "missing")


_FIELDS: dict[int, tuple[dict[str, Any], tuple[tuple[str, Any, bool], ...]]] = {}


def _fields(shape: dict[str, Any]) -> tuple[tuple[str, Any, bool], ...]:
    """(name, shape, optional) of each key of an object shape, worked out once per shape."""
    cached = _FIELDS.get(id(shape))
    if cached is None or cached[0] is not shape:
        fields = tuple((k.rstrip("?"), sub, k.endswith("?")) for k, sub in shape.items())
        cached = _FIELDS[id(shape)] = (shape, fields)
    return cached[1]


@dataclass
class Domains:
    """The keys each keyset was first seen with, and where: maps of one keyset must agree
    (``tokens`` and ``weights`` of a run; the losses of every run one table gathers)."""

    seen: dict[str, tuple[frozenset[str], str, str]] = field(default_factory=dict)
    source: str = ""  # the file being checked

    def agree(self, keyset: str, mapping: dict[str, Any], where: str) -> None:
        first = self.seen.get(keyset)
        if first is None:
            self.seen[keyset] = (frozenset(mapping), where, self.source)
            return
        if mapping.keys() == first[0]:
            return
        keys = frozenset(mapping)
        extra, lacking = sorted(keys - first[0]), sorted(first[0] - keys)
        what = f"has {shown(extra[0])}" if extra else f"lacks {shown(lacking[0])}"
        other = first[1] if first[2] == self.source else f"{first[1]} in {first[2]}"
        raise ShapeError(where, f"{what}: its domains differ from those of {other}")


# --- kinds and their readers ----------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A JSON file mixscale writes: its shape, the keys its writer always writes, and how to
    regenerate it (the fix every error names)."""

    name: str
    shape: dict[str, Any]
    written: tuple[str, ...]  # optional keys of ``shape`` the project's writer always writes
    fix: str
    needs: tuple[str, ...] = ()  # a view: optional keys its reader needs
    base: str = ""  # a view: the kind it reads
    again: str = ""  # what asking Snakemake for a deleted one does ("trains the run again")

    def view(self, reader: str, *needs: str) -> Kind:
        """This kind as ``reader`` reads it: ``needs`` (optional keys) must be there, not null."""
        unknown = [n for n in needs if f"{n}?" not in self.shape]
        assert not unknown, f"{self.name} declares no optional {unknown}"
        name = f"{self.name} ({reader})"
        return Kind(name, self.shape, self.written, self.fix, needs, self.name, self.again)

    @property
    def as_written(self) -> Kind:
        """The kind as its writer writes it: every key it always writes must be there (what
        `mixscale status` and the workflow's pre-flight check)."""
        return Kind(
            self.name, self.shape, self.written, self.fix, self.written, self.base, self.again
        )


@dataclass(frozen=True)
class TsvKind:
    """A tab-separated table: required and optional columns, columns named ``<prefix><name>``
    (their names checked), columns whose cells are names. Numbers are the reader's to parse
    (each knows its range); ``reader`` names it, ``fix`` says how to regenerate a written one."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]  # named in the fix when a required column is missing
    name_columns: tuple[str, ...]  # cells that are names (sources)
    id_columns: tuple[str, ...]  # cells that are run ids, seeds or steps
    prefixes: tuple[str, ...]
    reader: str  # module:function
    fix: str
    workflow_output: bool = True  # the workflow writes it (else: the user's, or a command's)
    again: str = ""  # what asking Snakemake for a deleted one does


def read_kind(path: str | Path, kind: Kind, domains: Domains | None = None) -> dict[str, Any]:
    """A JSON file of ``kind``, checked; InputError naming the file, the field and the fix.
    ``domains``: shared by the files one reader gathers, so they must hold the same domains."""
    data = read_json(path, kind.fix)
    check_data(data, kind, str(path), domains)
    return data


def check_data(data: Any, kind: Kind, source: str, domains: Domains | None = None) -> None:
    """``data`` (read from ``source``) against ``kind``: InputError at the first mismatch."""
    domains = domains if domains is not None else Domains()
    domains.source = source
    try:
        check(kind.shape, data, "", domains)
        for key in kind.needs:  # checked by the shape when there; needed here, and not null
            if data.get(key) is None:
                raise ShapeError(key, "missing" if key not in data else "null")
    except ShapeError as exc:
        raise InputError(source, exc.where, exc.problem, kind.fix) from None


def read_kinds(paths: Iterable[str | Path], kind: Kind) -> list[dict[str, Any]]:
    """Several files of one kind read together: their shared keysets must agree."""
    domains = Domains()
    return [read_kind(p, kind, domains) for p in paths]


def read_tsv_kind(path: str | Path, kind: TsvKind) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a table of ``kind``: its required columns there, its names valid."""
    source = str(path)
    header, rows = read_tsv_rows(path)
    for column in kind.required:
        if column not in header:
            optional = f" (optional: {', '.join(kind.optional)})" if kind.optional else ""
            raise InputError(
                source,
                f"column {column}",
                "missing",
                f"columns: {', '.join(kind.required)}{optional}",
            )
    for column in header:
        prefix = next((p for p in kind.prefixes if column.startswith(p)), None)
        if prefix is not None and column != prefix and not is_name(column[len(prefix) :]):
            raise InputError(
                source,
                f"column {shown(column)}",
                f"{shown(column[len(prefix) :])} is not a domain name",
                f"use {NAME_RULE}",
            )
    for columns, test, rule in (
        (kind.name_columns, is_name, NAME_RULE),
        (kind.id_columns, is_id, ID_RULE),
    ):
        for column in columns:
            if column in header:
                _check_cells(source, rows, header.index(column), column, test, rule)
    return header, rows


def _check_cells(
    source: str, rows: list[list[str]], at: int, column: str, test: Callable[[str], bool], rule: str
) -> None:
    """Every cell of one column a name (an empty cell is the reader's to refuse or default)."""
    for number, cells in enumerate(rows, start=2):
        text = cells[at]
        if text and not test(text):
            raise InputError(
                source,
                f"row {number}, column {column}",
                f"{shown(text)} not allowed",
                f"use {rule}",
            )


def read_jsonl_kind(path: str | Path, kind: Kind) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file of ``kind``, each checked (blank lines skipped)."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(source, "", "not UTF-8 text", kind.fix) from exc
    except OSError as exc:
        raise InputError(source, "", exc.strerror or "cannot be read", kind.fix) from exc
    # split("\n"), not splitlines(): documents may hold U+2028 and friends, which JSON keeps raw
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InputError(source, f"line {number}", "not a JSON object", kind.fix) from exc
        check_data(item, kind, f"{source}: line {number}")
        yield item
