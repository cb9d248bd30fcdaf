"""The project's SLURM profile installed under a name, so that the command users type,
``snakemake --profile slurm``, finds it: Snakemake looks a profile name up in the working
directory, then ``$XDG_CONFIG_HOME/snakemake`` (``~/.config/snakemake``), then
``/etc/xdg/snakemake``, never in the project's ``profiles/`` folder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from mixscale.config.load import load_yaml_config
from mixscale.errors import InputError
from mixscale.fileio import atomic_write_text, protect_inputs, reading_inputs

PLACEHOLDERS = ("your_account", "your_cpu_partition", "your_gpu_partition")


def user_profiles_dir() -> Path:
    """Where Snakemake looks for a profile given by name (the user's part)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "snakemake"


@reading_inputs
def install_profile(
    source: str,
    name: str,
    account: str | None,
    partition: str,
    gpu_partition: str | None,
    destination: str | None = None,
    force: bool = False,
) -> Path:
    """Write ``<destination>/<name>/config.yaml``: the project's profile with the account and
    partitions filled in. Without an account, ``slurm-no-account`` is set (clusters without
    accounting). An existing profile is kept unless ``force``."""
    template = Path(source) / "config.yaml"
    load_yaml_config(str(template))  # a readable YAML mapping
    protect_inputs([template])  # --config-dir/--name may lead back to it: never overwritten
    folder = Path(destination) if destination else user_profiles_dir()
    _check_profile_name(name, folder)
    for value, flag in ((account, "--account"), (partition, "--partition")):
        if value is not None:
            _check_name(value, flag)
    if gpu_partition is not None:
        _check_name(gpu_partition, "--gpu-partition")
    text = fill(template.read_text(encoding="utf-8"), account, partition, gpu_partition)
    target = folder / name / "config.yaml"
    if target.exists() and not force:
        raise InputError(str(target), "", "a profile of that name exists", "pass --force")
    header = (
        f"# Installed from {template.resolve()} by `python -m mixscale install-profile`;\n"
        f"# use it as: snakemake --profile {name} --configfile ...\n"
    )
    atomic_write_text(target, header + text)
    return target


def fill(text: str, account: str | None, partition: str, gpu_partition: str | None) -> str:
    """The template's text (its comments kept) with the placeholders replaced."""
    # quoted: a partition called null, true or 007 stays that name, not YAML's null, bool or 7
    text = text.replace('"your_cpu_partition"', _yaml_string(partition))
    text = text.replace('"your_gpu_partition"', _yaml_string(gpu_partition or partition))
    if account:
        text = text.replace('"your_account"', _yaml_string(account))
    else:  # no accounting on this cluster: sbatch gets no --account
        text = re.sub(r"^\s*slurm_account:.*\n", "", text, flags=re.M)
        text += "slurm-no-account: true\n"
    left = [p for p in PLACEHOLDERS if p in text]
    if left:
        raise InputError("install-profile", left[0], "placeholder left", "give its value")
    if not isinstance(yaml.safe_load(text), dict):
        raise InputError("install-profile", "template", "not a profile", "check --source")
    return text


# a name that stays one plain folder or sbatch word: no separator, not '.', '..', hidden, or an
# option (a leading '-')
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PLAIN_FIX = "letters, digits, '_', '.', '-', starting with a letter, digit or '_'"


def _check_profile_name(name: str, folder: Path) -> None:
    """The profile is the folder ``<folder>/<name>``: a name never leaves ``folder``."""
    if not _PLAIN_NAME.fullmatch(name):
        raise InputError(
            "--name", name, f"not a profile name (it must be one folder inside {folder})",
            _PLAIN_FIX,
        )  # fmt: skip


def _check_name(value: str, flag: str) -> None:
    """Account and partition names go into sbatch arguments: plain names only."""
    if not _PLAIN_NAME.fullmatch(value):
        raise InputError(flag, value, "not an account or partition name", _PLAIN_FIX)


def _yaml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted string
