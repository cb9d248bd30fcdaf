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
        # a key or value with a line break in it stays on the one line, escaped
        return text.translate(_ESCAPE_BREAKS)


# every character str.splitlines() breaks a line at
_ESCAPE_BREAKS = str.maketrans(
    {c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
)
