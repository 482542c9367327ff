"""
What a map sends to its workers besides the work dir's layout: the pickled
call spec and chunks, the driver's import path, and the environment that
lets a worker import this very pypoolparty.

Everything that cannot be pickled is found here, before anything is written
or submitted.
"""
from __future__ import annotations

import os
import site
import sys
import typing

import cloudpickle

from .. import errors
from .calling import CallSpec


def not_picklable(what: str, exc: Exception) -> errors.NotPicklableError:
    return errors.NotPicklableError(
        "pypoolparty: {:s} cannot be pickled, so it cannot be sent to the "
        "cluster ({:s}: {}). Nothing was submitted.".format(what, type(exc).__name__, exc)
    )


def pickle_spec(spec: CallSpec) -> bytes:
    """The pickle of what a map calls."""
    try:
        return cloudpickle.dumps(spec)
    except Exception as exc:
        what = "func {!r}".format(spec.funcs[0] if len(spec.funcs) == 1 else spec.funcs)
        raise not_picklable(what, exc) from exc


def pickle_initializer(initializer: typing.Optional[typing.Callable], initargs: tuple) -> bytes:
    """The pickle of the pool's ``(initializer, initargs)``."""
    try:
        return cloudpickle.dumps((initializer, tuple(initargs)))
    except Exception as exc:
        raise not_picklable("initializer {!r} or its initargs".format(initializer), exc) from exc


def pickle_chunks(jobs: list, starts: typing.List[int]) -> typing.List[bytes]:
    out = []
    for c in range(len(starts) - 1):
        part = jobs[starts[c] : starts[c + 1]]
        try:
            out.append(cloudpickle.dumps(part))
        except Exception as exc:
            index = starts[c]
            for i, job in enumerate(part):
                try:
                    cloudpickle.dumps(job)
                except Exception:
                    index = starts[c] + i
                    break
            raise not_picklable("job {:d}".format(index), exc) from exc
    return out


def driver_sys_path() -> typing.List[str]:
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


def worker_env() -> typing.Dict[str, str]:
    """PYTHONPATH so that a worker (or the reaper) imports this very pypoolparty."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    installed = set(site.getsitepackages() + [site.getusersitepackages()])
    if here in installed:
        return {}
    old = os.environ.get("PYTHONPATH", "")
    parts = [here] + [p for p in old.split(os.pathsep) if p and p != here]
    return {"PYTHONPATH": os.pathsep.join(parts)}


def read_jobs(iterable: typing.Iterable) -> typing.Tuple[list, typing.Optional[BaseException]]:
    """All jobs, and the exception that stopped the iterable, if one did."""
    jobs = []
    try:
        for job in iterable:
            jobs.append(job)
    except Exception as exc:
        return jobs, exc
    return jobs, None
