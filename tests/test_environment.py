"""When the machine, not the input, is the cause: a full disk, a read-only folder, a hub that
cannot be reached. Each ends in one line naming the file (or the config field) and the fix, exit
2, no traceback; nothing half-written is left, and what was computed before stays usable.

The full and read-only file systems are real: small tmpfs mounts (root only, as in CI; the tests
are skipped elsewhere and say so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from test_trainer import run_train

from conftest import run_cli, tiny_settings

TABLE = (
    "run\ttokens.a\ttokens.b\tloss.a\tloss.b\n"
    "base\t1e7\t1e7\t2.9\t3.1\n"
    "a_up\t3e7\t1e7\t2.7\t3.12\n"
    "a_down\t3.3e6\t1e7\t3.2\t3.08\n"
    "b_up\t1e7\t3e7\t2.92\t2.85\n"
    "b_down\t1e7\t3.3e6\t2.88\t3.5\n"
)


def can_mount() -> str | None:
    """Why small file systems cannot be mounted here, or None."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "needs root (mount) for a real full or read-only file system"
    return None


@contextmanager
def small_filesystem(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes at where (unmounted afterwards)."""
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, option: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{option}", str(where)], check=True)


def fill(where: Path) -> None:
    """Write until the file system is full."""
    with (where / "filler").open("wb", buffering=0) as fh:
        try:
            while fh.write(b"\0" * 4096):
                pass
        except OSError:
            pass


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "(fix: " in lines[0], lines[0]
    return lines[0]


def leftovers(where: Path) -> list[str]:
    """Temporary files an interrupted write left behind."""
    return sorted(str(p) for p in where.rglob("*") if "tmp" in p.name)


needs_mount = pytest.mark.skipif(can_mount() is not None, reason=str(can_mount()))


@needs_mount
def test_full_disk_while_writing_weights_and_figure(tmp_path):
    (tmp_path / "runs.tsv").write_text(TABLE)
    with small_filesystem(tmp_path / "full", 256 * 1024) as full:
        fill(full)
        for out, figure in (("W.json", []), ("W2.json", ["--figure", str(full / "fit.png")])):
            res = run_cli(
                "ddo", "--runs", str(tmp_path / "runs.tsv"), "--tokens", "2e7",
                "--bootstrap", "0", *figure, "--out", str(full / out),
            )  # fmt: skip
            line = one_error_line(res)
            written = "fit.png" if figure else out
            assert f"{full / written}: no space left on the device" in line, line
        assert sorted(p.name for p in full.iterdir()) == ["filler"], leftovers(full)


@needs_mount
def test_read_only_folder(tmp_path):
    (tmp_path / "runs.tsv").write_text(TABLE)
    with small_filesystem(tmp_path / "ro", 1024 * 1024) as ro:
        remount(ro, "ro")
        res = run_cli(
            "ddo", "--runs", str(tmp_path / "runs.tsv"), "--tokens", "2e7", "--bootstrap", "0",
            "--out", str(ro / "ddo" / "W.json"),
        )  # fmt: skip
        line = one_error_line(res)
        assert f"{ro}/ddo/W.json: read-only file system (fix: remount it writable" in line, line


@needs_mount
def test_disk_full_mid_training_keeps_the_last_checkpoint_and_resumes(data_dir, tmp_path):
    """The disk fills between two checkpoints: one line naming the checkpoint that could not be
    written, no partial file, the previous checkpoint intact; with space again the run resumes
    from it and ends exactly as an uninterrupted run."""
    settings = tiny_settings(data_dir, checkpoint_every=5)
    reference = tmp_path / "reference"
    res = run_train(reference, settings)
    assert res.returncode == 0, res.stderr[-3000:]
    checkpoint = max(p.stat().st_size for p in (reference / "checkpoints").glob("step-*.pt"))
    with small_filesystem(tmp_path / "disk", int(checkpoint * 1.5)) as disk:
        out = disk / "run"
        line = one_error_line(run_train(out, settings))
        assert "no space left on the device" in line, line
        assert f"{out}/checkpoints/step-000000010.pt" in line, line
        saved = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert saved == ["step-000000005.pt"], saved  # no partial or temporary file
        state = torch.load(out / "checkpoints" / saved[0], weights_only=True)
        assert state["step"] == 5
        remount(disk, "size=64m")  # space freed
        res = run_train(out, settings)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "resumed from checkpoint at step 5 of" in res.stdout
        resumed = json.loads((out / "metrics.json").read_text())
        assert resumed["resumed_at_step"] == 5
        uninterrupted = json.loads((reference / "metrics.json").read_text())
        assert resumed["final_losses"] == uninterrupted["final_losses"]


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # a compute node without network


def offline_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # offline mode answers at once; without it the hub is retried (~40 s) to the same line
    return subprocess.run(
        [sys.executable, "-m", "mixscale", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **OFFLINE},
        check=False,
    )


def test_unreachable_pretrained_tokenizer(tmp_path):
    res = offline_cli(
        "tokenizer", "--pretrained", "no-such-org/no-such-tokenizer", "--out", "tok", cwd=tmp_path
    )
    line = one_error_line(res)
    assert "data.tokenizer.pretrained: could not load 'no-such-org/no-such-tokenizer'" in line
    assert "local folder holding tokenizer.json" in line
    assert not (tmp_path / "tok").exists() and not (tmp_path / "tok.tmp").exists()


def test_unreachable_hub_dataset(tmp_path):
    source = 'web={"hf": "no-such-org/no-such-data"}'
    res = offline_cli("corpus", "--source", source, "--out", "corpus", cwd=tmp_path)
    line = one_error_line(res)
    assert "no-such-org/no-such-data: hf: could not load the dataset" in line, line
    assert "from_disk: true" in line
