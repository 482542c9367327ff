"""
The code fingerprint of the persistent store's keys: which edits keep it,
which change it, and that it is the same in every interpreter run.

Each variant of the code is a fresh module made from source in a folder of
its own (a new name each time unless given, never imported), so that no
variant sees another.
"""
import colorsys
import functools
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import types

import numpy
import numpy.lib.format
import pytest

from pypoolparty.core import fingerprint
from pypoolparty.core.fingerprint import code_fingerprint, job_key

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_numbers = itertools.count()


def module_from(tmp_path, source, module_name=None, **injected):
    """A fresh module run from ``source``, with ``injected`` as globals."""
    number = next(_numbers)
    name = module_name or "fingerprint_case_{0}".format(number)
    folder = tmp_path / "case_{0}".format(number)
    folder.mkdir()
    path = folder / (name.rpartition(".")[2] + ".py")
    path.write_text(textwrap.dedent(source))
    module = types.ModuleType(name)
    module.__file__ = str(path)
    vars(module).update(injected)
    exec(compile(path.read_text(), str(path), "exec"), vars(module))
    return module


def fingerprint_of(tmp_path, source, name="f", **injected):
    return code_fingerprint(getattr(module_from(tmp_path, source, **injected), name))


def edited(source, old, new):
    assert old in source, old
    return source.replace(old, new, 1)


BASE = '''
import math

SCALE = 3


def helper(x):
    return x * SCALE + deeper(x)


def deeper(x):
    return x % 7


def f(x, offset=1, *, power=2):
    total = 0
    for i in range(x):
        total += helper(i) ** power + offset
    return math.sqrt(total)


def unrelated():
    return "unrelated"
'''

SAME = [
    ("comment above", "def f(", "# a comment\n\n\n\ndef f("),
    ("comment inside", "    total = 0\n", "    # inside\n\n    total = 0\n\n"),
    ("comment at the top", "import math", "# top\n\n\nimport math"),
    ("comment in the helper", "    return x * SCALE", "    # why\n    return x * SCALE"),
    ("docstring", "    total = 0\n", '    """Sum it up."""\n    total = 0\n'),
    ("unrelated function", 'return "unrelated"', 'return "changed"'),
    ("unrelated function added", "def unrelated", "def more():\n    pass\n\ndef unrelated"),
]

CHANGED = [
    ("body", "helper(i) ** power + offset", "helper(i) ** power - offset"),
    ("constant", "total = 0", "total = 1"),
    ("default", "offset=1", "offset=2"),
    ("keyword default", "power=2", "power=3"),
    ("module value", "SCALE = 3", "SCALE = 4"),
    ("helper", "x * SCALE", "x * SCALE * 2"),
    ("helper's helper", "x % 7", "x % 8"),
    ("renamed local", "total", "sum_"),
    ("stdlib function called", "math.sqrt", "math.log"),
]


@pytest.mark.parametrize("what, old, new", SAME, ids=[case[0] for case in SAME])
def test_edits_that_keep_the_fingerprint(tmp_path, what, old, new):
    assert fingerprint_of(tmp_path, BASE) == fingerprint_of(
        tmp_path, edited(BASE, old, new)
    )


@pytest.mark.parametrize("what, old, new", CHANGED, ids=[case[0] for case in CHANGED])
def test_edits_that_change_the_fingerprint(tmp_path, what, old, new):
    assert fingerprint_of(tmp_path, BASE) != fingerprint_of(
        tmp_path, edited(BASE, old, new)
    )


def test_fingerprint_is_stable_in_one_process(tmp_path):
    module = module_from(tmp_path, BASE)
    first = code_fingerprint(module.f)
    for x in range(2000):  # lets the interpreter specialise the bytecode
        module.f(x % 20)
    assert code_fingerprint(module.f) == first
    assert len(first) == 64 and int(first, 16) >= 0


def test_python_version_enters(tmp_path, monkeypatch):
    module = module_from(tmp_path, BASE)
    first = code_fingerprint(module.f)
    monkeypatch.setattr(sys.implementation, "cache_tag", "cpython-399")
    assert code_fingerprint(module.f) != first


def test_closure_values_enter(tmp_path):
    source = """
    def make(k):
        def f(x):
            return x + k
        return f
    """
    module = module_from(tmp_path, source)
    assert code_fingerprint(module.make(1)) == code_fingerprint(module.make(1))
    assert code_fingerprint(module.make(1)) != code_fingerprint(module.make(2))


