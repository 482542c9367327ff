"""
The entries of a decorated function: one per function and arguments.

An entry says which runs a call stands for, so that a later call (tomorrow,
from another process) finds them again. It is a small JSON file in the
decorators' folder under ``path``::

    <path>/pypoolparty-parallel/        mode 0700
        entries/<id>.json               one per function and arguments
        store/                          the results of the runs (a store)
        work/                           the pools' folders while runs are in flight

An entry's id covers the function's code, the arguments and the ``seed``
given to the decorator (or, without one, the entropy drawn for the entry's
first call, kept in the entry). It does not cover ``N_runs``: run ``i`` is
the same run whatever the number of runs, so asking for more runs later
reuses those that exist. ``do_submit`` starts a new generation: new runs.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import typing

from ..core import fingerprint
from ..core.workdir import make_private_dir, write_atomic

ROOT = "pypoolparty-parallel"
ENTRIES = "entries"
STORE = "store"
WORK = "work"


def folder(path: str, *parts: str) -> str:
    """A folder of the decorators under ``path``, made private if missing."""
    out = os.path.join(os.path.abspath(path), ROOT, *parts)
    make_private_dir(out)
    return out


@dataclasses.dataclass
class Entry:
    """One decorated function called with one set of arguments.

    Attributes
    ----------
    entry_id : str
        Its id (see the module's docstring).
    function : str
        The function's module and name, for people.
    arguments : str
        The call's arguments as ``repr`` shows them, for people.
    num_runs : int
        ``N_runs`` of the latest call.
    entropy : str
        The entropy of the runs' seeds (``SeedSequence(entropy)``), as text:
        the ``seed`` given, or the one drawn for the first call.
    generation : int
        Raised by ``do_submit``: a generation's runs are new runs.
    created : str
        When the entry was made (ISO 8601).
    """

    entry_id: str
    function: str
    arguments: str
    num_runs: int
    entropy: str
    generation: int = 0
    created: str = ""

    @property
    def seed(self) -> int:
        return int(self.entropy)

    def save(self, path: str) -> None:
        write_atomic(
            os.path.join(folder(path, ENTRIES), self.entry_id + ".json"),
            json.dumps(dataclasses.asdict(self), indent=1).encode(),
        )


def entry_id(func: typing.Callable, args: tuple, kwargs: dict, seed: typing.Optional[int]) -> str:
    """The id of an entry (see the module's docstring)."""
    parts = [
        fingerprint.code_fingerprint(func),
        fingerprint.value_digest((tuple(args), dict(kwargs))),
        "unseeded" if seed is None else "seed {:d}".format(int(seed)),
    ]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:16]


def load(path: str, entry: str) -> typing.Optional[Entry]:
    """The entry ``entry`` under ``path``, or None."""
    file = os.path.join(os.path.abspath(path), ROOT, ENTRIES, entry + ".json")
    try:
        with open(file, "rt") as f:
            return Entry(**json.load(f))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        from .. import errors

        raise errors.StoreError(
            "pypoolparty: the entry {!r} is not one pypoolparty wrote ({}). "
            "Remove it to start that entry anew; the others are not affected.".format(file, exc)
        ) from exc


def new_entry(
    ident: str, func: typing.Callable, args: tuple, kwargs: dict, num_runs: int, entropy: int
) -> Entry:
    shown = ", ".join([repr(a) for a in args] + ["{:s}={!r}".format(k, v) for k, v in kwargs.items()])
    return Entry(
        entry_id=ident,
        function="{:s}.{:s}".format(
            getattr(func, "__module__", "?"), getattr(func, "__qualname__", repr(func))
        ),
        arguments=shown if len(shown) <= 200 else shown[:197] + "...",
        num_runs=int(num_runs),
        entropy=str(int(entropy)),
        created=datetime.datetime.now().isoformat(timespec="seconds"),
    )


def listing(path: str = ".") -> typing.List[Entry]:
    """Every entry under ``path``, oldest first.

    Parameters
    ----------
    path : str
        The ``path`` given to the decorators.
    """
    where = os.path.join(os.path.abspath(path), ROOT, ENTRIES)
    try:
        names = sorted(n for n in os.listdir(where) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    found = [load(path, n[: -len(".json")]) for n in names]
    return sorted((e for e in found if e is not None), key=lambda e: e.created)
