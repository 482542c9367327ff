"""
A pytest plugin: no test may go missing from a CI run unnoticed.

Outside CI, tests that need a cluster this machine cannot start are skipped,
with a reason that says what is missing and how to leave them out
(``-m "not cluster"``). In a strict run -- ``CI=true`` (CI services set it)
or ``PYPOOLPARTY_TEST_STRICT=1``; ``PYPOOLPARTY_TEST_STRICT=0`` turns it
off -- such a cluster fails those tests instead, and every skip that is not
on :data:`EXPECTED_SKIPS` fails the run: a skip must never pass for a pass.

Loaded by ``tests/conftest.py``; stand-alone with ``-p skip_policy``.
"""
from __future__ import annotations

import os
import typing

import pytest

STRICT_ENV = "PYPOOLPARTY_TEST_STRICT"

#: The skips a strict run accepts: (test id, words of the skip's reason).
EXPECTED_SKIPS: typing.List[typing.Tuple[str, str]] = [
    # Only root can hand a directory to root; CI runs as root, a developer may not.
    (
        "tests/test_workdir.py::test_sticky_shared_dir_is_accepted_and_map_dirs_in_it_are_private[root]",
        "only root can give a directory to root",
    ),
    ("tests/test_workdir.py::test_dir_of_another_user_is_refused", "only root can give a directory"),
    (
        "tests/test_workdir.py::test_sticky_dir_of_another_ordinary_user_is_refused",
        "only root can give a directory",
    ),
]

HOW_TO_RUN = (
    "Run the tests as root (the session then starts private SLURM and Grid "
    "Engine daemons from Debian's packages and stops them at the end), or "
    "point them at running ones (PYPOOLPARTY_TEST_SLURM_CONF=<its slurm.conf>, "
    "PYPOOLPARTY_TEST_SGE_RUNNING=1), or leave these tests out: "
    'python -m pytest tests -m "not cluster".'
)


def is_strict(environ: typing.Mapping[str, str] = os.environ) -> bool:
    """Whether this is a run where skips are failures (CI)."""
    value = environ.get(STRICT_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no")
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def cluster_unavailable(what: str, why: str) -> typing.NoReturn:
    """Skip the test that needs ``what`` (fail it in a strict run), saying ``why``."""
    message = "no {:s} for this test: {:s}. {:s}".format(what, why, HOW_TO_RUN)
    if is_strict():
        pytest.fail(message + " (Strict run: this is a failure, not a skip.)", pytrace=False)
    pytest.skip(message)


def is_expected(nodeid: str, reason: str) -> bool:
    return any(nodeid == n and words in reason for n, words in EXPECTED_SKIPS)


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


class SkipPolicy:
    """Collects the unexpected skips of a run and fails a strict run over them."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.unexpected: typing.List[typing.Tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = skip_reason(report)
        if not is_expected(report.nodeid, reason):
            self.unexpected.append((report.nodeid, reason))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.strict and self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unexpected:
            return
        if self.strict:
            title = "unexpected skips: this strict run fails ({:s} or CI is set)".format(STRICT_ENV)
        else:
            title = "skips that a CI run would count as failures"
        terminalreporter.section(title, sep="=", red=self.strict, yellow=not self.strict)
        for nodeid, reason in self.unexpected:
            terminalreporter.line("{:s}: {:s}".format(nodeid, reason))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipPolicy(is_strict()), "pypoolparty-skip-policy")
