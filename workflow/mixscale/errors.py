"""Errors that reach the user as one line, naming the input, the field and the fix."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: printed as one line by the CLI, exit code 2, no traceback."""

    def __init__(self, source: str, field: str, problem: str, fix: str = "") -> None:
        self.source = source
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        text = f"{where}: {self.problem}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text
