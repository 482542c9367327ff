"""
pypoolparty: ``multiprocessing.Pool`` on SLURM and Grid Engine clusters.

``pypoolparty.slurm.array.Pool().map(func, jobs)`` returns what
``multiprocessing.Pool().map(func, jobs)`` returns, computed by SLURM array
tasks. Submodules are imported on first use, so that the worker on the
compute node imports only what it needs.
"""
import importlib

from .version import __version__

_SUBMODULES = ("slurm", "sun_grid_engine", "errors", "local", "processes", "testing", "auto", "runs")
#: The decorators of ParallelAverage's workflow, from :mod:`pypoolparty.runs`.
_DECORATORS = (
    "parallel",
    "parallel_average",
    "do_submit",
    "dont_submit",
    "re_submit",
    "cancel_job",
    "print_job_output",
)


#: The auto choice, from :mod:`pypoolparty.auto`.
_AUTO = ("Pool", "Executor", "which_scheduler")


def __getattr__(name):
    if name in _AUTO:
        return getattr(importlib.import_module(".auto", __name__), name)
    if name in _DECORATORS:
        return getattr(importlib.import_module(".runs", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + list(_DECORATORS) + list(_AUTO))
