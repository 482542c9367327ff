"""
What code a map runs, as one digest: the first half of a stored result's key.

A stored result may be reused only when the code that would compute it again
is the same. :func:`code_fingerprint` hashes a description of that code and
:func:`job_key` joins it with one job's pickle. ``cloudpickle.dumps(func)`` is
no such description: it names a function of an importable module by module and
name only (an edited body would reuse stale results), and it carries the line
numbers of a ``__main__`` function (a comment above it would force a rerun).

What the fingerprint covers
---------------------------
- The function's compiled code: bytecode, constants (and in them the code of
  lambdas, comprehensions, inner functions and classes), names, argument
  layout, flags, exception table. Not its line numbers, columns, file, module
  or qualified name: comments, blank lines and moving the function to another
  file leave the key. Renaming the function changes it.
- Not the docstrings of the functions and methods it visits: they document,
  like comments, and editing them must not cost a rerun of days (code that
  reads its own ``__doc__`` is the rare exception: force a rerun there). Inner
  functions keep theirs: their code does not tell a docstring from a first
  string constant on every Python version.
- What the code names: globals (``step``), attributes of the user's modules
  (``helpers.step``, ``pkg.sub.step``) and imports in its body (``from
  helpers import step``; of ``import helpers`` the attributes the code names;
  the user's modules are imported for this, as the call would).
  The user's functions and classes enter by their code, transitively and once
  each (recursion ends); classes by their attributes, sorted by name.
- The standard library, installed distributions (``site-packages``,
  ``dist-packages``) and C functions by qualified name only: upgrading numpy
  keeps the key. This is the choice: a key over every library's code would
  change with each ``pip install``, and a library fix rarely changes a result;
  force a rerun when one does. A package installed editable is the user's.
- Module-level values (``N = 10``, a small array): the digest of their pickle
  up to :data:`VALUE_SIZE_LIMIT` bytes; a larger or unpicklable one by its
  type (a class of the user's by its code), shape and dtype, so hashing never
  costs more than the work. Editing a large array in place thus keeps the
  key: pass data as jobs, defaults or ``partial`` arguments.
- In full: defaults, keyword defaults, closure cells, ``functools.partial``
  (function, arguments, keywords), bound methods (function and ``__self__``),
  callable objects (the instance; its class by its code). What of these cannot
  be pickled raises ``TypeError``: the pool could not send it anyway.
- Python's implementation and major.minor version (bytecode differs between
  versions) and :data:`FORMAT_VERSION`.

The digest is the same in every interpreter run: nothing depends on ``id()``,
addresses or ``PYTHONHASHSEED`` (sets, in code constants and in values, are
ordered by their elements' digests; dicts keep their order). Not covered: code
reached only at run time (``getattr(module, name)``, ``eval``), files and
environment variables read, compiled extensions of the user's.
"""
from __future__ import annotations

import builtins
import dis
import functools
import hashlib
import importlib
import importlib.util
import sys
import types
import typing

import cloudpickle

from . import code_origin

#: Raised with each change of what a fingerprint describes, so that keys made
#: by an older description are never taken for keys of the new one.
FORMAT_VERSION = 1

#: A module-level value whose pickle is larger (bytes) enters by its type only.
VALUE_SIZE_LIMIT = 1 << 20

#: Hex characters of a job key: 128 bits.
JOB_KEY_LENGTH = 32

#: Class attributes that say where a class is or that Python adds by itself
#: (``__slotnames__`` after the first pickle of an instance, ``_abc_impl``).
SKIPPED_CLASS_ATTRIBUTES = frozenset(
    "__dict__ __weakref__ __module__ __qualname__ __doc__ __slotnames__ _abc_impl"
    " __firstlineno__ __static_attributes__ __annotations__ __annotate__"
    " __annotate_func__ __annotations_cache__".split()
)


_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTRIBUTE_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_LITERALS = (str, bytes, int, float, complex, type(Ellipsis))
_C_CALLABLES = (
    types.BuiltinFunctionType, types.MethodDescriptorType, types.MethodWrapperType,
    types.WrapperDescriptorType, types.ClassMethodDescriptorType,
)
#: What a name may refer to that is described as code rather than as a value.
_CODE_KINDS = (types.FunctionType, type, functools.partial, types.MethodType)


class _Marker(str):
    """A name recorded without an object behind it."""


UNDEFINED = _Marker("undefined")
BY_NAME = _Marker("by name")


