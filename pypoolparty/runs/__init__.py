"""
Functions that run many times on a cluster: ``@pypoolparty.parallel`` returns
the runs, ``@pypoolparty.parallel_average`` their average with its error
(ParallelAverage's workflow).

Modules: ``decorators`` (the decorators and their actions), ``entries``
(what a call stands for, kept under ``path``), ``averaging`` (the average
over the finished runs), ``seeding`` (each run's own reproducible randomness).
"""
from .averaging import Averaged, average
from .decorators import (
    Runs,
    cancel_job,
    do_submit,
    dont_submit,
    parallel,
    parallel_average,
    print_job_output,
    re_submit,
)
from .entries import Entry, listing
from .seeding import RunInfo, current_run, run_seeds

__all__ = [
    "parallel",
    "parallel_average",
    "do_submit",
    "dont_submit",
    "re_submit",
    "cancel_job",
    "print_job_output",
    "listing",
    "Entry",
    "Runs",
    "Averaged",
    "average",
    "current_run",
    "RunInfo",
    "run_seeds",
]
