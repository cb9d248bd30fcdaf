"""A hostile pass over mixscale: every case is something a hostile (or careless) user of the CLI
and the Snakemake workflow does; the script runs each in its own temporary folder and classifies
what happened, automatically.

    python tests/hostile/run_pass.py --root <checkout> --out <file.json> [--markdown F.md]
        [--only SUBSTRING] [--jobs N] [--against earlier.json] [--keep]

``--root`` is the checkout under test: its package runs (``PYTHONPATH=<root>/workflow``, the
Python of this venv) and its Snakefile (``snakemake -s <root>/Snakefile``), so the same cases run
against the code before and after fixes. The cases are in ``cases.py`` beside this file.

Outcomes, the first that applies (a case can show several symptoms; all are recorded):

- ``security``: a marker file a payload would create exists, or a case saw code run / a value
  escape where it must not (an injected path, raw HTML in a report)
- ``data loss``: a protected file changed or vanished, finished work was recomputed or left
  damaged
- ``hang``: a command ran past its timeout (<= 20 s) or past the memory cap; its process group is
  killed
- ``traceback``: a Python traceback on stderr/stdout or in a job's log
- ``silent wrong``: exit 0 where a refusal was expected, a wrong result, or a valid input refused
- ``unclear / late``: refused, but not in one line, without naming the flag/field/file, with
  another exit code than 2, or only after work started (passes ``mixscale check`` /
  ``snakemake -n`` and fails in a job)
- ``clean``: what the case expected

Nothing outside the temporary folders is written: HOME, XDG_*, TMPDIR and the caches point into
the case's folder, the hub is offline and a dead proxy catches any other network access.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # the venv whose python, snakemake and tools run the cases
MARKER = "PWNED"  # every payload creates a file of this name in its case folder
TIMEOUT = 20.0  # seconds of CPU, or of being blocked, per command (the brief: <= 20 s)
HARD_CAP = 4  # x TIMEOUT of wall time, whatever the command does (a starved machine)
BLOCKED_WINDOW = 6.0  # seconds without CPU progress that make a command past its timeout blocked
MEMORY_CAP = 2_500_000_000  # bytes of resident memory of a command's process group
OUTCOMES = ("security", "data loss", "hang", "traceback", "silent wrong", "unclear / late")
ALL_OUTCOMES = (*OUTCOMES, "clean")
NOISE = ("Using profile", "Assuming unrestricted shared filesystem")


# --- running one command ------------------------------------------------------------------


@dataclass
class Result:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    memory_killed: bool = False
    timeout: float = TIMEOUT

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        """The lines a refusal printed: stderr without argparse's usage block, warnings and
        Snakemake's start-up notes."""
        lines, in_usage = [], False
        for line in self.stderr.splitlines():
            if not line.strip():
                continue
            if line.startswith("usage:"):
                in_usage = True
                continue
            if in_usage and line.startswith(" "):
                continue
            in_usage = False
            if ": warning:" in line or line.startswith(NOISE):
                continue
            lines.append(line)
        return lines

    def first_error(self) -> str:
        lines = self.error_lines()
        return (lines[-1] if lines else self.stderr.strip()[-200:]) or "(no output)"


