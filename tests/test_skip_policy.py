"""
The skip policy (``skip_policy.py``) in pytest runs of its own: a strict run
(CI) fails on a skip nobody expected and on a cluster it cannot start; any
other run skips with a reason that says how to deselect.
"""
import os

import pytest

import skip_policy

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

SAMPLE_TESTS = """
import pytest
import skip_policy

def test_passes():
    pass

def test_skips():
    pytest.skip("nobody expected this")

def test_expected_skip():
    pytest.skip("known: this machine has no such thing")

@pytest.mark.xfail(strict=True, reason="a known bug")
def test_known_bug():
    assert False

def test_needs_a_cluster():
    skip_policy.cluster_unavailable("SLURM cluster", "starting its daemons needs root")
"""

SAMPLE_CONFTEST = """
import skip_policy
skip_policy.EXPECTED_SKIPS.append(("test_sample.py::test_expected_skip", "known:"))
"""


@pytest.fixture
def run_sample(pytester, monkeypatch):
    """Run the sample tests (selected by -k) in a pytest of their own."""
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    pytester.makeconftest(SAMPLE_CONFTEST)
    monkeypatch.setenv("PYTHONPATH", TESTS_DIR)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(skip_policy.STRICT_ENV, raising=False)

    def run(*args, **environ):
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        return pytester.runpytest_subprocess("-p", "skip_policy", "-rs", *args)

    return run


def test_a_strict_run_fails_on_an_unexpected_skip(run_sample):
    result = run_sample("-k", "passes or skip or known_bug", CI="true")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*unexpected skips: this strict run fails*",
            "test_sample.py::test_skips: *nobody expected this*",
        ]
    )
    assert "test_sample.py::test_expected_skip:" not in result.stdout.str()


def test_a_strict_run_with_expected_skips_only_passes(run_sample):
    result = run_sample("-k", "passes or expected_skip or known_bug", PYPOOLPARTY_TEST_STRICT="1")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


def test_outside_ci_a_skip_is_reported_but_does_not_fail(run_sample):
    result = run_sample("-k", "passes or skips")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skips that a CI run would count as failures*"])


def test_a_missing_cluster_skips_with_how_to_deselect(run_sample):
    result = run_sample("-k", "needs_a_cluster")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*no SLURM cluster for this test: starting its daemons needs root*-m \"not cluster\"*"]
    )


def test_a_missing_cluster_fails_a_strict_run(run_sample):
    result = run_sample("-k", "needs_a_cluster", CI="true")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Strict run: this is a failure, not a skip*"])


@pytest.mark.parametrize(
    "environ,strict",
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"PYPOOLPARTY_TEST_STRICT": "1"}, True),
        ({"CI": "true", "PYPOOLPARTY_TEST_STRICT": "0"}, False),
    ],
)
def test_what_counts_as_strict(environ, strict):
    assert skip_policy.is_strict(environ) is strict