def code_fingerprint(func: typing.Callable) -> str:
    """The sha256 hex digest of the code a call of ``func`` would run.

    Parameters
    ----------
    func : callable
        A function, lambda, ``functools.partial``, bound method, class,
        callable object or builtin.

    Returns
    -------
    str
        64 hex characters; what they cover is in the module's docstring.

    Raises
    ------
    TypeError
        If ``func`` is not callable, or a default, closure value, bound
        ``__self__`` or callable object cannot be pickled.
    """
    if not callable(func):
        raise TypeError("Cannot fingerprint {0!r}: not callable".format(func))
    header = ("pypoolparty code", FORMAT_VERSION, sys.implementation.cache_tag)
    return _digest(header + (_Describer().describe(func),))


def job_key(fingerprint: str, job_pickle: bytes) -> str:
    """The key of one job's result: 32 hex characters of sha256.

    128 bits suffice: two keys collide by chance with probability about
    ``n**2 / 2**129`` among ``n``, below 1e-14 for a trillion results. Nobody
    forges collisions: the store is the user's own folder, and who can write
    there can plant pickles anyway.

    Parameters
    ----------
    fingerprint : str
        :func:`code_fingerprint` of the map's function (of fixed length, so
        the two parts cannot shift into each other).
    job_pickle : bytes
        The job's pickle.
    """
    digest = hashlib.sha256(fingerprint.encode("ascii"))
    digest.update(job_pickle)
    return digest.hexdigest()[:JOB_KEY_LENGTH]


def value_digest(value: typing.Any) -> str:
    """The sha256 hex digest of a value's pickle, the same in every run.

    cloudpickle's pickle, with sets ordered and the user's functions and
    classes standing in by their description. ``TypeError`` if ``value``
    cannot be pickled.
    """
    return _Describer().strict_value(value, "value")


def _digest(description: typing.Any) -> str:
    """sha256 of a description: nested tuples of str, bytes, numbers, None."""
    return hashlib.sha256(repr(description).encode("utf-8")).hexdigest()


