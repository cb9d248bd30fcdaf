"""Errors that reach the user as one line, naming the input, the field and the fix; and the one
way text reaches a terminal (``printable``, ``say``): a control character from a user's file never
moves the cursor, recolours the screen or retitles the window."""

from __future__ import annotations

import errno
import re
import sys
from typing import TextIO


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
        # a key or value with a line break or a control character in it stays on the one
        # line, escaped
        return printable(text)


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character a terminal would act on or hide written as its Python
    escape (``\\x1b``, ``\\n``, ``\\u202e``): C0 and C1 controls, DEL, line and paragraph
    separators, bidi overrides and other format characters, lone surrogates (undecodable bytes
    of a file name), unassigned code points. Characters in ``keep`` (e.g. the line breaks of
    the package's own multi-line output) stay. Backslashes stay as they are: the escape is for
    a human reading a terminal, not a parser."""
    if text.isprintable() and not keep:
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def say(text: str, file: TextIO | None = None) -> None:
    """Print the package's (possibly multi-line) text to stderr (or ``file``), every character
    but its line breaks through ``printable``: the one way the CLI prints."""
    print(printable(text, keep="\n"), file=file or sys.stderr, flush=True)


# OSErrors the machine, not the code, is the cause of: what a user sees instead of a traceback
_ELSEWHERE = "or write the outputs to another file system"
_ENVIRONMENT = {
    errno.ENOSPC: ("no space left on the device", f"free space there, {_ELSEWHERE}"),
    errno.EDQUOT: ("disk quota exceeded", f"free space in your quota, {_ELSEWHERE}"),
    errno.EROFS: ("read-only file system", f"remount it writable, {_ELSEWHERE}"),
    errno.EACCES: ("permission denied", f"make the folder writable for you, {_ELSEWHERE}"),
    errno.EPERM: ("operation not permitted", f"make the folder writable for you, {_ELSEWHERE}"),
    errno.EFBIG: ("file too large for the file system", _ELSEWHERE),
}


def environment_error(exc: BaseException) -> InputError | None:
    """The one-line error for a full disk, a read-only or forbidden folder; None for any other
    exception."""
    code = environment_errno(exc)
    if code is None:
        return None
    problem, fix = _ENVIRONMENT[code]
    filename = next((c.filename for c in _chain(exc) if getattr(c, "filename", None)), None)
    return InputError(str(filename or "output"), "", problem, fix)


def environment_errno(exc: BaseException) -> int | None:
    """The errno of a full disk or a forbidden write behind exc: an OSError, one a library
    wrapped in its own exception (torch.save's RuntimeError), or a Rust library's message
    ("... (os error 28)": safetensors, tokenizers)."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno in _ENVIRONMENT:
            return cause.errno
        found = _RUST_OS_ERROR.search(str(cause))
        if found and int(found.group(1)) in _ENVIRONMENT:
            return int(found.group(1))
    return None


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
