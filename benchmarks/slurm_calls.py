"""
Count the SLURM commands a pool runs, whatever it logs.

:class:`CountedCommands` writes one small shell wrapper per SLURM command
that notes its arguments in a file and then execs the real command; the
pool gets the wrappers as ``sbatch_path=``, ``squeue_path=``, ... So every
call is counted, retries included, also where the pool's own logs move or
are removed. A wrapper costs one ``/bin/sh`` start (about a millisecond)
per call.
"""
import collections
import os
import shlex
import shutil

COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "sacct")

WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> {calls}
exec {real} "$@"
"""


class CountedCommands:
    """Wrappers of the SLURM commands found on PATH, in ``directory``."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.names = []
        for name in COMMANDS:
            real = shutil.which(name)
            if real is None:
                continue
            with open(self._calls_file(name), "w"):
                pass
            wrapper = os.path.join(directory, name)
            with open(wrapper, "w") as f:
                f.write(WRAPPER.format(calls=shlex.quote(self._calls_file(name)), real=shlex.quote(real)))
            os.chmod(wrapper, 0o755)
            self.names.append(name)

    def _calls_file(self, name):
        return os.path.join(self.directory, name + ".calls")

    def pool_keywords(self):
        """``{"sbatch_path": <wrapper>, ...}`` for a SLURM pool."""
        return {name + "_path": os.path.join(self.directory, name) for name in self.names}

    def calls(self):
        """Each command's calls so far: its arguments, one string per call."""
        out = {}
        for name in self.names:
            with open(self._calls_file(name)) as f:
                out[name] = f.read().splitlines()
        return out

    def calls_since(self, before):
        """The calls made after ``before`` (what :meth:`calls` returned then)."""
        now = self.calls()
        return {name: now[name][len(before.get(name, ())):] for name in now}


def array_size(spec):
    """Tasks of an ``--array`` spec such as ``0-7%2``, ``0,3,5-9:2``."""
    total = 0
    for part in spec.split("%")[0].split(","):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        total += len(range(int(first), int(last or first) + 1, int(step or 1)))
    return total


def workers_submitted(sbatch_calls):
    """Workers that these sbatch calls asked for: array tasks, or one job each."""
    total = 0
    for call in sbatch_calls:
        specs = [a.split("=", 1)[1] for a in call.split() if a.startswith("--array=")]
        total += array_size(specs[0]) if specs else 1
    return total


def summary(calls):
    """``sbatch 1, squeue 3; all 5 (scontrol 1)`` for what :meth:`CountedCommands.calls_since` gives."""
    counts = collections.Counter({name: len(lines) for name, lines in calls.items()})
    others = ", ".join(
        "{:s} {:d}".format(name, counts[name])
        for name in COMMANDS if counts[name] and name not in ("sbatch", "squeue")
    )
    return "sbatch {:d}, squeue {:d}; all {:d}{:s}".format(
        counts["sbatch"], counts["squeue"], sum(counts.values()), " ({:s})".format(others) if others else ""
    )
