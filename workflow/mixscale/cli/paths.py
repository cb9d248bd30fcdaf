"""What each path flag of a command is: an input it reads, or an output it writes. A flag says
so by its ``type`` (``type=input_path``, ``output_file``, ``output_folder``, ``output_parent``);
the types leave the text as it is. ``mixscale.cli.main`` reads the marks of the command that
runs and, before its handler starts, refuses an output that is one of the inputs (the same
inode: also through a hard link, a symlink or another spelling), an output of the wrong kind
(a folder where a file is written, a device, a folder mixscale did not write), and two outputs
naming one file: one line, before any work. While the command runs, the writers in
``mixscale.fileio`` keep refusing to replace those inputs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mixscale.errors import InputError
from mixscale.fileio import (
    check_output_file,
    check_output_folder,
    check_output_parent,
    inputs_protected,
)


def input_path(text: str) -> str:
    """A file or folder the command reads. Flags that also take a name or JSON text (a
    shipped world, settings) are marked too: only values on disk are checked."""
    return text


def output_file(text: str) -> str:
    """A file the command writes (replaced atomically; a device or FIFO is written into)."""
    return text


def output_folder(text: str) -> str:
    """A folder the command builds whole and swaps in (``fileio.atomic_folder``)."""
    return text


def output_parent(text: str) -> str:
    """A folder the command writes named files or sub-folders into, keeping what else it
    holds (a corpus folder, a profiles folder)."""
    return text


CHECKS = {
    output_file: check_output_file,
    output_folder: check_output_folder,
    output_parent: check_output_parent,
}
ROLES = (input_path, *CHECKS)


def path_flags(parser: argparse.ArgumentParser) -> dict[str, tuple[Any, str]]:
    """The marked flags of one command: dest -> (its type, the flag as users write it)."""
    return {
        action.dest: (action.type, max(action.option_strings, key=len, default=action.dest))
        for action in parser._actions  # argparse lists a parser's actions nowhere else
        if action.type in ROLES
    }


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


@contextmanager
def paths_checked(args: argparse.Namespace) -> Iterator[None]:
    """Check the command's outputs against its inputs and each other, then keep its inputs
    protected from every writer while the block runs."""
    flags = getattr(args, "path_flags", {})
    inputs, outputs = [], []
    for dest, (role, flag) in flags.items():
        for value in _values(getattr(args, dest, None)):
            (inputs if role is input_path else outputs).append((role, flag, value))
    with inputs_protected((f"{flag} {value}", value) for _, flag, value in inputs):
        for role, flag, value in outputs:
            CHECKS[role](value, flag)
        _refuse_shared_outputs(outputs)
        yield


def _refuse_shared_outputs(outputs: list[tuple[Any, str, str]]) -> None:
    """Two outputs naming one path: the second would overwrite the first."""
    seen: dict[str, str] = {}
    for _, flag, value in outputs:
        where = os.path.realpath(value)
        if where in seen:
            raise InputError(
                flag, value, f"is also {seen[where]}'s output", "give each output its own path"
            )
        seen[where] = flag