CALLS_HELPERS = """
def f(x):
    return helpers.step(x) + 1
"""

HELPERS = """
def step(x):
    return inner(x) * 2


def inner(x):
    return x + 1


def unused(x):
    return x
"""


@pytest.mark.parametrize(
    "old, new, same",
    [
        ("return inner(x) * 2", "return inner(x) * 3", False),
        ("return x + 1", "return x + 2", False),
        ("def unused(x):\n    return x", "def unused(x):\n    return -x", True),
    ],
    ids=["step", "step's helper", "unrelated"],
)
def test_a_function_of_a_module_global(tmp_path, old, new, same):
    before = module_from(tmp_path, HELPERS, "helpers")
    after = module_from(tmp_path, edited(HELPERS, old, new), "helpers")
    assert (
        fingerprint_of(tmp_path, CALLS_HELPERS, helpers=before)
        == fingerprint_of(tmp_path, CALLS_HELPERS, helpers=after)
    ) is same


def test_a_function_two_modules_down(tmp_path):
    def package_with(source):
        package = module_from(tmp_path, "", "pkg")
        package.sub = module_from(tmp_path, source, "pkg.sub")
        return package

    def fingerprint_with(helpers):
        calls = "def f(x):\n    return pkg.sub.step(x)\n"
        return fingerprint_of(tmp_path, calls, pkg=package_with(helpers))

    first = fingerprint_with(HELPERS)
    assert fingerprint_with(HELPERS) == first
    assert fingerprint_with(edited(HELPERS, "x + 1", "x + 5")) != first


@pytest.mark.parametrize(
    "statement, call",
    [("from {0} import step", "step(x)"), ("import {0}", "{0}.step(x)")],
    ids=["from-import", "import"],
)
def test_a_module_imported_in_the_body(tmp_path, monkeypatch, statement, call):
    name = "fingerprint_local_helpers_{0}".format(next(_numbers))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    source = "def f(x):\n    {0}\n    return {1}\n".format(
        statement.format(name), call.format(name)
    )
    module = module_from(tmp_path, source)

    def fingerprint_with(helpers):
        (tmp_path / (name + ".py")).write_text(helpers)
        sys.modules.pop(name, None)
        try:
            return code_fingerprint(module.f)
        finally:
            sys.modules.pop(name, None)

    first = fingerprint_with(HELPERS)
    assert fingerprint_with(HELPERS) == first
    assert fingerprint_with(edited(HELPERS, "x + 1", "x + 3")) != first
    assert fingerprint_with(edited(HELPERS, "return x\n", "return -x\n")) == first


def test_recursion_ends_and_is_covered(tmp_path):
    source = """
    def f(n):
        return 1 if n <= 0 else n * f(n - 1) + odd(n)

    def even(n):
        return n == 0 or odd(n - 1)

    def odd(n):
        return n != 0 and even(n - 1)
    """
    first = fingerprint_of(tmp_path, source)
    assert fingerprint_of(tmp_path, source) == first
    assert fingerprint_of(tmp_path, edited(source, "n == 0 or", "n <= 0 or")) != first


def test_a_global_value_is_hashed_when_small(tmp_path):
    source = "def f(x):\n    return x + TABLE.sum()\n"
    small = numpy.arange(10.0)
    assert fingerprint_of(tmp_path, source, TABLE=small) == fingerprint_of(
        tmp_path, source, TABLE=small.copy()
    )
    assert fingerprint_of(tmp_path, source, TABLE=small) != fingerprint_of(
        tmp_path, source, TABLE=small + 1
    )


def test_a_large_global_value_enters_by_type(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "VALUE_SIZE_LIMIT", 1000)
    source = "def f(x):\n    return x + TABLE.sum()\n"
    large = numpy.arange(1000.0)
    assert fingerprint_of(tmp_path, source, TABLE=large) == fingerprint_of(
        tmp_path, source, TABLE=large + 1
    )
    assert fingerprint_of(tmp_path, source, TABLE=large) != fingerprint_of(
        tmp_path, source, TABLE=large.astype(numpy.float32)
    )
    assert fingerprint_of(tmp_path, source, TABLE=large) != fingerprint_of(
        tmp_path, source, TABLE=large.reshape(10, 100)
    )


