"""
What one call needs of the cluster: ``submit(fn, ..., resource_dict={...})``.

The names are executorlib's, so its users' calls carry over unchanged:

- ``cores``: MPI ranks the call runs on (``MPI.COMM_WORLD.Get_size()``);
  the call's result is the list of every rank's return value;
- ``threads_per_core``: CPUs (threads) per rank;
- ``gpus_per_core``: GPUs per rank;
- ``cwd``: the directory the call runs in;
- ``openmpi_oversubscribe``: let ``mpirun`` place more ranks than slots;
- ``slurm_cmd_args``: more arguments for the ``srun`` that starts the ranks.

Any other key is one of the scheduler's own submit options by its own name
(``"mem"``, ``"time"``, ``"partition"`` for SLURM; ``"l"``, ``"pe"``, ``"q"``
for Grid Engine); the adapter says which it knows, and an unknown key is an
error before anything is submitted. Calls with equal resources share
workers; each set of resources has workers of its own.
"""
from __future__ import annotations

import dataclasses
import os
import typing

#: executorlib's keys, which mean the same on every scheduler.
COMMON_KEYS = (
    "cores",
    "threads_per_core",
    "gpus_per_core",
    "cwd",
    "openmpi_oversubscribe",
    "slurm_cmd_args",
)


@dataclasses.dataclass(frozen=True)
class Resources:
    """One set of per-call resources; hashable, so equal sets share workers.

    Parameters
    ----------
    cores : int
        MPI ranks per call; 1 runs the call in the worker itself.
    threads_per_core : int
        CPUs for each rank.
    gpus_per_core : int
        GPUs for each rank.
    cwd : str or None
        Directory the call runs in; None: the driver's current directory.
    openmpi_oversubscribe : bool
        Pass ``--oversubscribe`` to ``mpirun``.
    launcher_args : tuple of str
        More arguments for the command that starts the ranks (``srun``).
    options : tuple of (str, value)
        The scheduler's own submit options, sorted by name.
    """

    cores: int = 1
    threads_per_core: int = 1
    gpus_per_core: int = 0
    cwd: typing.Optional[str] = None
    openmpi_oversubscribe: bool = False
    launcher_args: typing.Tuple[str, ...] = ()
    options: typing.Tuple[typing.Tuple[str, typing.Any], ...] = ()

    @property
    def is_mpi(self) -> bool:
        """Whether the call runs on several MPI ranks."""
        return self.cores > 1

    def option_dict(self) -> typing.Dict[str, typing.Any]:
        return dict(self.options)


def _positive_int(key: str, value: typing.Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            "resource_dict[{!r}] must be an int >= {:d}, not {!r}".format(key, minimum, value)
        )
    return value


def parse(
    resource_dict: typing.Optional[typing.Mapping[str, typing.Any]],
    known_option: typing.Callable[[str], bool],
    scheduler: str,
) -> Resources:
    """The :class:`Resources` of a ``resource_dict``.

    Parameters
    ----------
    resource_dict : mapping or None
        executorlib's keys (see the module) and the scheduler's own options.
    known_option : callable
        Whether a key is one of the scheduler's submit options.
    scheduler : str
        The scheduler's name, for messages.

    Raises
    ------
    ValueError
        For an unknown key or a value out of range, before anything is
        submitted.
    """
    if not resource_dict:
        return Resources()
    if not isinstance(resource_dict, typing.Mapping):
        raise TypeError("resource_dict must be a dict, not {!r}".format(type(resource_dict).__name__))
    common: typing.Dict[str, typing.Any] = {}
    options: typing.Dict[str, typing.Any] = {}
    unknown = []
    for key, value in resource_dict.items():
        key = str(key)
        if key in COMMON_KEYS:
            common[key] = value
        elif known_option(key.lstrip("-")):
            options[key.lstrip("-")] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            "resource_dict has key(s) {} that neither executorlib's keys ({}) nor "
            "{:s}'s submit options know; nothing was submitted. A typo? Scheduler "
            "options go by their own long name, e.g. 'mem' or 'time'.".format(
                ", ".join(repr(k) for k in unknown), ", ".join(COMMON_KEYS), scheduler
            )
        )
    cwd = common.get("cwd")
    if cwd is not None:
        cwd = os.path.abspath(os.fspath(cwd))
    args = common.get("slurm_cmd_args") or ()
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise ValueError("resource_dict['slurm_cmd_args'] must be a list of str, not {!r}".format(args))
    return Resources(
        cores=_positive_int("cores", common.get("cores", 1), 1),
        threads_per_core=_positive_int("threads_per_core", common.get("threads_per_core", 1), 1),
        gpus_per_core=_positive_int("gpus_per_core", common.get("gpus_per_core", 0), 0),
        cwd=cwd,
        openmpi_oversubscribe=bool(common.get("openmpi_oversubscribe", False)),
        launcher_args=tuple(args),
        options=tuple(sorted((k, _frozen(v)) for k, v in options.items())),
    )


def _frozen(value: typing.Any) -> typing.Any:
    """A hashable form of an option's value (lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, (dict, set)):
        raise TypeError(
            "a submit option in resource_dict takes a str, a number, a bool or "
            "a list (the option repeated), not {!r}".format(value)
        )
    return value


def mpirun_argv(resources: Resources, mpirun: str = "mpirun") -> typing.List[str]:
    """``mpirun`` starting ``resources.cores`` ranks of a command."""
    argv = [mpirun, "-n", str(resources.cores)]
    if resources.openmpi_oversubscribe:
        argv.append("--oversubscribe")
    return argv + list(resources.launcher_args)
