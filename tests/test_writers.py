"""One way to write outputs (``mixscale.fileio``), used by every command: what stands at an
output's path is never replaced unless it is the command's own.

The cases are generated: over the writer functions (atomic_write_text/bytes, write_json,
write_tsv, the report's figures; atomic_folder), and over every path flag of every command,
walked from ``build_parser()`` (each output against each input, and against a device, a FIFO,
a socket, a link to stdout, a folder or a file of the wrong kind, a folder mixscale did not
write, the user's own DIR.tmp/DIR.old). Each asserts that the user's object is unchanged (type,
inode, content) and the command refused with one line naming the flag, or that it wrote
correctly. Everything runs in-process (no training, no subprocess) except a few real commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mixscale import fileio
from mixscale.cli import main as cli_main
from mixscale.cli.args import Pair, Pairs
from mixscale.cli.main import build_parser, main
from mixscale.cli.paths import (
    input_path,
    output_file,
    output_folder,
    output_parent,
    path_flags,
    paths_checked,
)
from mixscale.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

# --- what stands at a path, before and after ---------------------------------------------------


def snapshot(path: Path) -> tuple:
    """Type, inode, device numbers, and content (a file's digest, a folder's whole tree, a
    link's target) of whatever is at ``path``: equal snapshots, untouched object."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ("absent",)
    kind = stat.S_IFMT(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        content: object = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISDIR(st.st_mode):
        content = tuple(sorted((p.name, snapshot(p)) for p in path.iterdir()))
    else:  # a device, FIFO or socket: its identity is all there is (never opened here)
        content = st.st_rdev
    return (kind, st.st_ino, stat.S_IMODE(st.st_mode), content)


def leftovers(folder: Path) -> list[str]:
    """Temporary or backup names the writers make; none may outlive a write or a refusal."""
    return sorted(
        str(p) for p in folder.rglob(f"{fileio.TEMP_PREFIX}*") if p.name != fileio.FOLDER_MARKER
    )


def node_or_skip(path: Path, kind: int, device: tuple[int, int]) -> Path:
    """A device node (root only), skipped with the reason where none can be made or opened."""
    if os.geteuid() != 0:
        pytest.skip("device nodes need root (os.mknod)")
    try:
        os.mknod(path, kind | 0o666, os.makedev(*device))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    if kind == stat.S_IFCHR:
        try:  # a file system mounted nodev refuses to open device nodes
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            pytest.skip(f"device nodes cannot be opened here: {exc}")
    return path


DEV_NULL, DEV_FULL = (1, 3), (1, 7)
NO_DRIVER = (240, 0)  # "local/experimental" block major: no driver, so never a real disk


class FifoReader:
    """Reads a FIFO in a thread until its writer closes it: the writer under test never waits
    for a reader, and the test never blocks (a deadline ends the read)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # at once, writer or not
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:  # a writer is connected, no data yet
                chunk = None
            if chunk:
                self.data += chunk
            elif chunk == b"" and self.data:  # end of file after the output
                break
            else:
                time.sleep(0.005)
        os.close(self.fd)

    def result(self) -> bytes:
        self.thread.join(25)
        return self.data


# --- the writer functions ------------------------------------------------------------------------


def _figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixscale.report.common import save_figure

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    save_figure(fig, path)


FILE_WRITERS: dict[str, Callable[[Path], None]] = {
    "atomic_write_text": lambda p: fileio.atomic_write_text(p, "text\n"),
    "atomic_write_bytes": lambda p: fileio.atomic_write_bytes(p, b"\x00bytes\n"),
    "write_json": lambda p: fileio.write_json(p, {"a": 1.5, "b": [float("nan")]}),
    "write_tsv": lambda p: fileio.write_tsv(p, ["run", "x"], [["r0", 1.25]]),
    "save_figure": _figure,
}


def expected_bytes(writer: str, tmp_path: Path) -> bytes:
    """What the writer writes into a fresh regular file (the reference for stream targets)."""
    reference = tmp_path / "reference" / "out.png"
    FILE_WRITERS[writer](reference)
    return reference.read_bytes()


def _refused(writer: str, target: Path, phrase: str) -> None:
    with pytest.raises(InputError) as caught:
        FILE_WRITERS[writer](target)
    line = caught.value.one_line()
    assert phrase in line and "\n" not in line, line
    assert "(fix: " in line, line


# Each case: (set up the user's object, then check what the write did to it).
def case_folder(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "out.png"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    before = snapshot(target)
    _refused(writer, target, "is a folder, not a file")
    assert snapshot(target) == before


def case_file_above(tmp_path: Path, writer: str) -> None:
    above = tmp_path / "notes.txt"
    above.write_text("keep")
    before = snapshot(above)
    _refused(writer, above / "out.png", "notes.txt is a file, not a folder")
    assert snapshot(above) == before


def case_block_device(tmp_path: Path, writer: str) -> None:
    target = node_or_skip(tmp_path / "disk", stat.S_IFBLK, NO_DRIVER)
    before = snapshot(target)
    _refused(writer, target, "is a block device, not a file")
    assert snapshot(target) == before


def case_socket(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(target))
        before = snapshot(target)
        _refused(writer, target, "is a socket, not a file")
        assert snapshot(target) == before


def case_null_device(tmp_path: Path, writer: str) -> None:
    target = node_or_skip(tmp_path / "null", stat.S_IFCHR, DEV_NULL)
    before = snapshot(target)
    FILE_WRITERS[writer](target)  # written into, as `> /dev/null` would
    assert snapshot(target) == before


def case_full_device(tmp_path: Path, writer: str) -> None:
    target = node_or_skip(tmp_path / "full", stat.S_IFCHR, DEV_FULL)
    before = snapshot(target)
    with pytest.raises(OSError, match="No space left") as caught:
        FILE_WRITERS[writer](target)
    assert caught.value.errno == 28 and caught.value.filename == str(target)  # ENOSPC, named
    assert snapshot(target) == before


def case_fifo_with_reader(tmp_path: Path, writer: str) -> None:
    want = expected_bytes(writer, tmp_path)
    target = tmp_path / "fifo"
    os.mkfifo(target)
    before = snapshot(target)
    reader = FifoReader(target)
    FILE_WRITERS[writer](target)
    assert reader.result() == want
    assert snapshot(target) == before


def case_fifo_without_reader(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "fifo"
    os.mkfifo(target)
    before = snapshot(target)
    started = time.monotonic()
    _refused(writer, target, "is a FIFO with no reader")
    assert time.monotonic() - started < 5  # refused at once, never waiting for a reader
    assert snapshot(target) == before


def case_link_to_stdout(tmp_path: Path, writer: str, capfdbinary) -> None:
    want = expected_bytes(writer, tmp_path)
    target = tmp_path / "out.png"
    target.symlink_to("/dev/stdout")
    before = snapshot(target)
    capfdbinary.readouterr()
    FILE_WRITERS[writer](target)
    assert capfdbinary.readouterr().out == want  # into the process's stdout, as it is
    assert snapshot(target) == before  # still the link


def case_link_to_file(tmp_path: Path, writer: str) -> None:
    want = expected_bytes(writer, tmp_path)
    real = tmp_path / "real" / "out.png"
    real.parent.mkdir()
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.png"
    link.symlink_to(real)
    FILE_WRITERS[writer](link)
    assert os.readlink(link) == str(real)  # the link stays a link, written through
    assert real.read_bytes() == want
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the user's permissions kept


def case_dangling_link(tmp_path: Path, writer: str) -> None:
    want = expected_bytes(writer, tmp_path)
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "later" / "out.png")
    FILE_WRITERS[writer](link)
    assert link.is_symlink() and (tmp_path / "later" / "out.png").read_bytes() == want


def case_link_loop(tmp_path: Path, writer: str) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    before = snapshot(tmp_path)
    _refused(writer, tmp_path / "a", "is a symlink loop")
    assert snapshot(tmp_path) == before


def _protected_input(tmp_path: Path) -> Path:
    given = tmp_path / "data" / "runs.tsv"
    given.parent.mkdir()
    given.write_text("run\tx\nr0\t1\n")
    return given


def _input_cases(tmp_path: Path, given: Path) -> dict[str, Path]:
    os.link(given, tmp_path / "hard.tsv")
    (tmp_path / "soft.tsv").symlink_to(given)
    return {
        "same path": given,
        "another spelling": tmp_path / "data" / ".." / "data" / "runs.tsv",
        "hard link": tmp_path / "hard.tsv",
        "symlink": tmp_path / "soft.tsv",
    }


def case_input(tmp_path: Path, writer: str) -> None:
    given = _protected_input(tmp_path)
    for how, target in _input_cases(tmp_path, given).items():
        before = snapshot(given)
        with fileio.inputs_protected([("--runs runs.tsv", given)]):
            _refused(writer, target, "is the input --runs runs.tsv")
        assert snapshot(given) == before, how
    FILE_WRITERS[writer](given)  # outside the command that reads it, it is a file like any


def case_new_and_replaced(tmp_path: Path, writer: str) -> None:
    want = expected_bytes(writer, tmp_path)
    target = tmp_path / "deep" / "er" / "out.png"
    FILE_WRITERS[writer](target)
    assert target.read_bytes() == want
    os.chmod(target, 0o600)
    FILE_WRITERS[writer](target)
    assert target.read_bytes() == want and stat.S_IMODE(target.stat().st_mode) == 0o600


FILE_CASES = {
    "folder where a file is expected": case_folder,
    "a file among the folders above": case_file_above,
    "block device": case_block_device,
    "socket": case_socket,
    "character device (/dev/null)": case_null_device,
    "character device (/dev/full)": case_full_device,
    "FIFO with a reader": case_fifo_with_reader,
    "FIFO without a reader": case_fifo_without_reader,
    "symlink to /dev/stdout": case_link_to_stdout,
    "symlink to a file": case_link_to_file,
    "symlink to nothing yet": case_dangling_link,
    "symlink loop": case_link_loop,
    "one of the inputs": case_input,
    "new, then replaced": case_new_and_replaced,
}


@pytest.mark.parametrize("case", list(FILE_CASES))
@pytest.mark.parametrize("writer", list(FILE_WRITERS))
def test_file_writer(writer, case, tmp_path, capfdbinary):
    run = FILE_CASES[case]
    if run is case_link_to_stdout:
        run(tmp_path, writer, capfdbinary)
    else:
        run(tmp_path, writer)
    assert leftovers(tmp_path) == []


# --- atomic_folder -------------------------------------------------------------------------------


def build(folder: Path, files: dict[str, str]) -> None:
    with fileio.atomic_folder(folder) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


def user_siblings(tmp_path: Path) -> dict[Path, tuple]:
    """The user's own DIR.tmp and DIR.old (the names the writer used to take), with files."""
    for name in ("out.tmp", "out.old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "precious.txt").write_text(name)
    return {p: snapshot(p) for p in (tmp_path / "out.tmp", tmp_path / "out.old")}


def _folder_refused(target: Path, phrase: str) -> None:
    with pytest.raises(InputError) as caught:
        build(target, {"new.txt": "new"})
    assert phrase in caught.value.one_line(), caught.value.one_line()


def test_folder_new_rerun_and_siblings(tmp_path):
    siblings = user_siblings(tmp_path)
    out = tmp_path / "out"
    build(out, {"a.txt": "1", "sub/b.txt": "2"})
    marker = json.loads((out / fileio.FOLDER_MARKER).read_text())
    assert marker["written_by"] == "mixscale"
    assert set(marker["entries"]) == {"a.txt", "sub", "sub/b.txt", fileio.FOLDER_MARKER}
    build(out, {"c.txt": "3"})  # its own folder: replaced whole
    assert sorted(p.name for p in out.iterdir()) == [fileio.FOLDER_MARKER, "c.txt"]
    assert {p: snapshot(p) for p in siblings} == siblings
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~fileio._umask()  # not mkdtemp's 0700
    assert leftovers(tmp_path) == []


def build_and_fail(folder: Path) -> None:
    with fileio.atomic_folder(folder) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed")


def test_folder_a_failed_build_keeps_the_old_one_and_the_siblings(tmp_path):
    siblings = user_siblings(tmp_path)
    out = tmp_path / "out"
    build(out, {"a.txt": "1"})
    before = snapshot(out)
    with pytest.raises(RuntimeError, match="killed"):
        build_and_fail(out)
    assert snapshot(out) == before
    assert {p: snapshot(p) for p in siblings} == siblings
    assert leftovers(tmp_path) == []


def _foreign(target: Path) -> None:
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")


def _own_plus_user_file(target: Path) -> None:
    build(target, {"a.txt": "1"})
    (target / "notes.txt").write_text("mine")


def _bad_marker(target: Path) -> None:
    target.mkdir()
    (target / fileio.FOLDER_MARKER).write_text("not json")
    (target / "thesis.tex").write_text("years of work")


def _linked_marker(target: Path) -> None:
    target.mkdir()
    (target / fileio.FOLDER_MARKER).symlink_to("/dev/zero")  # never read (it would not end)
    (target / "x").write_text("x")


def _file(target: Path) -> None:
    target.write_text("a file")


def _null(target: Path) -> None:
    node_or_skip(target, stat.S_IFCHR, DEV_NULL)


def _fifo(target: Path) -> None:
    os.mkfifo(target)


def _stdout_link(target: Path) -> None:
    target.symlink_to("/dev/stdout")


def _input_inside(target: Path) -> None:
    target.mkdir()
    (target / "runs.tsv").write_text("x")


FOLDER_REFUSALS = {
    "foreign non-empty folder": (_foreign, "mixscale did not write it"),
    "own folder plus a user's file": (_own_plus_user_file, "holds notes.txt, which mixscale"),
    "marker not mixscale's": (_bad_marker, "mixscale did not write it"),
    "marker a link": (_linked_marker, "mixscale did not write it"),
    "file where a folder is expected": (_file, "is a file, not a folder"),
    "character device": (_null, "is a character device, not a folder"),
    "FIFO": (_fifo, "is a FIFO, not a folder"),
    "symlink to /dev/stdout": (_stdout_link, "not a folder"),
}


@pytest.mark.parametrize("case", list(FOLDER_REFUSALS))
def test_folder_refuses(case, tmp_path):
    siblings = user_siblings(tmp_path)
    make, phrase = FOLDER_REFUSALS[case]
    out = tmp_path / "out"
    make(out)
    before = snapshot(out)
    _folder_refused(out, phrase)
    assert snapshot(out) == before
    assert {p: snapshot(p) for p in siblings} == siblings
    assert leftovers(tmp_path) == []


def test_folder_holding_or_being_an_input_is_refused(tmp_path):
    out = tmp_path / "out"
    build(out, {"runs.tsv": "x"})  # a folder of mixscale's, yet it holds the input
    (tmp_path / "link").symlink_to(out)
    before = snapshot(out)
    with fileio.inputs_protected([("--runs out/runs.tsv", out / "runs.tsv")]):
        _folder_refused(out, "holds the input --runs out/runs.tsv")
    with fileio.inputs_protected([("--tokenizer out", out)]):
        _folder_refused(out, "is the input --tokenizer out")
        _folder_refused(tmp_path / "link", "is the input --tokenizer out")
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_folder_empty_foreign_folder_and_link_to_own_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    build(empty, {"a.txt": "1"})  # nothing to lose: replaced
    assert (empty / "a.txt").read_text() == "1"
    link = tmp_path / "link"
    link.symlink_to(empty)
    build(link, {"b.txt": "2"})  # written through: the link stays, its folder is replaced
    assert os.readlink(link) == str(empty) and (empty / "b.txt").read_text() == "2"
    assert not (empty / "a.txt").exists()
    assert leftovers(tmp_path) == []


# --- every command, walked from the parser --------------------------------------------------------

PARSER = build_parser()
COMMANDS: dict[str, argparse.ArgumentParser] = next(
    a.choices for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
)
FLAGS = {name: path_flags(sub) for name, sub in COMMANDS.items()}
OUTPUTS = [
    (command, flag, role)
    for command, flags in FLAGS.items()
    for role, flag in flags.values()
    if role is not input_path
]
INPUT_PAIRS = [
    (command, out_flag, role, in_flag)
    for command, out_flag, role in OUTPUTS
    for in_role, in_flag in FLAGS[command].values()
    if in_role is input_path
]
OUTPUT_PAIRS = [
    (command, first, second)
    for command, first, _ in OUTPUTS
    for other, second, _ in OUTPUTS
    if other == command and first < second
]

# Flags that take text which is not a path (or a cache the command reads and writes, which an
# output may share). Every other flag without a type must be marked input or output: a new
# path flag cannot slip past the checks unmarked.
NOT_PATHS = {
    "--spec": "the run's plan entry as JSON text",
    "--backend": "a backend name",
    "--tracking": "tracker names",
    "--eval-weights": "domain=weight pairs",
    "--eval-domains": "domain names",
    "--min-weight": "weights",
    "--max-weight": "weights",
    "--max-tokens": "token counts",
    "--available": "token counts",
    "--cost": "costs",
    "--prior": "weights",
    "--extrapolate": "numbers",
    "--base": "a run id",
    "--domains": "domain names",
    "--domain": "a domain name",
    "--source": "DOMAIN=SPEC or NAME=JSON (a corpus source's files are protected as read)",
    "--cache": "the download cache, read and written",
    "--cache-dir": "a Hugging Face cache, read and written",
    "--task": "an lm-eval task name (downstream)",
    "--tasks": "task names",
    "--metric": "a metric name",
    "--task-metric": "a metric name",
    "--label": "a report label",
    "--target": "a scale label or domain names",
    "--experiment": "the experiment's name",
    "--proxy-tokens": "JSON text",
    "--unit": "a cost unit",
    "--name": "a name",
    "--account": "a SLURM account",
    "--partition": "a SLURM partition",
    "--gpu-partition": "a SLURM partition",
    "--device": "a torch device",
}
OUTPUT_NAMES = ("--out", "--scores-out", "--figure", "--markdown", "--config-dir")


def _flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len, default=action.dest)


def test_every_path_flag_says_whether_it_is_read_or_written():
    unmarked = []
    for command, sub in COMMANDS.items():
        for action in sub._actions:
            flag = _flag(action)
            if flag in OUTPUT_NAMES:
                assert action.type in (output_file, output_folder, output_parent), (command, flag)
            takes_text = action.type is None and action.nargs != 0 and not action.choices
            if takes_text and action.option_strings and flag not in (*NOT_PATHS, "--help"):
                unmarked.append(f"{command} {flag}")
    assert unmarked == []
    assert len(OUTPUTS) >= 35 and len(INPUT_PAIRS) >= 60  # the walk found the commands


def dummy_argv(command: str, given: dict[str, str], dummy_input: str) -> list[str]:
    """The command with ``given`` flags and harmless values for its other required ones."""
    sub = COMMANDS[command]
    argv = [command]
    for action in sub._actions:
        flag = _flag(action)
        if flag in given:
            argv += [flag, given[flag]]
        elif not action.option_strings and action.dest not in ("help",):
            argv.append(action.choices[0] if action.choices else "x")
        elif action.required:
            if action.type is input_path:
                value = dummy_input
            elif action.type in (output_file, output_folder, output_parent):
                value = f"unused-{action.dest}"
            elif action.choices:
                value = next(iter(action.choices))
            elif isinstance(action.type, Pair | Pairs):
                value = "a=1"
            else:
                value = "1" if action.type is not None else "x"
            argv += [flag, value]
    return argv


def run_main(argv: list[str], capture) -> tuple[int, list[str]]:
    """main(argv) in-process: its exit code and stderr lines (capsys or capfdbinary)."""
    capture.readouterr()
    code = main(argv)
    err = capture.readouterr().err
    text = err.decode() if isinstance(err, bytes) else err
    return code, [line for line in text.splitlines() if line.strip()]


def assert_one_line(code: int, err: list[str], command: str, flag: str, phrase: str) -> None:
    assert code == 2, (code, err)
    assert len(err) == 1, err
    assert err[0].startswith(f"mixscale {command}: error: {flag}: "), err[0]
    assert phrase in err[0] and "(fix: " in err[0], err[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short relative paths (a socket's name has a length limit)
    monkeypatch.setattr(cli_main, "build_parser", lambda: PARSER)  # built once: 30 ms a case
    Path("dummy-input").write_text("x")
    return tmp_path


def _ids(cases):
    return [" ".join(str(part) for part in case if isinstance(part, str)) for case in cases]


@pytest.mark.parametrize("how", ["same path", "hard link", "symlink"])
@pytest.mark.parametrize(
    ("command", "out_flag", "role", "in_flag"), INPUT_PAIRS, ids=_ids(INPUT_PAIRS)
)
def test_an_output_is_never_one_of_the_inputs(
    command, out_flag, role, in_flag, how, workdir, capsys
):
    given = Path("input.txt")
    given.write_text("the user's input\n")
    before = snapshot(given)
    out = {"same path": "input.txt", "hard link": "hard.txt", "symlink": "soft.txt"}[how]
    if how == "hard link":
        os.link(given, out)
    elif how == "symlink":
        Path(out).symlink_to(given.resolve())
    argv = dummy_argv(command, {out_flag: out, in_flag: "input.txt"}, "dummy-input")
    code, err = run_main(argv, capsys)
    assert_one_line(code, err, command, out_flag, f"is the input {in_flag} input.txt")
    assert snapshot(given) == before
    assert leftovers(workdir) == []


FOLDER_OUTPUTS = [(c, f, r) for c, f, r in OUTPUTS if r is output_folder]
FOLDER_INPUT_PAIRS = [p for p in INPUT_PAIRS if p[2] is output_folder]


@pytest.mark.parametrize(
    ("command", "out_flag", "role", "in_flag"), FOLDER_INPUT_PAIRS, ids=_ids(FOLDER_INPUT_PAIRS)
)
def test_a_folder_output_never_holds_an_input(command, out_flag, role, in_flag, workdir, capsys):
    Path("out").mkdir()
    Path("out/input.txt").write_text("the user's input\n")
    before = snapshot(Path("out"))
    argv = dummy_argv(command, {out_flag: "out", in_flag: "out/input.txt"}, "dummy-input")
    code, err = run_main(argv, capsys)
    assert_one_line(code, err, command, out_flag, f"holds the input {in_flag} out/input.txt")
    assert snapshot(Path("out")) == before


@pytest.mark.parametrize(("command", "first", "second"), OUTPUT_PAIRS, ids=_ids(OUTPUT_PAIRS))
def test_two_outputs_never_share_a_path(command, first, second, workdir, capsys):
    argv = dummy_argv(command, {first: "same", second: "./same"}, "dummy-input")
    code, err = run_main(argv, capsys)
    assert code == 2 and len(err) == 1 and "is also" in err[0], err
    assert not Path("same").exists()


def _make_folder(path: Path) -> str:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return "mixscale did not write it"


def _make_file(path: Path) -> str:
    path.write_text("a file")
    return "is a file, not a folder"


def _make_block(path: Path) -> str:
    node_or_skip(path, stat.S_IFBLK, NO_DRIVER)
    return "is a block device"


def _make_char(path: Path) -> str:
    node_or_skip(path, stat.S_IFCHR, DEV_NULL)
    return "is a character device, not a folder"


def _make_fifo(path: Path) -> str:
    os.mkfifo(path)
    return "is a FIFO, not a folder"


def _make_stdout_link(path: Path) -> str:
    path.symlink_to("/dev/stdout")
    return "not a folder"  # a terminal, a pipe or (under pytest) a file: never a folder


# what stands at the output path -> which roles must refuse it, and with which phrase
STANDING = {
    "a folder where a file is expected": (
        _make_folder,
        {output_file: "is a folder, not a file"},
    ),
    "a foreign non-empty folder": (_make_folder, {output_folder: None}),
    "a file where a folder is expected": (_make_file, {output_folder: None, output_parent: None}),
    "block device": (
        _make_block,
        {output_file: None, output_folder: None, output_parent: None},
    ),
    "character device": (_make_char, {output_folder: None, output_parent: None}),
    "FIFO": (_make_fifo, {output_folder: None, output_parent: None}),
    "symlink to /dev/stdout": (_make_stdout_link, {output_folder: None, output_parent: None}),
    "a file among the folders above": (
        None,
        {output_file: None, output_folder: None, output_parent: None},
    ),
}
STANDING_CASES = [
    (command, flag, role, what)
    for command, flag, role in OUTPUTS
    for what, (_, roles) in STANDING.items()
    if role in roles
]


@pytest.mark.parametrize(
    ("command", "flag", "role", "what"), STANDING_CASES, ids=_ids(STANDING_CASES)
)
def test_what_stands_at_an_output_is_refused_unchanged(command, flag, role, what, workdir, capsys):
    siblings = user_siblings(workdir)
    make, roles = STANDING[what]
    if make is None:  # out is below a file
        Path("notes.txt").write_text("keep")
        target, phrase, watched = "notes.txt/out", "notes.txt is", Path("notes.txt")
    else:
        made = make(Path("out"))
        target, phrase, watched = "out", roles[role] or made, Path("out")
    before = snapshot(watched)
    code, err = run_main(dummy_argv(command, {flag: target}, "dummy-input"), capsys)
    assert_one_line(code, err, command, flag, phrase)
    assert snapshot(watched) == before
    assert {p: snapshot(p) for p in siblings} == siblings
    assert leftovers(workdir) == []


STREAM_CASES = [(c, f, r) for c, f, r in OUTPUTS if r is output_file]


@pytest.mark.parametrize(("command", "flag", "role"), STREAM_CASES, ids=_ids(STREAM_CASES))
def test_a_stream_is_accepted_as_a_file_output_and_left_as_it_is(command, flag, role, workdir):
    """The checks before any work let a file output go into /dev/null, a FIFO or a link to
    stdout (written into when the command writes); the command's real writes are below."""
    os.mkfifo("fifo")
    Path("link").symlink_to("/dev/stdout")
    targets = [Path("fifo"), Path("link")]
    if os.geteuid() == 0:
        os.mknod("null", stat.S_IFCHR | 0o666, os.makedev(*DEV_NULL))
        targets.append(Path("null"))
    for target in targets:
        before = snapshot(target)
        args = PARSER.parse_args(dummy_argv(command, {flag: str(target)}, "dummy-input"))
        with paths_checked(args):
            pass
        assert snapshot(target) == before


# --- real commands: what they write, and where ---------------------------------------------------

WORLD = ["world", "optimum", "--world", "separable", "--tokens", "1e6"]
DOMAINS = ("web", "wiki", "code", "books", "science")  # the separable world's
SPEC = json.dumps(
    {"id": "r", "stage": "s", "seed": 0, "total_tokens": 1e6, "tokens": dict.fromkeys(DOMAINS, 2e5)}
)
CHEAP = {
    "world": WORLD,
    "mixtures": ["mixtures", "--prior", "a=1,b=1", "--count", "2", "--tokens", "100"],
    "fit": ["fit", "--runs", str(ROOT / "examples" / "runs_10M.tsv")],
    "anneal-costs": [
        "anneal-costs",
        "--sources",
        '{"s": {"acquisition_cost": 1}}',
        "--share",
        "0.3",
        "--training-cost",
        "1",
    ],
}  # (deterministic: a simulated train run records its wall time)


def cheap_output(command: str, workdir: Path, capfdbinary) -> bytes:
    code, err = run_main([*CHEAP[command], "--out", "reference"], capfdbinary)
    assert code == 0, err
    return (workdir / "reference").read_bytes()


@pytest.mark.parametrize("command", list(CHEAP))
def test_real_commands_write_into_streams_and_through_links(command, workdir, capfdbinary):
    want = cheap_output(command, workdir, capfdbinary)
    os.mkfifo("fifo")
    reader = FifoReader(Path("fifo"))
    code, err = run_main([*CHEAP[command], "--out", "fifo"], capfdbinary)
    assert code == 0 and reader.result() == want, err
    assert stat.S_ISFIFO(os.lstat("fifo").st_mode)

    code, err = run_main([*CHEAP[command], "--out", "fifo"], capfdbinary)  # no reader now
    assert code == 2 and len(err) == 1 and "fifo: is a FIFO with no reader" in err[0], err

    Path("real.json").write_text("old")
    Path("link.json").symlink_to("real.json")
    code, err = run_main([*CHEAP[command], "--out", "link.json"], capfdbinary)
    assert code == 0 and Path("real.json").read_bytes() == want and Path("link.json").is_symlink()

    Path("stdout").symlink_to("/dev/stdout")
    capfdbinary.readouterr()
    code = main([*CHEAP[command], "--out", "stdout"])
    captured = capfdbinary.readouterr()
    assert code == 0 and captured.out == want, captured.err
    assert os.readlink("stdout") == "/dev/stdout"

    if os.geteuid() == 0:
        null = node_or_skip(Path("null"), stat.S_IFCHR, DEV_NULL)
        full = node_or_skip(Path("full"), stat.S_IFCHR, DEV_FULL)
        before = (snapshot(null), snapshot(full))
        assert run_main([*CHEAP[command], "--out", "null"], capfdbinary)[0] == 0
        code, err = run_main([*CHEAP[command], "--out", "full"], capfdbinary)
        assert code == 2 and len(err) == 1 and "full: no space left on the device" in err[0]
        assert (snapshot(null), snapshot(full)) == before
    assert leftovers(workdir) == []


def test_a_torch_run_and_the_reports_refuse_a_stream_before_any_work(workdir, capsys):
    """Their outputs have files beside them (a model, checkpoints, figures): /dev/stdout's
    folder is /dev, nobody's output."""
    Path("stdout").symlink_to("/dev/stdout")
    settings = json.dumps({"stores": "s", "tokenizer": "t", "model": {"n_layer": 1}})
    for argv in (
        ["train", "--backend", "torch", "--spec", SPEC, "--settings", settings],
        ["report", "--experiment", "e", "--ddo", "dummy-input"],
        ["anneal-report", "--utility", "dummy-input", "--runs", "dummy-input"],
    ):
        code, err = run_main([*argv, "--out", "stdout"], capsys)
        assert_one_line(code, err, argv[0], "--out", "is a stream")
    assert sorted(os.listdir(".")) == ["dummy-input", "stdout"]


def test_a_torch_run_refuses_a_foreign_model_folder_before_training(workdir, capsys):
    Path("run").mkdir()
    _foreign(Path("run") / "model")
    before = snapshot(Path("run"))
    settings = json.dumps({"stores": "s", "tokenizer": "t", "model": {"n_layer": 1}})
    argv = ["train", "--backend", "torch", "--spec", SPEC, "--settings", settings]
    code, err = run_main([*argv, "--out", "run/metrics.json"], capsys)
    assert code == 2 and len(err) == 1 and "run/model" in err[0], err
    assert "mixscale did not write it" in err[0]
    assert snapshot(Path("run")) == before


def test_corpus_never_overwrites_its_own_source_file(workdir, capsys):
    """A corpus source's files are inputs found only as the command runs."""
    docs = [json.dumps({"text": f"document {i} " + "word " * 60}) for i in range(5)]
    Path("sci.jsonl").write_text("\n".join(docs) + "\n")
    before = snapshot(Path("sci.jsonl"))
    code, err = run_main(["corpus", "--source", 'sci={"path": "sci.jsonl"}', "--out", "."], capsys)
    assert code == 2 and len(err) == 1 and "is the input sci.jsonl" in err[0], err
    assert snapshot(Path("sci.jsonl")) == before
    code, err = run_main(["corpus", "--source", 'sci={"path": "sci.jsonl"}', "--out", "c"], capsys)
    assert code == 0 and Path("c/sci.jsonl").is_file(), err


def test_tokenizer_folder_siblings_rerun_and_foreign_folder(workdir, capsys):
    """A real folder command: its output is swapped in beside the user's DIR.tmp/DIR.old,
    replaces its own earlier output, and refuses a folder it did not write."""
    words = " ".join(f"w{i}" for i in range(200))
    docs = [json.dumps({"text": f"{words} doc {i}"}) for i in range(40)]
    Path("a.jsonl").write_text("\n".join(docs) + "\n")
    siblings = user_siblings(workdir)
    argv = ["tokenizer", "--corpus", "a.jsonl", "--vocab-size", "300", "--validation-bytes", "100"]
    for _ in range(2):  # built, then rebuilt over its own folder
        code, err = run_main([*argv, "--out", "out"], capsys)
        assert code == 0, err
        assert (workdir / "out" / "tokenizer.json").is_file()
        assert (workdir / "out" / fileio.FOLDER_MARKER).is_file()
    (workdir / "out" / "notes.txt").write_text("mine")
    before = snapshot(workdir / "out")
    code, err = run_main([*argv, "--out", "out"], capsys)
    assert_one_line(code, err, "tokenizer", "--out", "holds notes.txt")
    assert snapshot(workdir / "out") == before
    assert {p: snapshot(p) for p in siblings} == siblings
    assert leftovers(workdir) == []


def test_inputs_found_while_running_are_protected_only_while_it_runs(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("read by the command")

    @fileio.reading_inputs
    def command() -> None:
        fileio.protect_inputs([source])  # found only now, as a corpus finds its source files
        fileio.atomic_write_text(source, "would overwrite it")

    with pytest.raises(InputError, match="is the input"):
        command()
    assert source.read_text() == "read by the command"
    fileio.protect_inputs([source])  # outside a command: no lasting protection (inode reuse)
    fileio.atomic_write_text(source, "a later command's output")
    assert source.read_text() == "a later command's output"


def test_derive_and_install_profile_never_overwrite_what_they_read(workdir, capsys):
    Path("profiles/slurm").mkdir(parents=True)
    template = Path("profiles/slurm/config.yaml")
    template.write_text((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    before = snapshot(template)
    argv = ["install-profile", "--partition", "p", "--source", "profiles/slurm"]
    code, err = run_main([*argv, "--config-dir", "profiles", "--force"], capsys)
    assert code == 2 and len(err) == 1 and "is the input profiles/slurm/config.yaml" in err[0]
    assert snapshot(template) == before
    code, err = run_main([*argv, "--config-dir", "installed"], capsys)
    assert code == 0 and Path("installed/slurm/config.yaml").is_file(), err

    Path("corpus").mkdir()
    code, err = run_main(
        ["derive", "--source", 'x={"derive": "a"}', "--corpus-dir", "corpus", "--out", "corpus"],
        capsys,
    )
    assert_one_line(code, err, "derive", "--out", "is the input --corpus-dir corpus")


def test_a_store_being_built_or_swapped_out_is_never_a_domain(tmp_path):
    from mixscale.train.model import store_names

    for name in ("science", ".mixscale-science.x1.old", ".mixscale-code.x2.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text("{}")
    assert store_names(str(tmp_path)) == ["science"]


def test_a_checkpoint_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    import torch

    from mixscale.train.checkpoints import save_checkpoint

    victim = tmp_path / "victim.txt"
    victim.write_text("not a checkpoint")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "step-000000001.pt").symlink_to(victim)
    saved = save_checkpoint(folder, 1, {"step": 1, "w": torch.zeros(2)})
    assert victim.read_text() == "not a checkpoint"
    assert not saved.is_symlink() and torch.load(saved, weights_only=True)["step"] == 1
    assert leftovers(tmp_path) == []


def test_a_model_never_replaces_the_folders_it_is_made_from(workdir, capsys):
    """Inputs named inside --settings or the run's spec (stores, tokenizer, the checkpoint an
    annealing run starts from) are protected like flags: init-model into the tokenizer, or a
    run whose model folder is its own starting checkpoint, is refused, the folder unchanged."""
    build(Path("tok"), {"tokenizer.json": "{}"})
    build(Path("base/model"), {"config.json": "{}"})
    Path("base/metrics.json").write_text("{}")
    store = Path("stores/a")
    store.mkdir(parents=True)
    meta = {"domain": "a", "dtype": "uint16", "vocab_size": 64, "eos_id": 0}
    (store / "meta.json").write_text(json.dumps(meta))
    (store / "train.bin").write_bytes(b"")
    (store / "val.bin").write_bytes(b"")
    before = snapshot(Path("tok")), snapshot(Path("base"))
    model = {"type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2}
    settings = {"stores": "stores", "tokenizer": "tok", "model": model, "train": {"seq_len": 8}}
    code, err = run_main(["init-model", "--settings", json.dumps(settings), "--out", "tok"], capsys)
    assert code == 2 and len(err) == 1 and "tok: is the input tok" in err[0], err
    spec = json.loads(SPEC) | {"model": {"checkpoint": "base/model"}}
    argv = ["train", "--backend", "torch", "--spec", json.dumps(spec)]
    code, err = run_main(
        [*argv, "--settings", json.dumps(settings), "--out", "base/metrics.json"], capsys
    )
    assert code == 2 and len(err) == 1, err
    assert "base/model: is the input base/model" in err[0], err
    assert (snapshot(Path("tok")), snapshot(Path("base"))) == before
    assert leftovers(workdir) == []


HOSTILE_SOURCE_NAMES = ["../../escaped", "/tmp/abs", "a/b", ".hidden", "..", "", "x\ny"]


@pytest.mark.parametrize("name", HOSTILE_SOURCE_NAMES)
@pytest.mark.parametrize("command", ["corpus", "derive"])
def test_a_source_name_cannot_write_outside_out(command, name, tmp_path, monkeypatch, capsys):
    """A domain or source name becomes a file name (<name>.jsonl): anything but a config name is
    refused in one line, and nothing is written anywhere."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doc.txt").write_text("one document of text\n", encoding="utf-8")
    (tmp_path / "deep" / "out").mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    if command == "corpus":
        argv = ["corpus", "--out", "deep/out/c", "--source", f'{name}={{"path": "doc.txt"}}']
    else:
        spec = '{"derive": "web", "kind": "curated", "bytes": 20000}'
        argv = ["derive", "--source", f"{name}={spec}", "--corpus-dir", "deep",
                "--validation-bytes", "2000", "--out", "deep/out/d"]  # fmt: skip
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "--source" in err[0], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/abs.jsonl").exists()
