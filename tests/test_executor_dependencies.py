"""
Futures as arguments (:mod:`pypoolparty.core.future_args`) on the fake
scheduler, the processes executor and ``pypoolparty.local.Executor``: the
call waits for them without blocking the caller, gets their results in
their place, fails with a failed dependency's exception, is cancelled with
a cancelled one, and still runs after ``shutdown(wait=False)``.

Hand-made futures (``concurrent.futures.Future()``) stand for dependencies
that are not done yet: the test decides when they end.
"""
import concurrent.futures
import threading

import pytest

from executor_kinds import OURS, executor_fixture
from fake_jobs import add, counted, fail_on, runs_of, square, wait_for_gate
from pypoolparty.core import future_args

pytestmark = pytest.mark.timeout(60)

executor = executor_fixture(OURS)


def test_a_chain_and_a_diamond(executor):
    with executor() as ex:
        a = ex.submit(square, 3)
        b = ex.submit(add, a, 1)
        c = ex.submit(add, b, 100)
        assert c.result(timeout=30) == 110  # a -> b -> c
        top = ex.submit(square, 2)
        left = ex.submit(add, top, 1)
        right = ex.submit(square, top)
        bottom = ex.submit(add, left, b=right)
        assert bottom.result(timeout=30) == 5 + 16  # top -> left, right -> bottom


def test_futures_nested_in_lists_tuples_sets_and_dicts(executor):
    with executor() as ex:
        a, b = ex.submit(square, 2), ex.submit(square, 3)
        positional = ex.submit(tuple, [a, (b, [a]), {"k": b, "n": 1}, {a, 7}])
        assert positional.result(timeout=30) == (4, (9, [4]), {"k": 9, "n": 1}, {4, 7})
        keywords = ex.submit(dict, x=a, y=[b, 5], z=frozenset([b]))
        assert keywords.result(timeout=30) == {"x": 4, "y": [9, 5], "z": frozenset([9])}


