"""
The building blocks of ``@parallel_average``: the average over runs (equal to
numpy's over the stacked runs) and each run's reproducible randomness.
"""
import json
import math
import os
import pickle
import random
import subprocess
import sys
import warnings

import numpy
import pytest

from pypoolparty.runs import averaging, seeding
from pypoolparty.runs.averaging import Averaged, average

HERE = os.path.dirname(os.path.abspath(__file__))


def assert_statistics(averaged, stacked):
    """The four statistics equal numpy's over ``stacked`` (runs on axis 0)."""
    n = len(stacked)
    std = numpy.std(stacked, axis=0, ddof=1)
    numpy.testing.assert_allclose(averaged.mean, numpy.mean(stacked, axis=0), rtol=1e-12)
    numpy.testing.assert_allclose(
        averaged.variance, numpy.var(stacked, axis=0, ddof=1), rtol=1e-12
    )
    numpy.testing.assert_allclose(averaged.standard_deviation, std, rtol=1e-12)
    numpy.testing.assert_allclose(averaged.estimated_error, std / math.sqrt(n), rtol=1e-12)
    assert averaged.num_runs == n


def test_scalar_runs_average_as_numpy():
    values = numpy.random.default_rng(1).normal(3.0, 0.5, size=40)
    averaged = average(list(values))
    assert_statistics(averaged, values)
    assert isinstance(averaged.mean, float)
    # The error is the standard error of the mean, as scipy has it too.
    scipy_stats = pytest.importorskip("scipy.stats")
    assert averaged.estimated_error == pytest.approx(scipy_stats.sem(values), rel=1e-12)


def test_integer_and_numpy_scalar_runs():
    assert_statistics(average([1, 2, 4, 8]), numpy.array([1.0, 2.0, 4.0, 8.0]))
    runs = [numpy.float32(0.5), numpy.float32(1.5), numpy.int64(4)]
    assert average(runs).mean == pytest.approx(2.0)


def test_array_runs_average_elementwise():
    runs = list(numpy.random.default_rng(2).normal(size=(30, 2, 3)))
    averaged = average(runs)
    assert averaged.mean.shape == (2, 3)
    assert_statistics(averaged, numpy.stack(runs))


def test_nested_runs_keep_their_structure():
    rng = numpy.random.default_rng(3)
    runs = [
        {
            "energy": rng.normal(),
            "spectrum": rng.normal(size=4),
            "sites": [rng.normal(), rng.normal(size=2)],
            "pair": (int(rng.integers(10)), rng.normal()),
        }
        for _ in range(25)
    ]
    averaged = average(runs)
    for statistic in averaging.STATISTICS:
        part = getattr(averaged, statistic)
        assert list(part) == ["energy", "spectrum", "sites", "pair"]
        assert isinstance(part["sites"], list) and isinstance(part["pair"], tuple)
    assert_statistics(averaged["energy"], numpy.array([r["energy"] for r in runs]))
    assert_statistics(averaged["spectrum"], numpy.stack([r["spectrum"] for r in runs]))
    assert_statistics(averaged["sites"][1], numpy.stack([r["sites"][1] for r in runs]))
    assert_statistics(averaged["pair"][0], numpy.array([r["pair"][0] for r in runs]))


def test_keys_in_another_order_and_lists_for_tuples_agree():
    averaged = average([{"a": 1.0, "b": (2.0,)}, {"b": [4.0], "a": 3.0}])
    assert averaged.mean == {"a": 2.0, "b": (3.0,)}


def test_complex_runs_have_a_real_variance_of_the_absolute_deviation():
    values = numpy.array([1 + 1j, 2 - 1j, -0.5j, 3 + 0.25j])
    averaged = average(list(values))
    expected = numpy.sum(numpy.abs(values - values.mean()) ** 2) / (len(values) - 1)
    assert averaged.mean == pytest.approx(values.mean())
    assert averaged.variance == pytest.approx(expected)
    for statistic in ("variance", "standard_deviation", "estimated_error"):
        assert numpy.isrealobj(getattr(averaged, statistic))
    assert complex(averaged) == pytest.approx(values.mean())


def test_one_run_has_a_mean_and_nan_spread_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        averaged = average([{"x": 2.5, "y": numpy.array([1.0, 2.0])}])
    assert averaged.mean["x"] == 2.5
    numpy.testing.assert_array_equal(averaged.mean["y"], [1.0, 2.0])
    for statistic in ("variance", "standard_deviation", "estimated_error"):
        assert math.isnan(getattr(averaged, statistic)["x"])
        assert numpy.isnan(getattr(averaged, statistic)["y"]).all()
    assert averaged.num_runs == 1
    assert repr(averaged["x"]) == "2.5 ± nan (1 run)"


def test_no_runs_is_an_error():
    with pytest.raises(ValueError, match="No runs to average"):
        average([])