class _Describer:
    """Describes callables, code and values; visits each object once."""

    def __init__(self) -> None:
        self._visits: typing.Dict[int, int] = {}
        self._alive: typing.List[typing.Any] = []  # ids stay unique meanwhile

    def _by_name_or_seen(self, obj: typing.Any, kind: str) -> typing.Optional[tuple]:
        """The short description of a function or class not the user's or seen
        before; None, marking it seen, if it is to be described in full."""
        origin = code_origin.origin(obj)
        if origin != code_origin.USER:
            return (kind, origin, code_origin.qualified_name(obj))
        if id(obj) in self._visits:
            return ("seen", self._visits[id(obj)])
        self._visits[id(obj)] = len(self._visits)
        self._alive.append(obj)
        return None

    def describe(self, obj: typing.Any) -> tuple:
        """The description of anything a pool may call."""
        if isinstance(obj, functools.partial):
            keywords = sorted(obj.keywords.items(), key=lambda item: item[0])
            arguments = self.strict_value((obj.args, keywords), "partial's arguments")
            return ("partial", self.describe(obj.func), arguments)
        if isinstance(obj, types.MethodType):
            owner = self.strict_value(obj.__self__, "method's __self__")
            return ("method", self.describe(obj.__func__), owner)
        if isinstance(obj, types.FunctionType):
            return self._function(obj)
        if isinstance(obj, type):
            return self._class(obj)
        if isinstance(obj, _C_CALLABLES):
            owner = getattr(obj, "__self__", None)
            if owner is None or isinstance(owner, types.ModuleType):
                return ("builtin", code_origin.qualified_name(obj))
            return ("builtin", obj.__name__, self.strict_value(owner, "__self__"))
        if _is_wrapper(obj):  # functools.lru_cache and other decorators' objects
            return ("wrapper", self.describe(obj.__wrapped__), self._lenient_value(obj))
        return ("instance", self.strict_value(obj, "callable object"))

    def _function(self, func: types.FunctionType) -> tuple:
        short = self._by_name_or_seen(func, "function")
        if short:
            return short
        what = "function {0}'s ".format(func.__qualname__)
        cells = tuple(_cell_contents(cell) for cell in func.__closure__ or ())
        return (
            "function",
            self._code(func.__code__, docstring=func.__doc__),
            self.strict_value(func.__defaults__, what + "defaults"),
            self.strict_value(func.__kwdefaults__, what + "keyword defaults"),
            self.strict_value(cells, what + "closure"),
            self._references(func.__code__, func.__globals__),
        )

    def _class(self, cls: type) -> tuple:
        short = self._by_name_or_seen(cls, "class")
        if short:
            return short
        names = sorted(set(vars(cls)) - SKIPPED_CLASS_ATTRIBUTES)
        attributes = tuple((name, self._attribute(vars(cls)[name])) for name in names)
        bases = tuple(self.reference(base) for base in cls.__bases__)
        return ("class", cls.__name__, bases, self.reference(type(cls)), attributes)

    def _attribute(self, value: typing.Any) -> typing.Any:
        """A class attribute; methods by their functions."""
        if isinstance(value, (staticmethod, classmethod)):
            return (type(value).__name__, self.reference(value.__func__))
        if isinstance(value, property):
            accessors = (value.fget, value.fset, value.fdel)
            return ("property",) + tuple(self.reference(f) for f in accessors)
        if isinstance(value, functools.cached_property):
            return ("cached_property", self.reference(value.func))
        return self.reference(value)

    def _code(self, code: types.CodeType, docstring: typing.Any = None) -> tuple:
        """Compiled code without lines, columns or file; see the module doc."""
        constants = list(code.co_consts)
        if docstring is not None and constants and constants[0] is docstring:
            constants[0] = None
        return (
            "code", code.co_name, code.co_flags, code.co_code,
            code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
            tuple(self._constant(constant) for constant in constants),
            code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
            getattr(code, "co_exceptiontable", b""),  # Python 3.11+
        )

    def _constant(self, constant: typing.Any) -> typing.Any:
        if isinstance(constant, types.CodeType):
            return self._code(constant)
        if isinstance(constant, tuple):
            return ("tuple", tuple(self._constant(item) for item in constant))
        if isinstance(constant, frozenset):
            items = sorted((self._constant(item) for item in constant), key=repr)
            return ("frozenset", tuple(items))
        if constant is None or isinstance(constant, _LITERALS):
            return constant  # repr tells them apart and holds no address
        return ("constant", self.strict_value(constant, "code constant"))

    def _references(self, code: types.CodeType, namespace: dict) -> tuple:
        found = _referenced(code, namespace)
        return tuple((name, self.reference(found[name])) for name in sorted(found))

    def reference(self, obj: typing.Any) -> typing.Any:
        """Something named: callables by code, modules by name, values by pickle."""
        if obj is None or isinstance(obj, _Marker):
            return None if obj is None else str(obj)
        if isinstance(obj, types.ModuleType):
            return ("module", obj.__name__)
        if isinstance(obj, _CODE_KINDS + _C_CALLABLES) or _is_wrapper(obj):
            return self.describe(obj)
        return ("value", self._lenient_value(obj))

    def strict_value(self, value: typing.Any, what: str) -> str:
        """The digest of ``value``'s canonical pickle, or ``TypeError``."""
        try:
            return _pickle_digest(value, self, limit=None)
        except Exception as error:
            message = "Cannot fingerprint the {0}: it cannot be pickled ({1}: {2})"
            raise TypeError(message.format(what, type(error).__name__, error)) from error

    def _lenient_value(self, value: typing.Any) -> typing.Any:
        """The digest of ``value``'s pickle, or its type if large or unpicklable."""
        visited = len(self._alive)
        try:
            return _pickle_digest(value, self, limit=VALUE_SIZE_LIMIT)
        except Exception:  # _TooLarge, or not picklable
            # What the pickle given up visited was not recorded: forget it, to
            # describe it in full where it is met next.
            for obj in self._alive[visited:]:
                del self._visits[id(obj)]
            del self._alive[visited:]
            return ("type", self.reference(type(value)), _array_layout(value))

    def stand_in(self, obj: typing.Any) -> typing.Optional[tuple]:
        """What the canonical pickle writes for ``obj`` (None: its own pickle)."""
        kind = type(obj)
        if kind is set or kind is frozenset:
            items = sorted(self.strict_value(item, "set element") for item in obj)
            return (kind.__name__, tuple(items))
        if kind is types.ModuleType:
            return ("module", obj.__name__)
        if kind is types.CodeType:
            return ("code", _digest(self._code(obj)))
        if isinstance(obj, (types.FunctionType, type)) and code_origin.origin(obj) == code_origin.USER:
            return ("code", _digest(self.describe(obj)))
        return None


