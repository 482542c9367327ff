"""
Each run's own reproducible randomness.

One ``seed`` gives every run ``i`` its own ``numpy.random.SeedSequence``
(``run_seeds``): the child ``i`` of ``SeedSequence(seed)``, so runs are
independent of each other, and the same on every call, in any order, in any
process. Inside a run (``seeded_run``) that sequence seeds:

- numpy's legacy global generator (``numpy.random.random()`` & co.),
- Python's ``random`` module,
- and whatever the function builds from ``current_run().seed_sequence``,
  for instance ``numpy.random.default_rng(current_run().seed_sequence)``.

The three draw from different words of the sequence's state
(``generate_state``): words 0 to 7 are what ``default_rng`` takes, 8 to 11
seed numpy's global generator and 12 to 15 Python's ``random``. Both globals
are Mersenne Twisters seeded the same way, so equal words would make them
draw equal numbers.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import random
import typing

import numpy

#: Words of ``generate_state`` for numpy's global generator and for Python's
#: ``random``; the words before them are what ``default_rng(seed_sequence)``
#: takes (PCG64: four 64-bit words).
NUMPY_GLOBAL_WORDS = slice(8, 12)
PYTHON_RANDOM_WORDS = slice(12, 16)

_CURRENT_RUN: contextvars.ContextVar[RunInfo] = contextvars.ContextVar("current_run")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """The run being computed.

    Parameters
    ----------
    index : int
        The run's number, from 0.
    seed_sequence : numpy.random.SeedSequence
        The run's own seed sequence, for ``numpy.random.default_rng`` or
        ``.spawn()`` of further independent streams.
    """

    index: int
    seed_sequence: numpy.random.SeedSequence


def run_seeds(
    seed: typing.Union[None, int, numpy.random.SeedSequence], num_runs: int
) -> typing.List[numpy.random.SeedSequence]:
    """One independent seed sequence for each run.

    Parameters
    ----------
    seed : None, int or numpy.random.SeedSequence
        The seed of the whole average. ``None`` takes fresh entropy from the
        operating system; each returned sequence's ``entropy`` holds it, and
        passing that as ``seed`` gives the same runs again.
    num_runs : int
        How many runs.

    Returns
    -------
    list of numpy.random.SeedSequence
        Run ``i`` gets the child ``i`` of ``seed``, what
        ``SeedSequence(seed).spawn(num_runs)[i]`` is: it does not depend on
        ``num_runs`` (more runs later keep the seeds of the first ones), and
        a ``SeedSequence`` passed as ``seed`` is not advanced, so each call
        gives the same children.
    """
    if num_runs < 0:
        raise ValueError("num_runs must be 0+, not {:d}".format(num_runs))
    if not isinstance(seed, numpy.random.SeedSequence):
        seed = numpy.random.SeedSequence(seed)
    return [
        numpy.random.SeedSequence(
            seed.entropy, spawn_key=seed.spawn_key + (index,), pool_size=seed.pool_size
        )
        for index in range(num_runs)
    ]


@contextlib.contextmanager
def seeded_run(
    index: int, seed_sequence: numpy.random.SeedSequence
) -> typing.Iterator[RunInfo]:
    """Run ``index`` with its own seeds; the previous state comes back after.

    Seeds numpy's global generator and Python's ``random`` from
    ``seed_sequence`` and makes ``current_run()`` return this run. On exit,
    also after an exception, the global generators' states and
    ``current_run()`` are what they were before.
    """
    info = RunInfo(index=index, seed_sequence=seed_sequence)
    words = seed_sequence.generate_state(PYTHON_RANDOM_WORDS.stop, numpy.uint32)
    numpy_state = numpy.random.get_state()
    random_state = random.getstate()
    token = _CURRENT_RUN.set(info)
    try:
        numpy.random.seed(words[NUMPY_GLOBAL_WORDS])
        random.seed(int.from_bytes(words[PYTHON_RANDOM_WORDS].tobytes(), "little"))
        yield info
    finally:
        _CURRENT_RUN.reset(token)
        random.setstate(random_state)
        numpy.random.set_state(numpy_state)


def current_run() -> RunInfo:
    """The run being computed: its index and its ``SeedSequence``.

    Raises
    ------
    RuntimeError
        Outside a run.
    """
    try:
        return _CURRENT_RUN.get()
    except LookupError:
        raise RuntimeError(
            "current_run() is only known inside a run of a @parallel or "
            "@parallel_average function (pypoolparty.runs.seeding.seeded_run)"
        ) from None


def run_function(
    func: typing.Callable[..., typing.Any],
    index: int,
    seed_sequence: numpy.random.SeedSequence,
    args: typing.Sequence[typing.Any] = (),
    kwargs: typing.Optional[typing.Mapping[str, typing.Any]] = None,
) -> typing.Any:
    """``func(*args, **kwargs)`` as run ``index``, seeded by ``seed_sequence``."""
    with seeded_run(index, seed_sequence):
        return func(*args, **dict(kwargs or {}))
