"""Errors that reach the user as one line, naming the input, the field and the fix."""

from __future__ import annotations

import errno
import re


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