class _TooLarge(Exception):
    """A pickle grew beyond its limit."""


class _DigestSink:
    """A file that hashes what is written to it, up to a limit (bytes)."""

    def __init__(self, limit: typing.Optional[int]):
        self.hash, self.limit, self.size = hashlib.sha256(), limit, 0

    def write(self, data: typing.Any) -> int:
        size = memoryview(data).nbytes
        self.size += size
        if self.limit is not None and self.size > self.limit:
            raise _TooLarge()
        self.hash.update(data)
        return size


class _CanonicalPickler(cloudpickle.Pickler):
    """cloudpickle with :meth:`_Describer.stand_in` as persistent ids."""

    def __init__(self, file: _DigestSink, describer: _Describer):
        super().__init__(file, protocol=5)
        self.describer = describer

    def persistent_id(self, obj: typing.Any) -> typing.Optional[tuple]:
        return self.describer.stand_in(obj)


def _pickle_digest(
    value: typing.Any, describer: _Describer, limit: typing.Optional[int]
) -> str:
    sink = _DigestSink(limit)
    _CanonicalPickler(sink, describer).dump(value)
    return sink.hash.hexdigest()


def _cell_contents(cell: types.CellType) -> typing.Any:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet
        return UNDEFINED


def _array_layout(value: typing.Any) -> typing.Optional[tuple]:
    """Shape and dtype of an array (numpy's or alike), else None."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return (shape, str(dtype))
    return None


def _is_wrapper(obj: typing.Any) -> bool:
    """A decorator's object around a function (``functools.lru_cache``...)."""
    return "__wrapped__" in getattr(obj, "__dict__", {})


def _code_tree(code: types.CodeType) -> typing.Iterator[types.CodeType]:
    """``code`` and the code objects nested in its constants."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_tree(constant)


def _referenced(code: types.CodeType, namespace: dict) -> typing.Dict[str, typing.Any]:
    """What the code names outside itself: dotted name -> object or marker.

    A global followed by attribute loads goes down through the user's modules
    (``helpers.step``); imports in the body: see :func:`_imported`.
    """
    found: typing.Dict[str, typing.Any] = {}
    names = {name for each in _code_tree(code) for name in each.co_names}
    for each in _code_tree(code):
        instructions = list(dis.get_instructions(each))
        for index, instruction in enumerate(instructions):
            if instruction.opname in _GLOBAL_LOADS:
                value = namespace.get(instruction.argval, UNDEFINED)
                if value is UNDEFINED:
                    value = vars(builtins).get(instruction.argval, UNDEFINED)
                path = [instruction.argval]
                for following in instructions[index + 1 :]:
                    if following.opname not in _ATTRIBUTE_LOADS or not (
                        code_origin.is_user_module(value) and hasattr(value, following.argval)
                    ):
                        break
                    value = getattr(value, following.argval)
                    path.append(following.argval)
                found.setdefault(".".join(path), value)
            elif instruction.opname == "IMPORT_NAME":
                found.update(_imported(instructions, index, namespace, names))
    return found


def _imported(
    instructions: typing.List[dis.Instruction], index: int, namespace: dict, names: set
) -> typing.Dict[str, typing.Any]:
    """What an import in a function's body brings: dotted name -> object.

    The user's modules are imported, as the call would; others stay names.
    Of a user's module, the attributes the code names are taken too (``import
    helpers`` ... ``helpers.step``).
    """
    level = instructions[index - 2].argval if index >= 2 else 0
    fromlist = instructions[index - 1].argval if index >= 1 else None
    name = "." * (level if isinstance(level, int) else 0) + instructions[index].argval
    try:
        package = namespace.get("__package__") or namespace.get("__name__", "")
        absolute = importlib.util.resolve_name(name, package)
    except (ImportError, ValueError, TypeError):
        return {name: UNDEFINED}
    if code_origin.import_origin(absolute) != code_origin.USER:
        return {absolute: BY_NAME}
    try:
        module = importlib.import_module(absolute)
    except Exception:
        return {absolute: UNDEFINED}
    targets = {absolute: module}
    if isinstance(fromlist, tuple):
        targets = {absolute + "." + a: getattr(module, a, UNDEFINED) for a in fromlist}
    found = {}
    for dotted, value in targets.items():
        found[dotted] = value
        if code_origin.is_user_module(value):
            for attribute in sorted(names & set(vars(value))):
                found[dotted + "." + attribute] = getattr(value, attribute)
    return found
