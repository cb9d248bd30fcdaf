"""Atomic outputs (temp file or folder + rename) that never replace what is not theirs, and
tolerant readers that raise InputError."""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


# --- outputs ------------------------------------------------------------------------------------
#
# Every file and folder mixscale writes goes through the writers below, and they treat what
# already stands at the path by one rule:
#
# * nothing, or a regular file: the new content is written under a temporary name beside it and
#   renamed over it, so readers see the old file or the complete new one (an existing file keeps
#   its permission bits). A symlink to a regular file is written through: its target is
#   replaced and the link stays a link.
# * a stream: a character device (/dev/null, a terminal), a FIFO, or the process's own open
#   file (/dev/stdout, /dev/fd/N) is written into, as a shell's `>>` would. Renaming over it
#   would replace the device or FIFO by a regular file, which `--out /dev/stdout` never means.
#   A FIFO without a reader is refused at once (opening it would wait forever).
# * anything else that is not a regular file (a block device: writing a JSON onto a disk
#   destroys its file system; a socket, which cannot be opened): refused.
# * a folder where a file is expected, a file where a folder is expected, or a file among the
#   folders above the path: refused, and what is there stays untouched.
# * one of the command's inputs (the same inode, so also through a hard link, a symlink or
#   another spelling of the path; for a folder output, a folder holding an input): refused.
#   ``inputs_protected`` names the inputs; the CLI names every input flag before a command runs.
#
# A folder output (``atomic_folder``) is built as a new folder beside the target and swapped in.
# It replaces an existing folder only when that is empty, or was written by mixscale and holds
# nothing else. Every folder mixscale writes carries a marker file listing what it wrote; a
# marker is the robust test, where the folder's contents would not be: what a command writes
# changes with library versions (a tokenizer's save_pretrained), a user's folder can hold the
# same names (config.json), and a file the user added to a mixscale folder later is not in the
# list, so it stops the swap instead of being deleted. Temporary and backup folders are made by
# mkdtemp with a ``.mixscale-`` prefix (no user's name), and only those this process made are
# removed.

TEMP_PREFIX = ".mixscale-"
FOLDER_MARKER = ".mixscale-folder.json"
_MARKER_MAX_BYTES = 16 << 20
FOREIGN_FIX = (
    "move those files elsewhere (or delete an old output yourself), or give another folder"
)
_KINDS = {
    stat.S_IFDIR: "folder",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFREG: "file",
}
# the folder of a process's open files: /dev/stdout and /dev/fd/N lead there
_DESCRIPTOR_FOLDER = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd")


@dataclass(frozen=True)
class _Input:
    label: str  # how the user named it: "--runs runs.tsv"
    identity: tuple[int, int]  # (device, inode)
    holders: frozenset[tuple[int, int]]  # the folders it lies in


_inputs: tuple[_Input, ...] = ()
_scopes = 0  # open inputs_protected blocks


@contextmanager
def inputs_protected(named: Iterable[tuple[str, str | os.PathLike[str]]]) -> Iterator[None]:
    """Within the block no writer here replaces, truncates or swaps out these inputs (nor, for
    a folder output, a folder holding one). ``named``: (how the user named it, path) pairs;
    values not on disk (a shipped world's name, JSON text) are skipped."""
    global _inputs, _scopes
    saved = _inputs
    _inputs = saved + _identified(named)
    _scopes += 1
    try:
        yield
    finally:
        _inputs = saved
        _scopes -= 1