def _group_usage(pgid: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds (its own and its reaped children's) of every process in a
    process group, from /proc."""
    rss, cpu = 0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) != pgid:  # field 5 of stat: the process group
            continue
        rss += int(fields[21]) * page  # field 24: resident pages
        cpu += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return rss, cpu


def run_command(
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    stdin: bytes | None = None,
    timeout: float = TIMEOUT,
    interrupt_after: float | None = None,
    interrupt_when: Callable[[], bool] | None = None,
    keep_stdin_open: bool = False,
) -> Result:
    """Run argv in its own process group and kill the group when it hangs: ``timeout`` seconds
    of CPU (a loop), or ``timeout`` seconds of wall time while its CPU time stands still
    (blocked: a FIFO, a lock, the network), or ``HARD_CAP`` x ``timeout`` of wall time whatever
    it does, or more than ``MEMORY_CAP`` of memory. CPU time, not wall time, so that a command
    starved by a busy machine is not taken for a hang. ``interrupt_after``/``interrupt_when``:
    send SIGINT (Ctrl-C) to the group after that many seconds / once the condition holds."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        if stdin is not None:
            try:
                proc.stdin.write(stdin)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                if not keep_stdin_open:  # a terminal: nothing typed, never closed
                    proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
        timed_out = memory_killed = interrupted = False
        history: list[tuple[float, float]] = []  # (wall, cpu) samples
        while proc.poll() is None:
            time.sleep(0.25)
            elapsed = time.monotonic() - start
            rss, cpu = _group_usage(proc.pid)
            history.append((elapsed, cpu))
            wants_interrupt = (interrupt_after is not None and elapsed > interrupt_after) or (
                interrupt_when is not None and interrupt_when()
            )
            if wants_interrupt and not interrupted:
                _signal_group(proc.pid, signal.SIGINT)
                interrupted = True
            recent = [c for t, c in history if t >= elapsed - BLOCKED_WINDOW]
            blocked = elapsed > timeout and recent and recent[-1] - recent[0] < 0.1
            timed_out = cpu > timeout or blocked or elapsed > HARD_CAP * timeout
            memory_killed = rss > MEMORY_CAP
            if timed_out or memory_killed:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        _signal_group(proc.pid, signal.SIGKILL)  # children left behind by a finished command
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        out.seek(0)
        err.seek(0)
        return Result(
            argv=list(argv),
            rc=None if timed_out or memory_killed else proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            seconds=round(time.monotonic() - start, 2),
            timed_out=timed_out,
            memory_killed=memory_killed,
            timeout=timeout,
        )


def kill_leftovers(home: Path) -> None:
    """Kill processes a case started that outlived it (Snakemake may start jobs in sessions of
    their own, out of reach of the process group): every process whose environment has the
    case's HOME, until none is left (one may start while the others are killed)."""
    for _ in range(20):
        if not _kill_with_home(home):
            return
        time.sleep(0.1)


def _kill_with_home(home: Path) -> int:
    marker = f"HOME={home}".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except (OSError, ValueError):
            continue
    return killed


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- the context a case runs in -------------------------------------------------------------


@dataclass
class Symptom:
    outcome: str
    detail: str


@dataclass
class Context:
    """A case's folder, its commands and what they showed."""

    root: Path
    dir: Path
    fixtures: Fixtures
    results: list[Result] = field(default_factory=list)
    symptoms: list[Symptom] = field(default_factory=list)
    protected: dict[Path, str | None] = field(default_factory=dict)
    # exceptions whose tracebacks another case classifies (a timing-dependent symptom here)
    tracebacks_elsewhere: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    # environment --------------------------------------------------------------------------

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        home = self.dir / "home"
        for sub in ("", ".config", ".cache", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": f"{BIN}:/usr/bin:/bin",
            "PYTHONPATH": str(self.root / "workflow"),
            # bytecode of the checkout under test goes here, not into the checkout
            "PYTHONPYCACHEPREFIX": str(self.fixtures.work.parent / "_pycache"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "TMPDIR": str(home / "tmp"),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(home / ".cache" / "matplotlib"),
            "LANG": "C.UTF-8",
            "SLURM_CONF": "/dev/null",  # no SLURM plugin start-up query (tests/conftest.py)
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(home / ".cache" / "huggingface"),
            "WANDB_MODE": "offline",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # any other network access dies at once instead of waiting
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "no_proxy": "",
        }
        env.update(extra or {})
        return env

    # running ------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        env = self.env(kwargs.pop("env", None))
        res = run_command(argv, kwargs.pop("cwd", self.dir), env, **kwargs)
        self.results.append(res)
        return res

    def mixscale(self, *args: str, **kwargs: Any) -> Result:
        return self.run([str(BIN / "python"), "-m", "mixscale", *args], **kwargs)

    def snakemake(self, *args: str, profile: bool = True, **kwargs: Any) -> Result:
        argv = [str(BIN / "snakemake"), "-s", str(self.root / "Snakefile")]
        argv += ["--directory", str(self.dir)]
        if profile:
            argv += ["--profile", str(self.root / "profiles" / "local")]
        return self.run([*argv, *args], **kwargs)

    def python(self, code: str, **kwargs: Any) -> Result:
        return self.run([str(BIN / "python"), "-c", code], **kwargs)

    # files ----------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.dir / name

    def write(self, name: str, text: str | bytes) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    def use(self, fixture: str) -> None:
        """Copy a fixture's files into the case folder (mtimes kept)."""
        self.fixtures.copy(fixture, self.dir)

    def protect(self, *names: str) -> None:
        """Files that must be the same after the case (a digest now, compared at the end)."""
        for name in names:
            p = self.dir / name
            self.protected[p] = _digest(p)

    # verdicts ------------------------------------------------------------------------------

    def note(self, outcome: str, detail: str) -> None:
        assert outcome in OUTCOMES, outcome
        self.symptoms.append(Symptom(outcome, detail))

    def security(self, detail: str) -> None:
        self.note("security", detail)

    def lost(self, detail: str) -> None:
        self.note("data loss", detail)

    def wrong(self, detail: str) -> None:
        self.note("silent wrong", detail)

    def unclear(self, detail: str) -> None:
        self.note("unclear / late", detail)

    def refuses(self, res: Result, *names: str, code: int | None = 2) -> bool:
        """The contract for bad input: a refusal in one line naming ``names`` (the flag, field
        or file), exit ``code`` (None: any non-zero). True when refused at all."""
        if res.timed_out or res.memory_killed:
            return False  # recorded as a hang
        if res.rc == 0:
            self.wrong(f"exit 0 where a refusal was expected ({_tail(res.stderr)})")
            return False
        lines = res.error_lines()
        if "Traceback (most recent call last)" in res.output:
            return True  # recorded as a traceback
        if len(lines) != 1:
            self.unclear(f"refused in {len(lines)} lines: {' | '.join(lines[-3:])[:300]}")
        line = res.first_error()
        # a flag may be named with or without its dashes ("--seed" or "seed")
        missing = [n for n in names if _loose(n) not in _loose(line)]
        if missing:
            self.unclear(f"the refusal does not name {missing}: {line[:300]}")
        if code is not None and res.rc != code:
            self.unclear(f"exit {res.rc}, not {code}: {line[:200]}")
        return True

    def succeeds(self, res: Result, what: str = "a valid input") -> bool:
        if res.timed_out or res.memory_killed:
            return False
        if res.rc != 0 and "Traceback (most recent call last)" not in res.output:
            self.wrong(f"{what} refused (exit {res.rc}): {res.first_error()[:300]}")
        return res.rc == 0

    def late(self, res: Result, where: str) -> None:
        """A refusal that came only when a job ran (the config or flags passed the checks)."""
        if res.rc not in (0, None):
            self.unclear(f"late: passes the checks, fails only in {where}: {res.first_error()}")


def _loose(text: str) -> str:
    """For matching a name in a message: case, dashes and underscores ignored (--passage-words
    and finetune.embedded.passage_words name the same setting)."""
    return text.lstrip("-").lower().replace("_", "-")


def _digest(p: Path) -> str | None:
    if p.is_symlink():
        return "link:" + os.readlink(p)
    if p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()
    if p.is_dir():
        items = sorted(str(q.relative_to(p)) + ":" + str(_digest(q)) for q in p.rglob("*"))
        return "dir:" + hashlib.sha256("\n".join(items).encode()).hexdigest()
    return None


def _tail(text: str, n: int = 160) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:n]


# --- fixtures: files many cases start from, built once per pass ------------------------------


class Fixtures:
    """Named folders built once (lazily, under a lock) and copied into the cases that use them."""

    def __init__(self, root: Path, work: Path, builders: dict[str, Callable[[Context], None]]):
        self.root, self.work, self.builders = root, work / "_fixtures", builders
        self.built: dict[str, Path | Exception] = {}
        self.lock = threading.RLock()  # a fixture may build from another

    def copy(self, name: str, dest: Path) -> None:
        folder = self.get(name)
        for item in folder.iterdir():
            target = dest / item.name
            if item.is_dir() and not item.is_symlink():
                shutil.copytree(item, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target, follow_symlinks=False)

    def get(self, name: str) -> Path:
        with self.lock:
            if name not in self.built:
                folder = self.work / name
                folder.mkdir(parents=True, exist_ok=True)
                ctx = Context(self.root, folder, self)
                try:
                    self.builders[name](ctx)
                    failed = [r for r in ctx.results if r.rc != 0]
                    if failed:
                        raise RuntimeError(
                            f"fixture {name}: {' '.join(failed[0].argv[-6:])}: "
                            f"{_tail(failed[0].output, 400)}"
                        )
                    kill_leftovers(folder / "home")
                    shutil.rmtree(folder / "home", ignore_errors=True)
                    self.built[name] = folder
                except Exception as exc:
                    self.built[name] = exc
            built = self.built[name]
        if isinstance(built, Exception):
            raise HarnessError(str(built))
        return built


class HarnessError(Exception):
    """The pass itself failed (a fixture did not build): the case is not classified."""


# --- cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    probes: str  # the class the case was written to probe
    what: str  # one line: what the hostile user does
    expect: str  # what a demanding user expects
    body: Callable[[Context], None]


def classify(ctx: Context) -> str:
    for outcome in OUTCOMES:
        if any(s.outcome == outcome for s in ctx.symptoms):
            return outcome
    return "clean"


def automatic_symptoms(ctx: Context) -> None:
    """What every case is checked for, whatever it expected."""
    markers = list(ctx.dir.rglob(MARKER))
    if markers:
        ctx.security(f"payload ran: {', '.join(str(p.relative_to(ctx.dir)) for p in markers)}")
    for p, before in ctx.protected.items():
        after = _digest(p)
        if after != before:
            state = "removed" if after is None else "changed"
            ctx.lost(f"{p.relative_to(ctx.dir)} {state}")
    for res in ctx.results:
        if res.timed_out:
            ctx.note("hang", f"{_short(res.argv)} ran past its {res.timeout:g} s (killed)")
        if res.memory_killed:
            ctx.note("hang", f"{_short(res.argv)} took more than {MEMORY_CAP / 1e9:g} GB")
        if "Traceback (most recent call last)" in res.output:
            _traceback(ctx, f"{_short(res.argv)}: {_exception_line(res.output)}")
    for log in ctx.dir.rglob("*.log"):
        if ".snakemake" in log.parts or "home" in log.relative_to(ctx.dir).parts[:1]:
            continue
        text = log.read_text(encoding="utf-8", errors="replace")
        if "Traceback (most recent call last)" in text and not any(
            "Traceback (most recent call last)" in r.output for r in ctx.results
        ):
            _traceback(ctx, f"in {log.relative_to(ctx.dir)}: {_exception_line(text)}")


def _traceback(ctx: Context, detail: str) -> None:
    if any(name in detail for name in ctx.tracebacks_elsewhere):
        ctx.notes.append(f"traceback classified by another case: {detail}")
    else:
        ctx.note("traceback", detail)


def _exception_line(text: str) -> str:
    """The exception a traceback ended in (its first line)."""
    after = text.rsplit("Traceback (most recent call last)", 1)[-1]
    for line in after.splitlines()[1:]:
        if EXCEPTION_LINE.match(line):
            return line.strip()[:200]
    return _tail(after, 200)


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)\b")


def _short(argv: Sequence[str]) -> str:
    """A command as the report shows it: mixscale/snakemake and their flags."""
    argv = list(argv)
    if argv[1:3] == ["-m", "mixscale"]:
        argv = ["mixscale", *argv[3:]]
    elif argv and argv[0].endswith("snakemake"):
        rest = argv[1:]
        kept = []
        skip = 0
        for i, a in enumerate(rest):
            if skip:
                skip -= 1
                continue
            if a in ("-s", "--directory", "--profile") and i + 1 < len(rest):
                skip = 1
                continue
            kept.append(a)
        argv = ["snakemake", *kept]
    elif argv[1:2] == ["-c"]:
        argv = ["python", "-c", "..."]
    text = " ".join(a if len(a) < 80 else a[:60] + "...(" + str(len(a)) + " chars)" for a in argv)
    return text[:400]


def run_case(case: Case, root: Path, work: Path, fixtures: Fixtures, keep: bool) -> dict:
    folder = work / case.id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ctx = Context(root, folder, fixtures)
    start = time.monotonic()
    try:
        case.body(ctx)
        kill_leftovers(folder / "home")
        automatic_symptoms(ctx)
        outcome = classify(ctx)
    except HarnessError as exc:
        outcome = "harness error"
        ctx.symptoms.append(Symptom(outcome, str(exc)))
    except Exception:
        outcome = "harness error"
        ctx.symptoms.append(Symptom(outcome, traceback.format_exc(limit=4)[-600:]))
    record = {
        "id": case.id,
        "probes": case.probes,
        "what": case.what,
        "expect": case.expect,
        "outcome": outcome,
        "notes": [_public(n, root, folder) for n in ctx.notes],
        "symptoms": [
            {"outcome": s.outcome, "detail": _public(s.detail, root, folder)} for s in ctx.symptoms
        ],
        "commands": [
            {
                "command": _public(_short(r.argv), root, folder),
                "exit": r.rc,
                "seconds": r.seconds,
                "timed_out": r.timed_out,
                "stderr_tail": _public(r.stderr.strip()[-400:], root, folder),
            }
            for r in ctx.results
        ],
        "seconds": round(time.monotonic() - start, 2),
    }
    if keep:  # every command's full output beside the case's files
        for n, r in enumerate(ctx.results, 1):
            (folder / f"_command-{n}.txt").write_text(
                f"$ {_short(r.argv)}\nexit {r.rc} after {r.seconds} s\n--- stdout\n{r.stdout}"
                f"\n--- stderr\n{r.stderr}",
                encoding="utf-8",
                errors="backslashreplace",
            )
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return record


def _public(text: str, root: Path, folder: Path) -> str:
    """Paths as $CASE and $ROOT, so before/after reports compare line by line."""
    text = text.replace(str(folder), "$CASE").replace(str(root), "$ROOT")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # argv may hold surrogates


# --- the report ------------------------------------------------------------------------------


def counts(records: Iterable[dict]) -> dict[str, int]:
    out = dict.fromkeys((*ALL_OUTCOMES, "harness error"), 0)
    for r in records:
        out[r["outcome"]] += 1
    return out


def markdown(report: dict) -> str:
    records = report["cases"]
    c = counts(records)
    lines = [
        f"# Hostile pass: {report['root_commit'][:10]} ({report['date']})",
        "",
        f"{len(records)} cases, {report['seconds']:.0f} s, `python tests/hostile/run_pass.py "
        f"--root {report['root_label']}`; every case runs in its own temporary folder.",
        "",
        "| outcome | cases |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in c.items() if v or k != "harness error"]
    lines += ["", "## Probed class x outcome", ""]
    probes = sorted({r["probes"] for r in records})
    lines.append("| probed \\ outcome | " + " | ".join(ALL_OUTCOMES) + " |")
    lines.append("|---" * (len(ALL_OUTCOMES) + 1) + "|")
    for p in probes:
        row = counts(r for r in records if r["probes"] == p)
        lines.append(f"| {p} | " + " | ".join(str(row[o]) for o in ALL_OUTCOMES) + " |")
    lines += ["", "## Cases that are not clean", ""]
    for outcome in (*OUTCOMES, "harness error"):
        hit = [r for r in records if r["outcome"] == outcome]
        if not hit:
            continue
        lines += [f"### {outcome} ({len(hit)})", ""]
        for r in hit:
            detail = next(s["detail"] for s in r["symptoms"] if s["outcome"] == outcome)
            command = r["commands"][-1]["command"] if r["commands"] else ""
            lines.append(f"- `{r['id']}`: {r['what']}. `{_md(command)}` -> {_md(detail)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return " ".join(text.replace("`", "'").replace("|", "\\|").split())[:400]


def compare_with(report: dict, earlier_path: Path) -> list[str]:
    earlier = {r["id"]: r["outcome"] for r in json.loads(earlier_path.read_text())["cases"]}
    changes = []
    for r in report["cases"]:
        before = earlier.get(r["id"], "(new case)")
        if before != r["outcome"]:
            changes.append(f"{r['id']}: {before} -> {r['outcome']}")
    return changes


# --- main ------------------------------------------------------------------------------------


def _git_commit(root: Path) -> str:
    res = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return res.stdout.strip() or "unknown"


def _git_status(root: Path) -> str:
    res = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--ignored"],
        capture_output=True,
        text=True,
        check=False,
    )
    # bytecode and lint caches are not the checkout changing
    skip = ("__pycache__", ".ruff_cache")
    return "\n".join(ln for ln in res.stdout.splitlines() if not any(k in ln for k in skip))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the checkout under test")
    parser.add_argument("--out", required=True, help="per-case results (JSON)")
    parser.add_argument("--markdown", help="counts and non-clean cases (default: OUT with .md)")
    parser.add_argument("--only", action="append", help="run cases whose id contains this")
    parser.add_argument("--jobs", type=int, default=1, help="cases at a time (default 1)")
    parser.add_argument("--against", help="an earlier JSON: list the cases whose outcome moved")
    parser.add_argument("--keep", action="store_true", help="keep the case folders")
    parser.add_argument("--work", help="where the case folders go (default: a new temp dir)")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    sys.dont_write_bytecode = True  # nothing written beside the script
    sys.modules.setdefault("run_pass", sys.modules[__name__])  # cases.py imports this module
    from cases import CASES, FIXTURES

    root = Path(args.root).resolve()
    selected = [c for c in CASES if not args.only or any(o in c.id for o in args.only)]
    if args.list:
        for c in selected:
            print(f"{c.id:44s} {c.probes:14s} {c.what}")
        print(f"{len(selected)} cases")
        return 0
    if not (root / "Snakefile").is_file() or not (root / "workflow" / "mixscale").is_dir():
        parser.error(f"--root {root}: not a mixscale checkout (no Snakefile, workflow/mixscale)")
    work = Path(args.work or tempfile.mkdtemp(prefix="mixscale-hostile-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    fixtures = Fixtures(root, work, FIXTURES)
    status_before = _git_status(root)
    start = time.monotonic()
    records: list[dict] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_case, c, root, work, fixtures, args.keep) for c in selected]
        for case, future in zip(selected, futures, strict=True):
            record = future.result()
            records.append(record)
            first = next((s["detail"] for s in record["symptoms"]), "")
            print(
                f"{len(records):4d}/{len(selected)} {record['outcome']:15s} {case.id:44s} "
                f"{record['seconds']:6.1f} s {first[:110]}",
                flush=True,
            )
    status_after = _git_status(root)
    report = {
        "root": str(root),
        "root_label": args.root,
        "root_commit": _git_commit(root),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - start, 1),
        "counts": counts(records),
        "checkout_touched": status_after != status_before,
        "cases": records,
    }
    if report["checkout_touched"]:
        print("warning: the checkout under test changed during the pass", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    md.write_text(markdown(report), encoding="utf-8")
    print(json.dumps(report["counts"]))
    if args.against:
        changes = compare_with(report, Path(args.against))
        print(f"{len(changes)} outcomes moved against {args.against}")
        for line in changes:
            print("  " + line)
    for name in fixtures.built:
        kill_leftovers(fixtures.work / name / "home")
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
        time.sleep(1)  # a process killed a moment ago may still have written bytecode
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
