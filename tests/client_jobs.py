"""
What test_clients.py hands to the client libraries and to ``map``:
module-level, so that the stdlib's pool (the reference) can pickle it too.
"""
import numpy as np


def log_density(x):
    """Log-density (up to a constant) of a correlated 2-d Gaussian.

    emcee's log-probability and dynesty's log-likelihood.
    """
    a, b = x
    return -0.5 * float((a * a - 1.6 * a * b + b * b) / 0.36)


def prior_transform(u):
    """dynesty's prior: uniform on [-5, 5) in every dimension."""
    return 10.0 * np.asarray(u) - 5.0


def rosenbrock(x):
    """differential_evolution's loss."""
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def total(x):
    """The sum of a number, a tuple or an array, as a float."""
    return float(np.sum(x))


class Affine:
    """A callable object: ``Affine(a, b)(x) == a * x + b``."""

    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __call__(self, x):
        return self.a * x + self.b