def protect_inputs(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Inputs a function finds only as it runs (a corpus source folder's files), protected to
    the end of the enclosing ``inputs_protected`` block or ``reading_inputs`` function. Outside
    one it does nothing: a protection that outlived its command could match a later file that
    took over a deleted input's inode."""
    global _inputs
    if _scopes:
        _inputs = _inputs + _identified((str(p), p) for p in paths)


def reading_inputs(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the ``protect_inputs`` calls made while ``function`` runs last until it
    returns, whether a CLI command or a library user calls it."""

    @functools.wraps(function)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        with inputs_protected(()):
            return function(*args, **kwargs)

    return scoped


def _identified(named: Iterable[tuple[str, str | os.PathLike[str]]]) -> tuple[_Input, ...]:
    found = []
    for label, path in named:
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # not on disk: a name or JSON text, not a path
            continue
        holders = set()
        for folder in Path(os.path.realpath(path)).parents:
            try:
                held = os.stat(folder)
            except OSError:
                break
            holders.add((held.st_dev, held.st_ino))
        found.append(_Input(label, (st.st_dev, st.st_ino), frozenset(holders)))
    return tuple(found)


def _refusal(path: str | os.PathLike[str], flag: str | None, problem: str, fix: str):
    return (
        InputError(flag, str(path), problem, fix)
        if flag
        else InputError(str(path), "", problem, fix)
    )


def check_output_file(path: str | os.PathLike[str], flag: str | None = None) -> None:
    """Raise now the one-line InputError writing the file ``path`` would meet (before any
    work); ``flag`` names the option in the message."""
    _file_destination(Path(path), flag)


def check_output_folder(path: str | os.PathLike[str], flag: str | None = None) -> None:
    """Raise now the one-line InputError ``atomic_folder(path)`` would meet: a file there, a
    non-empty folder mixscale did not write, a folder holding an input."""
    _folder_destination(Path(path), flag)


def check_output_parent(path: str | os.PathLike[str], flag: str | None = None) -> None:
    """A folder a command writes named files into (a corpus folder): it may hold anything
    else, but it must be a folder, and not an input folder itself."""
    target = Path(path)
    st = _stat_or_none(target, flag)
    if st is None:
        _check_folders_above(target, flag)
        return
    _refuse_inputs(target, st, flag, folder=False)
    if not stat.S_ISDIR(st.st_mode):
        kind = _kind(st)
        raise _refusal(
            target, flag, f"is a {kind}, not a folder", f"give a folder; the {kind} is left alone"
        )


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether a write of ``path`` goes into a stream (a character device, a FIFO, the
    process's own stdout) rather than replacing a file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    kind = stat.S_IFMT(st.st_mode)
    return kind in (stat.S_IFCHR, stat.S_IFIFO) or (
        kind == stat.S_IFREG and _is_descriptor_link(Path(path))
    )


def refuse_stream(path: str | os.PathLike[str], flag: str, siblings: str) -> None:
    """For an output with files written beside it (a report's figures, a run's model): a
    stream (/dev/stdout) has no folder of its own, and its folder (/dev) is nobody's output."""
    if is_stream(path):
        raise InputError(
            flag, str(path), f"is a stream, and {siblings} beside it", "give a file path"
        )


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text so that readers see either the old file or the complete new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes so that readers see either the old file or the complete new one (into a
    stream, as it comes; see the rules above)."""
    target = Path(path)
    with naming_the_file(target):
        where, stream, mode = _file_destination(target, None)
        if stream:
            _write_stream(where, data)
        else:
            _replace_file(where, data, mode)


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``path``, then swap it in. Readers see the
    old folder or the complete new one; if building fails the old one stays and the temporary
    is removed. An existing folder is replaced only if it is empty or mixscale wrote it (see
    the rules above). The old folder is renamed aside before the swap, so a crash between the
    two renames leaves it recoverable as ``.mixscale-<name>.*.old``, never half-deleted."""
    target = Path(path)
    with naming_the_file(target):
        where = _folder_destination(target, None)
        _make_folder(where.parent, target)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(where), suffix=".tmp", dir=where.parent))
    try:
        with naming_the_file(target):
            yield tmp
            _write_marker(tmp)
            _swap_in(tmp, where, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # made by mkdtemp above: this process's own
        raise


def _file_destination(target: Path, flag: str | None) -> tuple[Path, bool, int | None]:
    """(where to write, whether it is a stream written into, permission bits to keep)."""
    st = _stat_or_none(target, flag)
    if st is None:
        where = _dangling_link_target(target)
        _check_folders_above(where, flag)
        return where, False, None
    _refuse_inputs(target, st, flag, folder=False)
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        raise _refusal(
            target, flag, "is a folder, not a file", "give a file path; the folder is left alone"
        )
    if kind not in (stat.S_IFREG, stat.S_IFCHR, stat.S_IFIFO):
        name = _kind(st)
        raise _refusal(
            target,
            flag,
            f"is a {name}, not a file",
            f"give a regular file's path; the {name} is left alone",
        )
    if kind != stat.S_IFREG or _is_descriptor_link(target):
        return target, True, None
    return _link_target(target, st, flag), False, stat.S_IMODE(st.st_mode)


def _folder_destination(target: Path, flag: str | None) -> Path:
    """Where ``atomic_folder`` builds the folder: the target, or the folder a symlink names."""
    st = _stat_or_none(target, flag)
    if st is None:
        where = _dangling_link_target(target)
        _check_folders_above(where, flag)
        return where
    _refuse_inputs(target, st, flag, folder=True)
    if not stat.S_ISDIR(st.st_mode):
        kind = _kind(st)
        raise _refusal(
            target,
            flag,
            f"is a {kind}, not a folder",
            f"give a folder path; the {kind} is left alone",
        )
    where = _link_target(target, st, flag)
    problem = _foreign_contents(where)
    if problem:
        raise _refusal(target, flag, problem, FOREIGN_FIX)
    return where


def _stat_or_none(target: Path, flag: str | None) -> os.stat_result | None:
    """The target's status (through symlinks), or None when nothing is there yet."""
    try:
        return os.stat(target)
    except FileNotFoundError:
        return None
    except NotADirectoryError as exc:
        blocker = _nearest_existing(target)
        raise _refusal(
            target,
            flag,
            f"{blocker} is a file, not a folder",
            "choose a path whose folders are folders",
        ) from exc
    except ValueError as exc:  # a NUL character
        raise _refusal(target, flag, "holds a NUL character", "give a plain path") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refusal(
                target, flag, "is a symlink loop", "point the link at a file, or give another path"
            ) from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise _refusal(target, flag, "is too long a name", "give a shorter path") from exc
        raise


def _kind(st: os.stat_result) -> str:
    return _KINDS.get(stat.S_IFMT(st.st_mode), "special file")


def _nearest_existing(path: Path) -> Path:
    for folder in path.parents:
        if os.path.lexists(folder):
            return folder
    return Path(".")


def _check_folders_above(target: Path, flag: str | None) -> None:
    """The nearest existing folder above the target must be one (not a file, not a device)."""
    above = _nearest_existing(target)
    if not above.is_dir():
        raise _refusal(
            target, flag, f"{above} is not a folder", "choose a path whose folders are folders"
        )


def _refuse_inputs(target: Path, st: os.stat_result, flag: str | None, folder: bool) -> None:
    identity = (st.st_dev, st.st_ino)
    for given in _inputs:
        if given.identity == identity:
            raise _refusal(
                target,
                flag,
                f"is the input {given.label} (the same file)",
                "write the output to another path",
            )
        if folder and identity in given.holders:
            raise _refusal(
                target, flag, f"holds the input {given.label}", "write the output to another folder"
            )


def _dangling_link_target(target: Path) -> Path:
    """A symlink to nothing yet is written through, as a shell would: where it points."""
    return Path(os.path.realpath(target)) if os.path.islink(target) else target


def _link_target(target: Path, st: os.stat_result, flag: str | None) -> Path:
    """A symlink's final target (the link itself stays), checked to be the file ``st`` is."""
    if not os.path.islink(target):
        return target
    real = Path(os.path.realpath(target))
    try:
        same = os.path.samestat(os.stat(real), st)
    except OSError:
        same = False
    if not same:
        raise _refusal(
            target, flag, "is a link whose target cannot be named", "give the target's own path"
        )
    return real


def _is_descriptor_link(target: Path) -> bool:
    """/dev/stdout, /dev/fd/N, /proc/self/fd/N: the process's own open file, written into (a
    shell's `>> log` must get the output appended, not the log replaced)."""
    current = os.path.abspath(target)
    for _ in range(40):  # the kernel follows at most 40 links
        if _DESCRIPTOR_FOLDER.fullmatch(os.path.realpath(os.path.dirname(current))):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.abspath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return False


def _make_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise _refusal(
            target,
            None,
            f"{_nearest_existing(folder / 'x')} is not a folder",
            "choose a path whose folders are folders",
        ) from exc


def _temp_prefix(target: Path) -> str:
    return f"{TEMP_PREFIX}{target.name[:80]}."  # short enough for any file system's names


def _replace_file(target: Path, data: bytes, mode: int | None) -> None:
    _make_folder(target.parent, target)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes 0600: an existing file keeps its bits, a new one gets the usual ones
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_stream(target: Path, data: bytes) -> None:
    try:  # non-blocking open: a FIFO without a reader fails at once instead of waiting
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise InputError(
                str(target),
                "",
                "is a FIFO with no reader",
                "start its reader first, or give a file path",
            ) from exc
        raise
    os.set_blocking(fd, True)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BrokenPipeError as exc:
        raise InputError(
            str(target),
            "",
            "its reader closed it before the output was written",
            "keep the reader open until mixscale exits",
        ) from exc


def _entries(folder: Path) -> set[str]:
    """Every path inside ``folder`` (files, folders, links; links not followed), relative."""

    def fail(exc: OSError) -> None:
        raise exc

    found = set()
    for where, folders, files in os.walk(folder, onerror=fail):
        base = Path(where).relative_to(folder)
        found.update((base / name).as_posix() for name in (*folders, *files))
    return found


def _write_marker(folder: Path) -> None:
    listed = sorted(_entries(folder) | {FOLDER_MARKER})
    marker = {
        "written_by": "mixscale",
        "note": "mixscale replaces this folder when its command runs again, if it holds "
        "nothing but these entries; anything else you put here stops it",
        "entries": listed,
    }
    (folder / FOLDER_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")


def _marker_entries(folder: Path) -> set[str] | None:
    """The entries a mixscale folder's marker lists, or None (no marker, or not one of ours)."""
    marker = folder / FOLDER_MARKER
    try:
        st = os.lstat(marker)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX_BYTES:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "mixscale":
        return None
    entries = data.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return None
    return set(entries)


def _foreign_contents(folder: Path) -> str | None:
    """Why replacing ``folder`` would delete something mixscale did not write, or None."""
    entries = _entries(folder)
    if not entries:
        return None
    listed = _marker_entries(folder)
    if listed is None:
        return (
            f"holds {min(entries)} and no {FOLDER_MARKER}: mixscale did not write it (or a "
            "version before folders carried one did)"
        )
    extra = sorted(entries - listed)
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        return f"holds {extra[0]}{more}, which mixscale did not write there"
    return None


def _swap_in(tmp: Path, where: Path, target: Path) -> None:
    """The built folder in place of ``where``; the old one (empty, or only what mixscale
    wrote) removed after the swap."""
    old = _stat_or_none(where, None)
    os.chmod(tmp, 0o777 & ~_umask() if old is None else stat.S_IMODE(old.st_mode))
    if old is None:
        os.rename(tmp, where)  # an empty folder made meanwhile is replaced, a full one refuses
        return
    problem = _foreign_contents(where) if stat.S_ISDIR(old.st_mode) else "is not a folder"
    if problem:  # it changed while the new folder was built
        raise _refusal(target, None, problem, FOREIGN_FIX)
    backup = Path(tempfile.mkdtemp(prefix=_temp_prefix(where), suffix=".old", dir=where.parent))
    try:
        os.rename(where, backup)  # onto this process's own empty folder
    except BaseException:
        os.rmdir(backup)
        raise
    try:
        os.rename(tmp, where)
    except BaseException:
        os.rename(backup, where)  # the old folder back where it was
        raise
    shutil.rmtree(backup, ignore_errors=True)  # the new folder is in place: only a leftover


def _umask() -> int:
    try:  # read, not set: os.umask(0) would open a window for other threads' files
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
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
