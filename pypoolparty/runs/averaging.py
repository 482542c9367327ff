"""
The average over a function's finished runs and its statistical error.

``average(runs)`` stacks each leaf of the runs along a new first axis and lets
numpy compute, at every leaf: the mean, the unbiased sample variance
(``ddof=1``), the standard deviation (its square root) and the estimated error
of the mean (the standard deviation over ``sqrt(number of runs)``). A run is a
number, a numpy array, or a dict, list or tuple of these, nested as deep as
needed; all runs must share one structure.

Two conventions to know:

- Complex values: the variance is that of ``|x - mean|**2``, a real number
  (as ``numpy.var`` computes it), and so are the deviation and the error.
- A single run: variance, deviation and error are NaN; one run says nothing
  about the spread.

``Averaged`` carries the four statistics in the runs' own structure. Indexing
it picks a part (``result["energy"][2]``); at a number or array it acts like
the mean: ``float(result)``, ``numpy.asarray(result)``, ``result * 2``,
``result - other``.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.lib.mixins

#: What an ``Averaged`` carries, each in the structure of one run.
STATISTICS = ("mean", "variance", "standard_deviation", "estimated_error")

#: numpy's kinds of numbers: bool, signed and unsigned int, float, complex.
NUMERIC_KINDS = "biufc"

#: The containers a run may nest; everything else is a leaf.
CONTAINERS = (dict, list, tuple)


def average(runs: typing.Sequence[typing.Any]) -> Averaged:
    """The average over ``runs`` and its statistical error.

    Parameters
    ----------
    runs : sequence
        The results of the finished runs, all of the same structure: a number
        (int, float, complex, numpy scalar), a numpy array, or a dict, list or
        tuple of these, nested. A list and a tuple count as the same
        structure (a run read back from JSON has lists); the result follows
        the first run.

    Returns
    -------
    Averaged
        Mean, variance (``ddof=1``), standard deviation and estimated error of
        the mean at every leaf. With a single run all but the mean are NaN.

    Raises
    ------
    ValueError
        If there are no runs; if the runs disagree in structure (kind, keys,
        length, shape), naming where and which runs; if a leaf is no number.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("No runs to average: none has finished yet")
    num_runs = len(runs)
    stacked = _stack(runs, path="")
    variance = _map_leaves(_variance, stacked)
    standard_deviation = _map_leaves(numpy.sqrt, variance)
    return Averaged(
        mean=_map_leaves(lambda leaf: leaf.mean(axis=0)[()], stacked),
        variance=variance,
        standard_deviation=standard_deviation,
        estimated_error=_map_leaves(
            lambda leaf: leaf / math.sqrt(num_runs), standard_deviation
        ),
        num_runs=num_runs,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Averaged(numpy.lib.mixins.NDArrayOperatorsMixin):
    """The average over runs, with its spread, in the structure of one run.

    Parameters
    ----------
    mean, variance, standard_deviation, estimated_error : structure
        One run's structure with numpy floats (complex for a complex mean)
        or arrays at the leaves. ``estimated_error`` is the standard error of
        the mean.
    num_runs : int
        How many runs the statistics are over.

    Notes
    -----
    ``result[key]`` gives an ``Averaged`` of that part of every statistic (a
    dict's key, a list's index, or any numpy index into an array). At a
    number or array the result behaves like its mean: the operators of
    ``NDArrayOperatorsMixin`` call numpy's ufuncs, which take the mean
    through ``__array__``, and return plain numpy values, as do ufuncs,
    ``float()``, ``complex()`` and ``numpy.asarray()``. Comparisons too
    compare the mean. On a dict, list or tuple they raise ``TypeError``.
    Iterating goes over a dict's keys, or the parts of a list, tuple or array.
    """

    mean: typing.Any
    variance: typing.Any
    standard_deviation: typing.Any
    estimated_error: typing.Any
    num_runs: int

    def __getitem__(self, key: typing.Any) -> Averaged:
        if not isinstance(self.mean, CONTAINERS + (numpy.ndarray,)):
            raise TypeError(
                "An average of a single number has no parts (indexed with "
                "{!r}); float(result) or result.mean give its mean".format(key)
            )
        parts = {name: getattr(self, name)[key] for name in STATISTICS}
        return Averaged(num_runs=self.num_runs, **parts)

    def __iter__(self) -> typing.Iterator[typing.Any]:
        if isinstance(self.mean, dict):
            return iter(self.mean)
        if not isinstance(self.mean, (list, tuple, numpy.ndarray)):
            raise TypeError("An average of a single number is not iterable")
        return (self[index] for index in range(len(self.mean)))

    def __array__(self, dtype=None, copy=None) -> numpy.ndarray:
        if copy:
            return numpy.array(self._plain_mean(), dtype=dtype)
        return numpy.asarray(self._plain_mean(), dtype=dtype)

    def __float__(self) -> float:
        return float(self._plain_mean())

    def __complex__(self) -> complex:
        return complex(self._plain_mean())

    def __repr__(self) -> str:
        runs = "1 run" if self.num_runs == 1 else "{:d} runs".format(self.num_runs)
        return "{} ({})".format(_describe(self.mean, self.estimated_error), runs)

    def _plain_mean(self) -> typing.Any:
        """The mean where it is a number or an array, for numpy."""
        if isinstance(self.mean, CONTAINERS):
            raise TypeError(
                "This average is a {}, not a number or array: pick a part "
                "first, as in result[...]".format(type(self.mean).__name__)
            )
        return self.mean


def _stack(values: list, path: str) -> typing.Any:
    """The runs' common structure with each leaf stacked along a new axis 0."""
    first = values[0]
    for index, value in enumerate(values):
        if _kind(value) != _kind(first):
            raise _disagree(path, "{} and {}".format(_kind(first), _kind(value)), index)
    if isinstance(first, dict):
        for index, value in enumerate(values):
            if value.keys() != first.keys():
                raise _disagree(path, _key_difference(first, value, index), index)
        return {
            key: _stack([value[key] for value in values], "{}[{!r}]".format(path, key))
            for key in first
        }
    if isinstance(first, (list, tuple)):
        for index, value in enumerate(values):
            if len(value) != len(first):
                what = "lengths {:d} and {:d}".format(len(first), len(value))
                raise _disagree(path, what, index)
        parts = [
            _stack([value[i] for value in values], "{}[{:d}]".format(path, i))
            for i in range(len(first))
        ]
        return parts if isinstance(first, list) else tuple(parts)
    return _stack_leaf(values, path)


def _stack_leaf(values: list, path: str) -> numpy.ndarray:
    arrays = []
    for index, value in enumerate(values):
        array = numpy.asarray(value)
        if array.dtype.kind not in NUMERIC_KINDS:
            raise ValueError(
                "Cannot average a {} at {} (run {:d}): a run holds numbers, "
                "numpy arrays of numbers, and dicts, lists and tuples of "
                "them".format(type(value).__name__, _where(path), index)
            )
        if arrays and array.shape != arrays[0].shape:
            what = "shapes {} and {}".format(arrays[0].shape, array.shape)
            raise _disagree(path, what, index)
        arrays.append(array)
    return numpy.stack(arrays)


def _variance(stacked: numpy.ndarray) -> typing.Any:
    """The unbiased variance over axis 0; NaN where there is one run."""
    if len(stacked) < 2:
        return numpy.full(stacked.shape[1:], numpy.nan)[()]
    return stacked.var(axis=0, ddof=1)[()]


def _map_leaves(func: typing.Callable, tree: typing.Any) -> typing.Any:
    if isinstance(tree, dict):
        return {key: _map_leaves(func, value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_leaves(func, value) for value in tree)
    return func(tree)


def _kind(value: typing.Any) -> str:
    if isinstance(value, dict):
        return "a dict"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a number or array"


def _key_difference(first: dict, other: dict, index: int) -> str:
    only_first = [key for key in first if key not in other]
    only_other = [key for key in other if key not in first]
    return "keys {} only in run 0, {} only in run {:d}".format(
        only_first, only_other, index
    )


def _where(path: str) -> str:
    return path or "the top level"


def _disagree(path: str, what: str, index: int) -> ValueError:
    return ValueError(
        "runs disagree at {}: {} (runs 0 and {:d})".format(_where(path), what, index)
    )


def _describe(mean: typing.Any, error: typing.Any) -> str:
    """The means with their errors, in the structure of a run."""
    if isinstance(mean, dict):
        items = ("{!r}: {}".format(k, _describe(mean[k], error[k])) for k in mean)
        return "{" + ", ".join(items) + "}"
    if isinstance(mean, (list, tuple)):
        inner = ", ".join(_describe(m, e) for m, e in zip(mean, error))
        if isinstance(mean, list):
            return "[" + inner + "]"
        return "(" + inner + ("," if len(mean) == 1 else "") + ")"
    if isinstance(mean, numpy.ndarray):
        return "{} ± {}".format(mean, error)
    return _number_with_error(mean, error)


def _number_with_error(mean: typing.Any, error: float) -> str:
    """``1.234 ± 0.012``: the error to two digits, the mean to as many decimals."""
    if not numpy.isfinite(error) or error <= 0:
        return "{:.6g} ± {:.2g}".format(mean, error)
    decimals = 1 - math.floor(math.log10(error))
    if decimals > 8 or abs(mean) >= 1e9:
        return "{:.4e} ± {:.1e}".format(mean, error)
    decimals = max(decimals, 0)
    return "{:.{d}f} ± {:.{d}f}".format(mean, error, d=decimals)
