"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MoesimError(Exception):
    """Bad input from the user (unknown id, malformed file, impossible request).

    The message must be one line that says what is wrong and, where possible, how to fix it.
    """


def unknown_id_error(kind: str, name: str, known: Iterable[str]) -> MoesimError:
    """An error for an unknown catalog id that suggests the closest known ids."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    return MoesimError(f"unknown {kind} '{name}'{hint} (see `moesim catalog {kind}s`)")