def test_the_dependent_is_pending_and_cancellable_while_it_waits(executor, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with executor() as ex:
        dependency = concurrent.futures.Future()
        dependent = ex.submit(counted, dependency, str(runs))  # returns at once
        kept = ex.submit(counted, dependency, str(runs))
        assert not dependent.done() and not dependent.running()
        assert dependent.cancel() and dependent.cancelled()
        dependency.set_result(5)
        assert kept.result(timeout=30) == 25
    assert runs_of(runs) == {5: 1}  # the cancelled call never ran


def test_a_failed_dependency_fails_the_dependents_with_its_exception(executor):
    with executor() as ex:
        bad = ex.submit(fail_on, 3)
        dependent = ex.submit(add, 1, [bad])
        further = ex.submit(square, dependent)
        error = bad.exception(timeout=30)
        assert isinstance(error, ValueError) and error.args == ("bad job", 3)
        assert dependent.exception(timeout=30) is error
        assert further.exception(timeout=30) is error


def test_a_cancelled_dependency_cancels_the_dependents(executor, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with executor() as ex:
        dependency = concurrent.futures.Future()
        dependent = ex.submit(counted, dependency, str(runs))
        further = ex.submit(counted, {"x": dependent}["x"], str(runs))
        dependency.cancel()
        assert dependent.cancelled() and further.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            further.result(timeout=1)
    assert runs_of(runs) == {}


def test_a_dependency_from_another_executor(executor):
    with executor() as ex, concurrent.futures.ThreadPoolExecutor(1) as threads:
        gate = threading.Event()
        elsewhere = threads.submit(lambda: gate.wait(30) and 6)
        dependent = ex.submit(square, elsewhere)
        assert not dependent.done()
        gate.set()
        assert dependent.result(timeout=30) == 36


def test_futures_in_map_arguments(executor):
    with executor() as ex:
        a = ex.submit(square, 2)
        assert list(ex.map(add, [a, 1, a], [10, a, 0], timeout=30)) == [14, 5, 4]


def test_an_unhashable_result_in_a_set_fails_the_call_with_type_error(executor):
    with executor() as ex:
        listed = ex.submit(list, [1])
        dependent = ex.submit(len, {listed})
        assert isinstance(dependent.exception(timeout=30), TypeError)


def test_waiting_dependents_run_after_shutdown_without_wait(executor):
    ex = executor()
    dependency = concurrent.futures.Future()
    dependent = ex.submit(add, dependency, 1)
    ex.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    dependency.set_result(2)
    assert dependent.result(timeout=30) == 3


def test_shutdown_with_wait_waits_for_the_waiting_dependents(executor):
    ex = executor()
    dependency = concurrent.futures.Future()
    dependent = ex.submit(add, dependency, 1)
    timer = threading.Timer(0.3, dependency.set_result, (4,))
    timer.start()
    ex.shutdown(wait=True)
    assert dependent.done() and dependent.result() == 5
    timer.join()


def test_shutdown_cancel_futures_cancels_the_waiting_dependents(executor, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    ex = executor()
    dependency = concurrent.futures.Future()
    dependent = ex.submit(counted, dependency, str(runs))
    ex.shutdown(wait=True, cancel_futures=True)
    assert dependent.cancelled()
    dependency.set_result(3)
    assert runs_of(runs) == {}


# ------------------------------------------------- the walk, without an executor
def test_futures_in_finds_each_future_once_in_argument_order():
    a, b = concurrent.futures.Future(), concurrent.futures.Future()
    loop = [a]
    loop.append(loop)  # a list that holds itself is walked once
    assert future_args.futures_in((b, [a, (b,)]), {"k": {"x": a}}) == [b, a]
    assert future_args.futures_in((loop,), {}) == [a]
    assert future_args.futures_in((1, "x", [2]), {"k": {3: 4}}) == []


def test_substituted_copies_only_containers_that_held_a_future():
    a = concurrent.futures.Future()
    a.set_result(7)
    plain, table = [1, 2], {"n": (3,)}
    args, kwargs = future_args.substituted((plain, [a, plain]), {"k": (a,), "t": table})
    assert args == ([1, 2], [7, [1, 2]]) and kwargs == {"k": (7,), "t": {"n": (3,)}}
    assert args[0] is plain and args[1][1] is plain and kwargs["t"] is table


def test_a_cancelled_dependent_counts_as_done_for_wait_and_as_completed(executor):
    with executor() as ex:
        dependency = concurrent.futures.Future()
        by_caller = ex.submit(abs, dependency)
        by_chain = ex.submit(abs, by_caller)  # cancelled because its dependency is
        assert by_caller.cancel()
        done, not_done = concurrent.futures.wait([by_caller, by_chain], timeout=10)
        assert done == {by_caller, by_chain} and not not_done
        assert set(concurrent.futures.as_completed([by_caller, by_chain], timeout=10)) == done
        assert by_chain.cancelled()
        dependency.set_result(1)


def test_a_long_chain_ends_when_its_first_link_fails(executor):
    # x = submit(step, x) a thousand times: the failure travels down the
    # chain without recursing through the futures' callbacks.
    with executor() as ex:
        first = concurrent.futures.Future()
        chain, x = [], first
        for _ in range(1000):
            x = ex.submit(abs, x)
            chain.append(x)
        first.set_exception(ValueError("the first link failed"))
        done, not_done = concurrent.futures.wait(chain, timeout=30)
        assert not not_done
        assert all(isinstance(f.exception(), ValueError) for f in chain)


def test_many_calls_on_one_local_future_start_outside_the_stdlibs_thread(tmp_path):
    # They used to start in the stdlib executor's manager thread, whose own
    # wakeup pipe then filled up (about 16 000 calls) with nobody to empty it.
    import pypoolparty.local

    gate = tmp_path / "gate"
    gate.mkdir()
    with pypoolparty.local.Executor(2) as ex:
        first = ex.submit(wait_for_gate, str(gate))  # done (by the stdlib's thread) after the submits
        many = [ex.submit(str, first) for _ in range(17000)]
        assert not first.done()
        (gate / "go").touch()
        done, not_done = concurrent.futures.wait(many, timeout=50)
        assert not not_done and {f.result() for f in many} == {"None"}
