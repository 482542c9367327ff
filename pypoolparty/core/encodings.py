"""
How a store writes a batch of results: ``pickle`` (any value cloudpickle
carries; the default) or ``json`` (numbers, strings, lists, dicts with string
keys, numpy arrays and scalars, complex numbers: readable by any program,
and by people). Tuples come back from JSON as lists.

A batch that JSON cannot hold is written as a pickle instead (and logged):
a result is never lost to its encoding.
"""
from __future__ import annotations

import json
import logging
import pickle
import typing

import cloudpickle
import numpy

logger = logging.getLogger("pypoolparty")

ENCODINGS = ("pickle", "json")
SUFFIXES = {"pickle": ".pickle", "json": ".json"}


class _Encoder(json.JSONEncoder):
    def default(self, value):
        if isinstance(value, numpy.ndarray):
            return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
        if isinstance(value, numpy.generic):
            return self.default(numpy.asarray(value)) if value.dtype.kind == "c" else value.item()
        if isinstance(value, complex):
            return {"__complex__": [value.real, value.imag]}
        return super().default(value)


def _decode(obj: dict) -> typing.Any:
    if "__ndarray__" in obj:
        return numpy.array(obj["__ndarray__"], dtype=numpy.dtype(obj["dtype"]))
    if "__complex__" in obj:
        return complex(*obj["__complex__"])
    return obj


def check(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ValueError("encoding must be one of {}, not {!r}".format(ENCODINGS, encoding))
    return encoding


def dump(values: typing.List[typing.Any], encoding: str) -> typing.Tuple[bytes, str]:
    """The bytes of a batch and the suffix of its file."""
    if encoding == "json":
        try:
            return json.dumps(values, cls=_Encoder, allow_nan=True).encode(), SUFFIXES["json"]
        except (TypeError, ValueError) as exc:
            logger.warning("pypoolparty: results JSON cannot hold (%s) are stored as a pickle", exc)
    return cloudpickle.dumps(values), SUFFIXES["pickle"]


def load(data: bytes, name: str) -> typing.List[typing.Any]:
    """A batch read back; its file ``name`` tells the encoding."""
    if name.endswith(SUFFIXES["json"]):
        return json.loads(data.decode(), object_hook=_decode)
    return pickle.loads(data)
