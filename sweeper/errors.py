"""User-facing errors: one line that names the file, the key and the valid choices; CLI exit status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SweeperError(Exception):
    """A mistake in the user's input. The CLI prints `error: <message>` on one line and exits with 2."""


SAYS_NONE = ("off", "no", "false", "disabled", "null")
"""Words a user writes for "none", which no string distance connects to it."""


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """`"; did you mean 'x'?"` when a choice is close to `name` (or `name` says "none" as `off`, `no`, ...
    and 'none' is a choice), else an empty string."""
    texts = [str(c) for c in choices]
    if str(name).lower() in SAYS_NONE and "none" in texts:
        return "; did you mean 'none'?"
    close = difflib.get_close_matches(str(name), texts, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_of(choices: Iterable[object]) -> str:
    """`"valid: a, b, c"` for the end of an error message."""
    return "valid: " + ", ".join(str(c) for c in choices)
