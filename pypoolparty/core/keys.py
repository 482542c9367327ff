"""
A store's keys (:mod:`.store`): which shelf a call's jobs go on, and each
job's key. What a key covers is :mod:`.fingerprint`'s to say.
"""
from __future__ import annotations

import typing

from . import fingerprint, inputs
from .calling import CallSpec, CallStyle


def call_keys(
    spec: CallSpec, jobs: list, ranks: int = 1
) -> typing.List[typing.Tuple[str, str, typing.Dict[str, typing.List[int]]]]:
    """The call's jobs by shelf: ``(code fingerprint, name, {key: positions})``.

    A job's key covers its function's code (:mod:`.fingerprint`) and the
    digest of the call's ``(args, kwargs)`` (their pickle, sets ordered and
    functions by their code): ``map(f, [x])``,
    ``starmap(f, [(x,)])`` and ``apply(f, (x,))`` make the same call and
    share its result. Each function has its shelf. A function run on
    ``ranks`` > 1 MPI ranks returns another thing (the ranks' values): it
    has a shelf and keys of its own for each number of ranks.

    Raises NotPicklableError like a map without a store would.
    """
    codes: typing.Dict[int, str] = {}
    groups: typing.Dict[str, typing.Dict[str, typing.List[int]]] = {}
    names: typing.Dict[str, str] = {}
    for position, job in enumerate(jobs):
        if spec.style is CallStyle.APPLY:
            index, args, kwds = job
        elif spec.style is CallStyle.STAR:
            index, args, kwds = 0, tuple(job), {}
        else:
            index, args, kwds = 0, (job,), {}
        if index not in codes:
            code, name = _code_of(spec.funcs[index]), _name_of(spec.funcs[index])
            if ranks > 1:
                code = fingerprint.job_key(code, "on {:d} MPI ranks".format(ranks).encode())
                name += " on {:d} MPI ranks".format(ranks)
            codes[index] = code
            names[code] = name
        try:
            # f(a=1, b=2) is f(b=2, a=1): keyword order is not the call's.
            call = fingerprint.value_digest((tuple(args), sorted(kwds.items())))
        except TypeError as exc:
            raise inputs.not_picklable("job {:d}".format(position), exc) from exc
        key = fingerprint.job_key(codes[index], call.encode())
        groups.setdefault(codes[index], {}).setdefault(key, []).append(position)
    return [(code, names[code], wanted) for code, wanted in groups.items()]


def _code_of(func: typing.Callable) -> str:
    try:
        return fingerprint.code_fingerprint(func)
    except TypeError as exc:
        raise inputs.not_picklable("func {!r}".format(func), exc) from exc


def _name_of(func: typing.Callable) -> str:
    inner = getattr(func, "__wrapped__", None) or getattr(func, "func", func)  # functools.partial
    return getattr(inner, "__qualname__", None) or type(inner).__qualname__
