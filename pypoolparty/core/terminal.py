"""
stderr, shared by the progress bars (:mod:`.progress`) and the lines of
``verbose=True`` (:mod:`.event_lines`): a line goes above the bars on
screen, which tqdm then draws again.
"""
from __future__ import annotations

import sys
import time
import typing
import weakref

# The bars of the maps in flight, each with the time it shows from.
_bars: "weakref.WeakKeyDictionary[typing.Any, float]" = weakref.WeakKeyDictionary()


def bar_opened(owner: typing.Any, shows_from: float) -> None:
    """``owner`` has a bar that shows from ``shows_from`` (time.monotonic) on."""
    _bars[owner] = shows_from


def bar_closed(owner: typing.Any) -> None:
    _bars.pop(owner, None)


def print_line(text: str) -> None:
    """Print a line to stderr, above the bars on screen.

    tqdm's ``write`` draws every bar again, also those that do not show
    yet: it is used only while some bar shows.
    """
    now = time.monotonic()
    if any(now >= shows_from for shows_from in list(_bars.values())):
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
