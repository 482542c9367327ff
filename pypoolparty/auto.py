"""
``pypoolparty.Pool()`` and ``pypoolparty.Executor()``: the pool and the
executor for wherever the code runs.

SLURM's array pool where ``sbatch`` can reach a controller, the Grid Engine
pool where ``qsub`` can reach a qmaster, else the local pool on this
machine's cores; the executors alike. ``PYPOOLPARTY_SCHEDULER=slurm|sge|local``
forces a choice.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import os
import shutil
import typing

from . import errors
from .core.commands import RetryPolicy, run_command

#: Environment variable that forces the choice.
SCHEDULER_ENV = "PYPOOLPARTY_SCHEDULER"

#: Choice -> (module, probe command).
CHOICES = {
    "slurm": ("pypoolparty.slurm.array", ["scontrol", "ping"]),
    "sge": ("pypoolparty.sun_grid_engine", ["qstat"]),
    "local": ("pypoolparty.local", None),
}

#: Choice -> the module of its Executor.
EXECUTORS = {
    "slurm": "pypoolparty.slurm",
    "sge": "pypoolparty.sun_grid_engine",
    "local": "pypoolparty.local",
}

logger = logging.getLogger("pypoolparty")

_PROBE = RetryPolicy(timeout=10.0, deadline=0.0)


def _answers(argv: typing.List[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        run_command(argv, policy=_PROBE)
    except errors.SchedulerCommandError:
        return False
    return True


def _available(name: str) -> bool:
    try:
        importlib.import_module(CHOICES[name][0])
    except ImportError:
        return False
    return True


def which_scheduler() -> str:
    """``"slurm"``, ``"sge"`` or ``"local"``: the pool ``Pool()`` would make.

    Raises
    ------
    ValueError
        If ``PYPOOLPARTY_SCHEDULER`` names none of them.
    """
    forced = os.environ.get(SCHEDULER_ENV, "").strip().lower()
    if forced:
        if forced not in CHOICES:
            raise ValueError(
                "{:s}={!r}: use one of {:s}".format(SCHEDULER_ENV, forced, ", ".join(CHOICES))
            )
        return forced
    for name in ("slurm", "sge"):
        if _available(name) and _answers(CHOICES[name][1]):
            return name
    return "local"


def Pool(
    processes: typing.Optional[int] = None,
    initializer: typing.Optional[typing.Callable] = None,
    initargs: typing.Iterable = (),
    maxtasksperchild: typing.Optional[int] = None,
    **options,
):
    """A pool on the scheduler this machine reaches, else on its own cores.

    Parameters
    ----------
    processes, initializer, initargs, maxtasksperchild
        As for ``multiprocessing.Pool``.
    **options
        Keyword arguments of the chosen pool (e.g. ``sbatch_options``);
        those the chosen pool does not take are left out and logged, so the
        same call works on a laptop and on a cluster.

    Returns
    -------
    pypoolparty.slurm.array.Pool, pypoolparty.sun_grid_engine.Pool or pypoolparty.local.Pool
    """
    name = which_scheduler()
    cls = importlib.import_module(CHOICES[name][0]).Pool
    return cls(processes, initializer, initargs, maxtasksperchild, **_accepted(name, cls, "Pool", options))


def Executor(max_workers: typing.Optional[int] = None, **options):
    """An executor on the scheduler this machine reaches, else on its own
    cores; chosen as :func:`Pool` chooses.

    Parameters
    ----------
    max_workers : int or None
        At most this many workers at once.
    **options
        Keyword arguments of the chosen executor (e.g. ``sbatch_options``);
        those it does not take are left out and logged.

    Returns
    -------
    pypoolparty.slurm.Executor, pypoolparty.sun_grid_engine.Executor or pypoolparty.local.Executor
    """
    name = which_scheduler()
    cls = importlib.import_module(EXECUTORS[name]).Executor
    return cls(max_workers, **_accepted(name, cls, "Executor", options))


def _accepted(name: str, cls: type, face: str, options: dict) -> dict:
    """The ``options`` that ``cls`` takes; the others are logged."""
    accepted = inspect.signature(cls.__init__).parameters
    kept = {k: v for k, v in options.items() if k in accepted}
    dropped = sorted(set(options) - set(kept))
    logger.info(
        "pypoolparty.%s: using the %s %s%s",
        face,
        name,
        face.lower(),
        "; ignoring {:s}".format(", ".join(dropped)) if dropped else "",
    )
    return kept
