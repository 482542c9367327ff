"""
``@parallel`` and ``@parallel_average``: a function becomes many runs on
the cluster, called from a notebook as if it ran here.

The first call with some arguments submits ``N_runs`` runs of
``func(*args, **kwargs)`` on ``N_tasks`` workers and returns at once; a later
call with the same arguments returns the runs finished so far (with a
:class:`~pypoolparty.errors.RunsNotReadyWarning` while some are missing).
The runs are the jobs of a pool with a store under ``path``: what finished
is kept there, a driver that died (a closed laptop, a restarted kernel)
leaves its workers to finish, and the next call collects their results.

The actions (as methods of the decorated function, or as functions, as in
ParallelAverage): ``do_submit`` (new runs, even if some exist),
``dont_submit`` (only read), ``re_submit`` (run again what failed or was
lost), ``cancel_job``, ``print_job_output``.
"""
from __future__ import annotations

import enum
import functools
import typing
import warnings

import numpy

from .. import errors
from ..core.calling import CallSpec, CallStyle
from . import averaging, entries, flights, seeding



class Action(enum.Enum):
    CALL = "call"
    DO_SUBMIT = "do_submit"
    DONT_SUBMIT = "dont_submit"
    RE_SUBMIT = "re_submit"
    CANCEL_JOB = "cancel_job"
    PRINT_JOB_OUTPUT = "print_job_output"


class Runs(list):
    """The results of the finished runs, in run order.

    Attributes
    ----------
    indices : list of int
        The run index of each result.
    num_runs : int
        How many runs were asked for.
    """

    def __init__(self, values, indices, num_runs):
        super().__init__(values)
        self.indices = list(indices)
        self.num_runs = num_runs


def _run(func, args, kwargs, generation, job):
    """One run on a worker: ``func(*args, **kwargs)`` with the run's seeds."""
    index, seed_sequence = job
    return seeding.run_function(func, index, seed_sequence, args, kwargs)


class ParallelFunction:
    """A function whose calls run ``N_runs`` times on the cluster.

    Call it as the function; see the module's docstring for the actions.
    """

    def __init__(self, func: typing.Callable, settings: flights.Settings):
        functools.update_wrapper(self, func)
        self.func = func
        self.settings = settings

    def __call__(self, *args, **kwargs):
        return self._act(Action.CALL, args, kwargs)

    def do_submit(self, *args, **kwargs):
        """Submit new runs, also if some exist (a new generation)."""
        return self._act(Action.DO_SUBMIT, args, kwargs)

    def dont_submit(self, *args, **kwargs):
        """Only read what is finished; never submit."""
        return self._act(Action.DONT_SUBMIT, args, kwargs)

    def re_submit(self, *args, **kwargs):
        """Run again the runs that failed or were lost (not those in flight)."""
        return self._act(Action.RE_SUBMIT, args, kwargs)

    def cancel_job(self, *args, **kwargs) -> None:
        """Cancel the runs in flight; what finished stays."""
        return self._act(Action.CANCEL_JOB, args, kwargs)

    def print_job_output(self, *args, **kwargs) -> str:
        """Print (and return) the end of the workers' output."""
        return self._act(Action.PRINT_JOB_OUTPUT, args, kwargs)

    # ----------------------------------------------------------- internals
    def _entry(self, action: Action, args: tuple, kwargs: dict) -> typing.Tuple[entries.Entry, range]:
        """The call's entry, and the runs never submitted before (all of a
        new entry or generation, those beyond an older, smaller ``N_runs``)."""
        s = self.settings
        ident = entries.entry_id(self.func, args, kwargs, s.seed)
        entry = entries.load(s.path, ident)
        new_runs = range(s.num_runs) if entry is None else range(entry.num_runs, s.num_runs)
        if entry is None:
            if action not in (Action.CALL, Action.DO_SUBMIT, Action.RE_SUBMIT):
                raise errors.EntryNotFoundError(
                    "pypoolparty: {:s}({:s}) has no entry under {!r}: it was never "
                    "called with these arguments (and this seed). Call it to "
                    "submit its runs.".format(self.__name__, entries.new_entry(
                        ident, self.func, args, kwargs, s.num_runs, 0).arguments, s.path)
                )
            seed = s.seed if s.seed is not None else numpy.random.SeedSequence().entropy
            entry = entries.new_entry(ident, self.func, args, kwargs, s.num_runs, seed)
        elif action is Action.DO_SUBMIT:
            entry.generation += 1
            new_runs = range(s.num_runs)
            if s.seed is None:
                entry.entropy = str(numpy.random.SeedSequence().entropy)
        if action not in (Action.CALL, Action.DO_SUBMIT, Action.RE_SUBMIT):
            entry.num_runs = s.num_runs  # only looks: the file stays as it is
            return entry, range(0)
        if new_runs or entry.num_runs != s.num_runs:
            entry.num_runs = s.num_runs
            entry.save(s.path)
        return entry, new_runs

    def _call(self, entry: entries.Entry, args, kwargs):
        """The map of the entry's runs: its spec and jobs."""
        runner = functools.partial(_run, self.func, tuple(args), dict(kwargs), entry.generation)
        runner.__wrapped__ = self.func  # the store's shelf takes its name
        jobs = list(enumerate(seeding.run_seeds(entry.seed, entry.num_runs)))
        return CallSpec(funcs=(runner,), style=CallStyle.ONE, stop_on_failure=False), jobs

    def _act(self, action: Action, args: tuple, kwargs: dict):
        with flights.lock:  # one entry per call, also with threads
            entry, new_runs = self._entry(action, args, kwargs)
        spec, jobs = self._call(entry, args, kwargs)
        flight = (entry.entry_id, entry.generation)
        if action is Action.CANCEL_JOB:
            return flights.cancel(self.settings, flight, spec, jobs)
        if action is Action.PRINT_JOB_OUTPUT:
            return flights.print_output(self.settings, spec, jobs)
        if action is not Action.DONT_SUBMIT:
            pool = None
            with flights.lock:
                sinks = flights.in_flight.setdefault(flight, [])
                if action is Action.RE_SUBMIT or not any(s.busy for s in sinks):
                    sink = flights.CallSink()
                    if sinks and action is not Action.RE_SUBMIT:
                        sink.failures.update(sinks[-1].failures)  # still failed, until re_submit
                    pool = flights.pool_for(self.settings)
                    run_missing = True if action is Action.RE_SUBMIT else new_runs
                    pool._launcher.start(spec, jobs, None, sink, run_missing)
                    sinks[:] = [s for s in sinks if s.busy] + [sink]
            if pool is not None:
                # Return once the workers are submitted (the process may end
                # right after: a script, a notebook closed) and what an
                # adopted map's workers finished meanwhile is stored.
                pool._supervisor.settle(timeout=120.0)
                if sink.run is not None:
                    sink.run.flush()
        sinks = flights.in_flight.get(flight, [])
        return self._finished(spec, jobs, sinks[-1] if sinks else None)

    def _finished(self, spec, jobs, sink: typing.Optional[flights.CallSink]):
        """What the store holds of the runs; a warning for what it lacks."""
        shelf, wanted = flights.shelf_of(self.settings, spec, jobs)
        placed = shelf.placed(wanted)
        missing = len(jobs) - len(placed)
        if missing:
            warnings.warn(
                errors.RunsNotReadyWarning(_not_ready(self.__name__, missing, len(jobs), sink)),
                stacklevel=4,  # the user's call
            )
        results = Runs([v for _, v in placed], [p for p, _ in placed], len(jobs))
        if not self.settings.average:
            return results
        return averaging.average(list(results)) if results else None


