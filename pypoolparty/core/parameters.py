"""
The parameter docs that every cluster pool shares, written once.

A pool's docstring names a fragment on a line of its own (``${common}``)
and words of its scheduler inline (``${status}``); :func:`document` fills
both in, indenting each fragment as its placeholder line is indented.
"""
from __future__ import annotations

import string
import textwrap
import typing

#: Parameters every cluster pool takes, with the scheduler's words left open:
#: ``status`` (its status command), ``nodes`` (where jobs run) and
#: ``timeout_keyword`` (the pool's keyword for one command's time limit).
COMMON = """\
initializer : callable or None
    Called as ``initializer(*initargs)`` once in each worker, before its
    first job.
initargs : tuple
    Arguments of ``initializer``.
maxtasksperchild : int or None
    A worker leaves after this many tasks (chunks, as in the stdlib) and a
    new one takes its place if work is left. None: a worker serves the
    pool's maps as long as there is work.
work_dir : str or None
    A directory on a filesystem the ${nodes} share. The pool makes a
    private folder (mode 0700) in it, ``pypoolparty-<date>-<time>-<random>``,
    and each map a folder in that, removed after success unless
    ``keep_work_dir``, kept on failure; the pool's folder goes when the pool
    ends, unless a map's is kept. A shared directory with the sticky bit
    (``/tmp``, a cluster's ``/scratch``) is fine. None:
    ``$$PYPOOLPARTY_WORK_DIR`` or the current directory.
idle_timeout : float
    Seconds a worker waits for the pool's next map before it leaves the
    cluster (default 60). Workers also leave at once when the pool is
    closed and its work done, or terminated.
cache_dir : str or None
    A store on a filesystem the ${nodes} share: each job's result is kept
    there under a key of the function's code and the job, and a later call
    (in this driver or another, also after a crash) takes what is stored
    instead of running it again. A driver that dies leaves its workers to
    finish their map; the same call run again adopts them. None (default):
    no store, and a dead driver's workers are cancelled.
python_path : str or None
    The Python interpreter on the ${nodes} (default: this one).
polling_interval : float
    Seconds between two ``${status}`` calls (one per pool, whatever the
    number of maps and jobs). Result files are looked at far more often.
max_num_resubmissions : int
    How often the jobs of a worker that died without a result are
    resubmitted before the map raises
    :class:`~pypoolparty.errors.JobsLostError`.
keep_work_dir : bool
    Keep each map's folder after success too.
verbose : bool
    Also print a short line to stderr for each event of note: workers
    submitted, started, lost and why, jobs that raised, the map's end.
progress : bool or None
    Show a live progress bar for each map that runs longer than a moment:
    jobs done of all, workers running and pending, chunks resubmitted, the
    rate and what is left (a widget in a notebook). None (default): where a
    person watches, i.e. stderr is a terminal or this is a notebook.
job_name : str
    The job name in ``${status}``.
num_chunks : int or None
    Cut the jobs into this many chunks (pypoolparty 0.3's per-chunk pools)
    unless ``chunksize`` is given; also the default of ``processes``.
retry_policy : RetryPolicy or None
    Back-off and deadline for transient scheduler failures; its ``timeout``
    defaults to ``${timeout_keyword}``."""

FRAGMENTS = {"common": COMMON}


def document(**words: str) -> typing.Callable[[type], type]:
    """A class decorator that fills in the shared fragments and ``words``.

    Raises
    ------
    KeyError
        If the docstring names a word that is not given.
    """

    def fill(cls: type) -> type:
        lines = []
        for line in (cls.__doc__ or "").splitlines():
            name = line.strip()[2:-1] if line.strip().startswith("${") else ""
            if name in FRAGMENTS:
                indent = line[: len(line) - len(line.lstrip())]
                lines.append(textwrap.indent(FRAGMENTS[name], indent))
            else:
                lines.append(line)
        cls.__doc__ = string.Template("\n".join(lines)).substitute(words)
        return cls

    return fill
