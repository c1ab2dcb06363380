"""Progress lines on stderr, shared by every long-running piece of the project."""

from __future__ import annotations

import sys


def say(message: str, who: str | None = None) -> None:
    """Print ``"who: message"`` (or ``message``) on stderr at once (never on stdout, which
    carries results)."""
    print(f"{who}: {message}" if who else message, file=sys.stderr, flush=True)