def _not_ready(name: str, missing: int, total: int, sink: typing.Optional[flights.CallSink]) -> str:
    text = "pypoolparty: {:d} / {:d} runs of {:s} are not ready yet".format(missing, total, name)
    if sink is not None and sink.failures:
        first = next(iter(sink.failures.values()))
        text += "; {:d} failed (the first: {!r}), re_submit() runs them again".format(len(sink.failures), first)
    elif sink is not None and sink.error is not None:
        text += "; their map failed: {}".format(sink.error)
    elif sink is None or not sink.busy:
        text += "; none of them runs now: re_submit() runs them"
    return text


def _decorator(settings: flights.Settings) -> typing.Callable[[typing.Callable], ParallelFunction]:
    if settings.num_runs < 1 or settings.num_tasks < 1:
        raise ValueError("N_runs and N_tasks must be 1+")
    return lambda func: ParallelFunction(func, settings)


def parallel(
    N_runs: int,
    N_tasks: typing.Optional[int] = None,
    path: str = ".",
    *,
    seed: typing.Optional[int] = None,
    encoding: str = "pickle",
    pool: typing.Any = None,
    **scheduler_options,
) -> typing.Callable[[typing.Callable], ParallelFunction]:
    """Run a function ``N_runs`` times on the cluster; calls return the runs.

    Parameters
    ----------
    N_runs : int
        Runs per call.
    N_tasks : int or None
        Workers at once (default ``N_runs``).
    path : str
        Where entries, results and the pools' folders go, on a filesystem
        the compute nodes share.
    seed : int or None
        The seed of every run's randomness; None draws one per entry.
    encoding : {"pickle", "json"}
        How the results are written in the store.
    pool : str, pool class or None
        ``"slurm"``, ``"sge"``, ``"local"`` or a pool class; None chooses as
        :func:`pypoolparty.Pool` does.
    **scheduler_options
        Options of the scheduler (``time="24:00:00"``, ``mem="16G"``: sbatch's
        for SLURM, qsub's for Grid Engine).

    Returns
    -------
    callable
        The decorator. A call of the decorated function returns a
        :class:`Runs` list of the finished runs' results.
    """
    return _decorator(
        flights.Settings(N_runs, N_tasks or N_runs, path, seed, encoding, pool, scheduler_options, average=False)
    )


def parallel_average(
    N_runs: int,
    N_tasks: typing.Optional[int] = None,
    path: str = ".",
    *,
    seed: typing.Optional[int] = None,
    encoding: str = "pickle",
    pool: typing.Any = None,
    **scheduler_options,
) -> typing.Callable[[typing.Callable], ParallelFunction]:
    """As :func:`parallel`, but a call returns the average over the finished
    runs (:class:`~pypoolparty.runs.averaging.Averaged`: ``mean``,
    ``variance``, ``standard_deviation``, ``estimated_error``), or None
    while none finished."""
    return _decorator(
        flights.Settings(N_runs, N_tasks or N_runs, path, seed, encoding, pool, scheduler_options, average=True)
    )


def _action(action: Action) -> typing.Callable[[ParallelFunction], typing.Callable]:
    def wrap(function: ParallelFunction) -> typing.Callable:
        @functools.wraps(function)
        def call(*args, **kwargs):
            return function._act(action, args, kwargs)

        return call

    wrap.__name__ = action.value
    wrap.__doc__ = "``{:s}(f)(*args)`` is ``f.{:s}(*args)`` (ParallelAverage's spelling).".format(
        action.value, action.value
    )
    return wrap


do_submit = _action(Action.DO_SUBMIT)
dont_submit = _action(Action.DONT_SUBMIT)
re_submit = _action(Action.RE_SUBMIT)
cancel_job = _action(Action.CANCEL_JOB)
print_job_output = _action(Action.PRINT_JOB_OUTPUT)
