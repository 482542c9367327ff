"""
Job functions of the conformance suite: module-level, so that the stdlib's
pool (the reference) can pickle them too.
"""
import os
import threading
import time

INITIALIZED = []


def square(x):
    return x * x


def add(a, b):
    return a + b


def sleep_then_return(x):
    time.sleep(x)
    return x


def fail_on_two(x):
    if x == 2:
        raise ValueError("two", 2)
    return x


def fail_first_else_sleep(x):
    """Job 0 raises at once; the others take two minutes."""
    if x == 0:
        raise ValueError("first")
    time.sleep(120)
    return x


class CustomError(Exception):
    pass


def raise_custom(x):
    raise CustomError("custom", x)


def initialize(tag):
    INITIALIZED.append((tag, os.getpid()))


def initialized(_):
    return list(INITIALIZED)


def unpicklable_result(_):
    return threading.Lock()


def pid_of(_):
    return os.getpid()


def kwargs_call(a, b=0, *, c=0):
    return a + 10 * b + 100 * c