@pytest.mark.parametrize(
    "runs, message",
    [
        (
            [{"energy": [0, 1, numpy.zeros(3)]}, {"energy": [0, 1, numpy.zeros(4)]}],
            r"runs disagree at \['energy'\]\[2\]: shapes \(3,\) and \(4,\) \(runs 0 and 1\)",
        ),
        (
            [{"a": 1, "b": 2}, {"a": 1, "b": 2}, {"a": 1, "c": 2}],
            r"runs disagree at the top level: keys \['b'\] only in run 0, \['c'\] only in run 2",
        ),
        (
            [{"sites": [1, 2]}, {"sites": [1, 2, 3]}],
            r"runs disagree at \['sites'\]: lengths 2 and 3",
        ),
        (
            [{"x": {"y": 1.0}}, {"x": {"y": [1.0]}}],
            r"runs disagree at \['x'\]\['y'\]: a number or array and a list",
        ),
        (
            [{"name": "a"}, {"name": "b"}],
            r"Cannot average a str at \['name'\] \(run 0\)",
        ),
    ],
)
def test_runs_that_disagree_are_named_by_their_path(runs, message):
    with pytest.raises(ValueError, match=message):
        average(runs)


@pytest.fixture
def nested():
    rng = numpy.random.default_rng(4)
    runs = [{"e": rng.normal(5.0), "v": [rng.normal(), rng.normal(size=3)]} for _ in range(20)]
    return runs, average(runs)


def test_indexing_gives_an_averaged_part(nested):
    runs, averaged = nested
    part = averaged["v"][1]
    assert isinstance(part, Averaged) and part.num_runs == 20
    assert_statistics(part, numpy.stack([r["v"][1] for r in runs]))
    element = part[2]
    assert_statistics(element, numpy.array([r["v"][1][2] for r in runs]))
    assert list(averaged) == ["e", "v"]
    assert [float(p) for p in averaged["v"][1]] == pytest.approx(list(part.mean))
    with pytest.raises(TypeError, match="has no parts"):
        averaged["e"][0]
    with pytest.raises(KeyError):
        averaged["nope"]


def test_a_leaf_behaves_like_its_mean(nested):
    runs, averaged = nested
    energy = averaged["e"]
    mean = numpy.mean([r["e"] for r in runs])
    assert float(energy) == pytest.approx(mean)
    assert numpy.asarray(energy) == pytest.approx(mean)
    assert energy * 2 == pytest.approx(2 * mean)
    assert 1 - energy == pytest.approx(1 - mean)
    assert energy / energy == pytest.approx(1.0)
    assert numpy.sqrt(energy) == pytest.approx(math.sqrt(mean))
    assert (energy > mean - 1) and not (energy < mean - 1)
    vector = averaged["v"][1]
    numpy.testing.assert_allclose(vector - numpy.ones(3), vector.mean - 1)
    numpy.testing.assert_allclose(numpy.ones(3) + vector, vector.mean + 1)
    as_float32 = numpy.asarray(vector, dtype=numpy.float32)
    assert as_float32.dtype == numpy.float32
    numpy.testing.assert_allclose(as_float32, vector.mean, rtol=1e-6)
    numpy.testing.assert_allclose(vector - averaged["v"][1], 0.0)
    for on_a_dict in (lambda: averaged * 2, lambda: float(averaged), lambda: numpy.asarray(averaged)):
        with pytest.raises(TypeError, match="pick a part first"):
            on_a_dict()


def test_repr_reads_as_mean_plus_minus_error():
    leaf = Averaged(
        mean=numpy.float64(1.23449),
        variance=0.0756,
        standard_deviation=0.275,
        estimated_error=0.0123,
        num_runs=500,
    )
    assert repr(leaf) == "1.234 ± 0.012 (500 runs)"
    averaged = average([{"a": 1.0, "b": [2.0]}, {"a": 3.0, "b": [2.5]}])
    assert repr(averaged) == "{'a': 2.0 ± 1.0, 'b': [2.25 ± 0.25]} (2 runs)"


def test_pickle_round_trip(nested):
    _, averaged = nested
    again = pickle.loads(pickle.dumps(averaged))
    assert isinstance(again, Averaged) and again.num_runs == averaged.num_runs
    for statistic in averaging.STATISTICS:
        expected, got = getattr(averaged, statistic), getattr(again, statistic)
        assert got["e"] == expected["e"]
        numpy.testing.assert_array_equal(got["v"][1], expected["v"][1])


# ---- seeding ---------------------------------------------------------------


def draws_of_run(index, seed, num_runs=6):
    """What run ``index`` of ``seed`` draws from each source of randomness."""
    seed_sequence = seeding.run_seeds(seed, num_runs)[index]
    return seeding.run_function(draw_everywhere, index, seed_sequence, (3,), {"scale": 1.0})


def draw_everywhere(size, scale):
    rng = numpy.random.default_rng(seeding.current_run().seed_sequence)
    return {
        "index": seeding.current_run().index,
        "numpy_global": list(scale * numpy.random.random(size)),
        "python_random": [scale * random.random() for _ in range(size)],
        "default_rng": list(scale * rng.random(size)),
    }