def test_a_large_or_unpicklable_value_of_a_users_class_keeps_its_code(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "VALUE_SIZE_LIMIT", 1000)
    source = """
    import threading

    class Holder:
        def __init__(self):
            self.lock = threading.Lock()

        def value(self):
            return 1

    HOLDER = Holder()

    def f(x):
        return x + HOLDER.value()
    """
    assert fingerprint_of(tmp_path, source) == fingerprint_of(tmp_path, source)
    assert fingerprint_of(tmp_path, source) != fingerprint_of(
        tmp_path, edited(source, "return 1", "return 2")
    )


def test_a_function_in_a_value_given_up_is_still_covered(tmp_path):
    source = """
    import threading

    def helper(x):
        return x + 1

    CONFIG = [helper, threading.Lock()]  # unpicklable: enters by type

    def f(x):
        return helper(x) + len(CONFIG)
    """
    assert fingerprint_of(tmp_path, source) != fingerprint_of(
        tmp_path, edited(source, "x + 1", "x + 2")
    )


def test_an_unpicklable_default_or_closure_is_a_type_error(tmp_path):
    module = module_from(
        tmp_path,
        """
        import threading

        def f(x, lock=threading.Lock()):
            return x

        def make():
            lock = threading.Lock()
            return lambda x: lock
        """,
    )
    with pytest.raises(TypeError, match="defaults"):
        code_fingerprint(module.f)
    with pytest.raises(TypeError, match="closure"):
        code_fingerprint(module.make())
    with pytest.raises(TypeError, match="not callable"):
        code_fingerprint(3)


def test_lambda(tmp_path):
    source = "f = lambda x: x + 1\n"
    assert fingerprint_of(tmp_path, source) == fingerprint_of(
        tmp_path, "# a lambda\n\n" + source
    )
    assert fingerprint_of(tmp_path, source) != fingerprint_of(
        tmp_path, edited(source, "1", "2")
    )


def test_partial(tmp_path):
    module = module_from(tmp_path, BASE)
    other = module_from(tmp_path, edited(BASE, "total = 0", "total = 2"))
    base = code_fingerprint(functools.partial(module.f, 1, power=3))
    assert code_fingerprint(functools.partial(module.f, 1, power=3)) == base
    assert code_fingerprint(functools.partial(module.f, 2, power=3)) != base
    assert code_fingerprint(functools.partial(module.f, 1, power=4)) != base
    assert code_fingerprint(functools.partial(other.f, 1, power=3)) != base
    assert code_fingerprint(functools.partial(module.f, a=1, b=2)) == (
        code_fingerprint(functools.partial(module.f, b=2, a=1))
    )


CLASSES = """
class Model:
    def __init__(self, k):
        self.k = k

    def run(self, x):
        return self.scaled(x) + 1

    def scaled(self, x):
        return x * self.k

    def __call__(self, x):
        return self.run(x)
"""


@pytest.mark.parametrize(
    "pick, has_state",
    [
        (lambda model: model.run, True),
        (lambda model: model, True),
        (lambda model: type(model), False),
    ],
    ids=["bound method", "callable object", "class"],
)
def test_methods_objects_and_classes(tmp_path, pick, has_state):
    def fingerprint_with(source, k=2):
        return code_fingerprint(pick(module_from(tmp_path, source).Model(k)))

    base = fingerprint_with(CLASSES)
    assert fingerprint_with(CLASSES) == base
    assert fingerprint_with("# comment\n" + CLASSES) == base
    assert fingerprint_with(edited(CLASSES, "+ 1", "+ 2")) != base
    assert fingerprint_with(edited(CLASSES, "x * self.k", "x / self.k")) != base
    assert (fingerprint_with(CLASSES, k=3) != base) is has_state


def test_pickling_an_instance_does_not_change_its_class(tmp_path):
    import pickle

    module = module_from(tmp_path, CLASSES)
    sys.modules[module.__name__] = module
    try:
        first = code_fingerprint(module.Model)
        pickle.dumps(module.Model(1))  # adds __slotnames__ to the class
        assert "__slotnames__" in vars(module.Model)
        assert code_fingerprint(module.Model) == first
    finally:
        del sys.modules[module.__name__]


