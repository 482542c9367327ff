"""
Where a function, class or module comes from: the user's code, the
standard library, or an installed library. The fingerprint
(:mod:`.fingerprint`) follows the user's code by its code and names the
rest.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import sys
import sysconfig
import types
import typing

USER, STDLIB, LIBRARY = "user", "stdlib", "library"


def qualified_name(obj: typing.Any) -> str:
    module = getattr(obj, "__module__", None)
    if module is None:
        module = getattr(getattr(obj, "__objclass__", None), "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?")
    return "{0}.{1}".format(module, name)


def origin(obj: typing.Any) -> str:
    """USER, STDLIB or LIBRARY: where a function or class comes from."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is not None:
        return module_origin(module)
    code = getattr(obj, "__code__", None)
    if code is not None:
        return path_origin(code.co_filename)
    return USER  # its module was made by hand (exec into a fresh namespace)


def module_origin(module: types.ModuleType) -> str:
    path = getattr(module, "__file__", None)
    if path:
        return path_origin(path)
    return spec_origin(getattr(module, "__spec__", None), module.__name__)


def spec_origin(spec: typing.Any, name: str) -> str:
    """Where a module without a file comes from, by its import spec."""
    origin = getattr(spec, "origin", None)
    if name in sys.builtin_module_names or origin in ("built-in", "frozen"):
        return STDLIB
    if spec is None:
        return USER  # made by hand
    locations = list(spec.submodule_search_locations or [None])
    path = spec.origin if spec.has_location else locations[0]
    return path_origin(path) if path else USER


def is_user_module(value: typing.Any) -> bool:
    return isinstance(value, types.ModuleType) and module_origin(value) == USER


def import_origin(absolute: str) -> str:
    """Where an import comes from, without importing what is not the user's."""
    top = absolute.partition(".")[0]
    for name in (absolute, top):
        if name in sys.modules:
            return module_origin(sys.modules[name])
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    # Not to be found: nothing of the user's to cover.
    return LIBRARY if spec is None else spec_origin(spec, top)


@functools.lru_cache(maxsize=None)
def path_origin(path: str) -> str:
    """USER, STDLIB or LIBRARY: where a source file lies."""
    if path.startswith("<"):  # "<frozen os>", "<string>", "<stdin>", ...
        return STDLIB if path.startswith("<frozen ") else USER
    real = os.path.realpath(path)
    if {"site-packages", "dist-packages"} & set(pathlib.PurePath(real).parts):
        return LIBRARY
    for kind, key in ((LIBRARY, "purelib"), (LIBRARY, "platlib"), (STDLIB, "stdlib")):
        folder = os.path.realpath(sysconfig.get_path(key))
        if os.path.commonpath([real, folder]) == folder:
            return kind
    return USER
