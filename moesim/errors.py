"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MoesimError(Exception):
    """Bad input from the user (unknown id, malformed file, impossible request).

    The message must be one line that says what is wrong and, where possible, how to fix it.
    """


# the `moesim catalog` listing that shows each kind of id; kinds without one get their ids in the message
_CATALOG_LISTING = {"device": "devices", "system": "devices", "host": "devices", "engine": "engines",
                    "model": "models", "quant": "quants", "storage type": "quants"}


def unknown_id_error(kind: str, name: str, known: Iterable[str]) -> MoesimError:
    """An error for an unknown catalog id that suggests the closest known ids and where to see them all."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    listing = _CATALOG_LISTING.get(kind)
    where = f"see `moesim catalog {listing}`" if listing else f"known: {', '.join(known)}"
    return MoesimError(f"unknown {kind} '{name}'{hint} ({where})")