def test_a_cached_helper_is_covered_by_its_code(tmp_path):
    source = """
    import functools

    @functools.lru_cache()
    def helper(x):
        return x + 1

    def f(x):
        return helper(x)
    """
    assert fingerprint_of(tmp_path, source) != fingerprint_of(
        tmp_path, edited(source, "x + 1", "x + 2")
    )


def test_builtins_and_ufuncs_by_name():
    assert code_fingerprint(numpy.sqrt) == code_fingerprint(numpy.sqrt)
    assert code_fingerprint(numpy.sqrt) != code_fingerprint(numpy.cbrt)
    assert code_fingerprint(len) != code_fingerprint(abs)
    assert code_fingerprint(str.upper) != code_fingerprint(str.lower)
    assert code_fingerprint("{0}!".format) != code_fingerprint("{0}?".format)


@pytest.mark.parametrize(
    "module, name, other",
    [
        (colorsys, "rgb_to_hsv", "hsv_to_rgb"),
        (numpy.lib.format, "magic", "read_magic"),
    ],
    ids=["stdlib", "installed distribution"],
)
def test_libraries_enter_by_name_only(tmp_path, monkeypatch, module, name, other):
    calls = "def f(x):\n    return library.{0}(x, x, x)\n".format(name)
    first = fingerprint_of(tmp_path, calls, library=module)
    assert code_fingerprint(getattr(module, name)) != code_fingerprint(
        getattr(module, other)
    )
    original = code_fingerprint(getattr(module, name))
    monkeypatch.setattr(
        getattr(module, name), "__code__", getattr(module, other).__code__
    )
    assert fingerprint_of(tmp_path, calls, library=module) == first
    assert code_fingerprint(getattr(module, name)) == original


def test_a_users_code_swapped_is_seen(tmp_path):
    """The counterpart of the library test: the same swap in user code."""
    helpers = module_from(tmp_path, HELPERS)
    first = fingerprint_of(tmp_path, CALLS_HELPERS, helpers=helpers)
    helpers.step.__code__ = helpers.unused.__code__
    assert fingerprint_of(tmp_path, CALLS_HELPERS, helpers=helpers) != first


def test_neither_file_nor_module_name_enters(tmp_path):
    one = module_from(tmp_path, BASE)
    other = module_from(tmp_path, BASE)
    assert one.__name__ != other.__name__ and one.__file__ != other.__file__
    assert code_fingerprint(one.f) == code_fingerprint(other.f)


DETERMINISM = '''
KINDS = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}


def f(word):
    """Classify."""
    if word in {"one", "two", "three", "four", "five", "six", "seven", "eight"}:
        return "number"
    return "kind" if word in KINDS else frozenset({"x", "y", "z", "w"})
'''

PRINTS = """
from pypoolparty.core.fingerprint import code_fingerprint

print(code_fingerprint(f))
"""


def run_as_main(tmp_path, source, seed):
    script = tmp_path / "script_{0}.py".format(next(_numbers))
    script.write_text(source + PRINTS)
    environment = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=REPO)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=environment,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_same_in_every_interpreter_run(tmp_path):
    in_process = fingerprint_of(tmp_path, DETERMINISM)
    for seed in (0, 1, 2, 12345):
        assert run_as_main(tmp_path, DETERMINISM, seed) == in_process


def test_main_functions(tmp_path):
    base = run_as_main(tmp_path, BASE, seed=1)
    assert base == fingerprint_of(tmp_path, BASE)
    assert run_as_main(tmp_path, "# comment\n\n" + BASE, seed=2) == base
    assert run_as_main(tmp_path, edited(BASE, "offset=1", "offset=2"), seed=1) != base


def test_job_key():
    one = "a" * 64
    key = job_key(one, b"job")
    assert len(key) == 32 and int(key, 16) >= 0
    assert job_key(one, b"job") == key
    assert job_key("b" * 64, b"job") != key
    assert job_key(one, b"jox") != key


def test_value_digest_orders_sets():
    one, other = set([1, 9, 17]), set([17, 9, 1])  # order of insertion shows
    assert list(one) != list(other)
    assert fingerprint.value_digest(one) == fingerprint.value_digest(other)
    assert fingerprint.value_digest({"a"}) != fingerprint.value_digest(frozenset({"a"}))
    assert fingerprint.value_digest({"a"}) != fingerprint.value_digest({"b"})
    with pytest.raises(TypeError):
        fingerprint.value_digest(threading.Lock())