def test_run_seeds_are_reproducible_children_of_the_seed():
    seeds = seeding.run_seeds(42, 5)
    expected = numpy.random.SeedSequence(42).spawn(5)
    assert [s.generate_state(4).tolist() for s in seeds] == [
        s.generate_state(4).tolist() for s in expected
    ]
    # More runs later keep the seeds of the first ones.
    assert [s.spawn_key for s in seeding.run_seeds(42, 8)[:5]] == [s.spawn_key for s in seeds]
    # A SeedSequence as seed is not advanced: each call gives the same children.
    root = numpy.random.SeedSequence(42)
    first = [s.generate_state(2).tolist() for s in seeding.run_seeds(root, 3)]
    second = [s.generate_state(2).tolist() for s in seeding.run_seeds(root, 3)]
    assert first == second == [s.generate_state(2).tolist() for s in expected[:3]]
    with pytest.raises(ValueError, match="num_runs"):
        seeding.run_seeds(1, -1)


def test_fresh_entropy_is_recorded_and_reproduces_the_runs():
    fresh = seeding.run_seeds(None, 3)
    other = seeding.run_seeds(None, 3)
    assert fresh[0].entropy != other[0].entropy
    again = seeding.run_seeds(fresh[0].entropy, 3)
    assert [s.generate_state(4).tolist() for s in again] == [
        s.generate_state(4).tolist() for s in fresh
    ]


def test_the_same_seed_gives_the_same_draws_in_every_run():
    first = [draws_of_run(index, seed=7) for index in range(6)]
    second = [draws_of_run(index, seed=7) for index in range(6)]
    assert first == second
    assert [d["index"] for d in first] == list(range(6))
    assert draws_of_run(0, seed=8) != first[0]


def test_runs_differ_and_their_sources_differ():
    runs = [draws_of_run(index, seed=7) for index in range(6)]
    for source in ("numpy_global", "python_random", "default_rng"):
        values = [tuple(run[source]) for run in runs]
        assert len(set(values)) == len(values), source
    for run in runs:
        assert run["numpy_global"] != run["python_random"]
        assert run["numpy_global"] != run["default_rng"]
        assert run["python_random"] != run["default_rng"]


def test_the_globals_are_seeded_from_their_own_words_of_the_run_sequence():
    # The scheme is part of reproducibility: a stored average is redrawn the
    # same by a later version only if the words stay where the docs say.
    seed_sequence = seeding.run_seeds(7, 1)[0]
    words = seed_sequence.generate_state(16, numpy.uint32)
    with seeding.seeded_run(0, seed_sequence):
        numpy_draw, python_draw = numpy.random.random(), random.random()
    assert numpy_draw == numpy.random.RandomState(words[8:12]).random_sample()
    assert python_draw == random.Random(int.from_bytes(words[12:16].tobytes(), "little")).random()
    # default_rng (PCG64) takes four 64-bit words: words 0 to 7, none of the above.
    pcg64_words = seed_sequence.generate_state(4, numpy.uint64)
    numpy.testing.assert_array_equal(pcg64_words, words[:8].view(numpy.uint64))


def test_draws_do_not_depend_on_the_order_of_the_runs():
    forward = [draws_of_run(index, seed=7) for index in range(6)]
    backward = [draws_of_run(index, seed=7) for index in reversed(range(6))]
    assert forward == list(reversed(backward))


def test_a_run_alone_in_a_fresh_process_draws_as_in_a_loop():
    code = (
        "import json; from test_runs_averaging import draws_of_run; "
        "print(json.dumps(draws_of_run(3, seed=7)))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env, cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    in_a_loop = [draws_of_run(index, seed=7) for index in range(6)]
    assert json.loads(proc.stdout) == in_a_loop[3]


def test_the_global_states_come_back_after_a_run():
    numpy.random.seed(123)
    random.seed(123)
    numpy_before = numpy.random.get_state()[1].copy()
    random_before = random.getstate()
    draws_of_run(2, seed=7)
    with pytest.raises(ZeroDivisionError):
        with seeding.seeded_run(1, seeding.run_seeds(7, 2)[1]):
            numpy.random.random()
            1 / 0
    numpy.testing.assert_array_equal(numpy.random.get_state()[1], numpy_before)
    assert random.getstate() == random_before
    with pytest.raises(RuntimeError, match="only known inside a run"):
        seeding.current_run()


def test_current_run_outside_a_run_raises_and_nests_inside():
    with pytest.raises(RuntimeError, match="only known inside a run"):
        seeding.current_run()
    outer, inner = seeding.run_seeds(5, 2)
    with seeding.seeded_run(0, outer) as info:
        assert seeding.current_run() is info
        assert info == seeding.RunInfo(0, outer)
        with seeding.seeded_run(1, inner):
            assert seeding.current_run().seed_sequence is inner
        assert seeding.current_run() is info


def test_run_function_pickles_by_reference():
    assert pickle.loads(pickle.dumps(seeding.run_function)) is seeding.run_function
    seed_sequence = seeding.run_seeds(1, 1)[0]
    assert seeding.run_function(divmod, 0, seed_sequence, (7, 2)) == (3, 1)
