"""
The command line of the local clusters::

    python -m pypoolparty.testing.local_slurm {install,start,stop,status,env} [options]
    python -m pypoolparty.testing.local_sge {install,start,stop,status,env} [options]

Both share this skeleton; each module describes its own options in a
:class:`CommandLine`. What the commands print:

``install``
    Installs the scheduler's packages if missing (needs root).
``start``
    Starts the cluster (or finds it running) and prints the scheduler's
    overview and what was started, each line a ``# `` comment, then the
    ``export VAR=value`` lines that point clients at it, so that
    ``eval "$(python -m ... start)"`` sets just those.
``stop``
    Stops the daemons started from the directory; exits 0 also if none runs.
``status``
    Prints the overview and exits 0 if the cluster takes jobs, else says
    ``not running (<directory>)`` and exits 1.
``env``
    Prints the ``export`` lines only.

Every command exits 1 with ``error: <why>`` on stderr if it fails.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Callable

from .local_cluster import LocalCluster, LocalClusterError

COMMANDS = ("install", "start", "stop", "status", "env")


@dataclasses.dataclass(frozen=True)
class Option:
    """
    An option of one cluster's command line, e.g. ``--nodes``.

    Attributes
    ----------
    flag : str
        E.g. ``"--nodes"``; its value is ``args.nodes``.
    help : str
        What it means.
    type : callable
        Converts its text.
    default : object
        Its value when it is not given.
    switch : bool
        True for an option without a value: ``True`` if given, else ``False``.
    """

    flag: str
    help: str
    type: Callable[[str], object] = int
    default: object = None
    switch: bool = False


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """
    What differs between the local clusters' command lines.

    Attributes
    ----------
    module : str
        The module run with ``python -m``.
    description : str
        One line for ``--help``.
    directory_help : str
        What ``--dir`` is, and its default.
    default_directory : callable
        Returns the directory when ``--dir`` is not given.
    options : tuple of Option
        The cluster's own options.
    make_cluster : callable
        Makes the cluster from the directory and the parsed arguments.
    """

    module: str
    description: str
    directory_help: str
    default_directory: Callable[[], str]
    options: tuple[Option, ...]
    make_cluster: Callable[[str, argparse.Namespace], LocalCluster]

    def parser(self) -> argparse.ArgumentParser:
        """The argument parser: the command, ``--dir``, the options, ``--timeout``."""
        parser = argparse.ArgumentParser(
            prog=f"python -m {self.module}", description=self.description
        )
        parser.add_argument("command", choices=COMMANDS)
        parser.add_argument("--dir", default=None, help=self.directory_help)
        for option in self.options:
            if option.switch:
                parser.add_argument(option.flag, action="store_true", help=option.help)
            else:
                parser.add_argument(
                    option.flag, type=option.type, default=option.default, help=option.help
                )
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds (start, stop)")
        return parser

    def main(self, argv: list[str] | None = None) -> int:
        """
        Run one command.

        Parameters
        ----------
        argv : list of str or None
            The arguments; ``sys.argv[1:]`` by default.

        Returns
        -------
        int
            The exit code.
        """
        args = self.parser().parse_args(argv)
        directory = args.dir or self.default_directory()
        cluster = self.make_cluster(directory, args)
        try:
            return _COMMANDS[args.command](cluster, directory, args.timeout)
        except LocalClusterError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1


def _install(cluster: LocalCluster, directory: str, timeout: float) -> int:
    cluster.install()
    print(f"# {cluster.title} ({', '.join(cluster.programs)}) is installed")
    return 0


def _start(cluster: LocalCluster, directory: str, timeout: float) -> int:
    t0 = time.monotonic()
    before = cluster.daemon_pids()
    cluster.start(timeout=timeout)
    for line in cluster.overview().splitlines():
        print("# " + line)
    pids = cluster.daemon_pids()
    if not pids:
        how = "runs, started by someone else: used as it is"
    elif pids == before:
        how = f"was running already, started from {directory}"
    else:
        how = f"started from {directory}: {_names(pids)}"
    print(f"# {cluster.title} {how} ({time.monotonic() - t0:.1f} s)")
    for line in cluster.export_lines():
        print(line)
    return 0


def _stop(cluster: LocalCluster, directory: str, timeout: float) -> int:
    pids = cluster.daemon_pids()
    cluster.stop(timeout=timeout)
    if pids:
        print(f"# stopped {_names(pids)}")
    else:
        print(f"# nothing started from {directory} runs")
    return 0


def _status(cluster: LocalCluster, directory: str, timeout: float) -> int:
    if not cluster.is_running():
        print(f"not running ({directory})")
        return 1
    print(cluster.overview(), end="")
    return 0


def _env(cluster: LocalCluster, directory: str, timeout: float) -> int:
    for line in cluster.export_lines():
        print(line)
    return 0


def _names(pids: dict[str, int]) -> str:
    return ", ".join(f"{name} ({pid})" for name, pid in sorted(pids.items()))


_COMMANDS: dict[str, Callable[[LocalCluster, str, float], int]] = {
    "install": _install,
    "start": _start,
    "stop": _stop,
    "status": _status,
    "env": _env,
}
