"""
A job that makes a map fail in two ways, in a known order: first a lost
worker, then a job that raises. For the report page's tests and the
screenshot in the docs, on any pool (the workers import it from the
package).
"""
from __future__ import annotations

import functools
import os
import random
import time
import typing

#: Seconds the raising job waits for the lost job to run again.
WAIT_LIMIT = 60.0


def lose_then_raise(
    x: int,
    folder: str,
    lose: int,
    bad: int,
    message: str,
    seconds: typing.Tuple[float, float],
) -> int:
    """``x * x`` after sleeping between ``seconds[0]`` and ``seconds[1]``;
    but job ``lose`` ends its worker (``os._exit(3)``) the first time it
    runs, and job ``bad`` raises ``ValueError(message, x)`` once job
    ``lose`` ran again (so the loss is in the map's log first). ``folder``
    keeps the marks that tell the runs apart."""
    if x == lose:
        died = os.path.join(folder, "died")
        if not os.path.exists(died):
            open(died, "w").close()
            print("job {:d} ends its worker on purpose (os._exit(3))".format(x), flush=True)
            os._exit(3)
        open(os.path.join(folder, "ran-again"), "w").close()
    if x == bad:
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(os.path.join(folder, "ran-again")):
            if time.monotonic() > deadline:
                raise TimeoutError("job {:d} never ran again".format(lose))
            time.sleep(0.02)
        raise ValueError(message, x)
    time.sleep(random.uniform(*seconds))
    return x * x


def lose_then_raise_in(
    folder: str,
    lose: int = 1,
    bad: int = 5,
    message: str = "bad job",
    seconds: typing.Tuple[float, float] = (0.05, 0.05),
) -> typing.Callable[[int], int]:
    """:func:`lose_then_raise` with its marks in ``folder`` (which exists)."""
    return functools.partial(
        lose_then_raise, folder=folder, lose=lose, bad=bad, message=message, seconds=seconds
    )
