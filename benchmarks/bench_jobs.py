"""
The jobs the benchmarks map, in a module of their own that imports next to
nothing: a worker imports the module of the function it runs, and the
benchmark scripts' own imports (pypoolparty, multiprocessing, ...) are not
the pool's cost.
"""
import time


def trivial(x):
    return x


def sleep_half_a_second(x):
    time.sleep(0.5)
    return x
