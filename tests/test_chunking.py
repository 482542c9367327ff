import pytest

from pypoolparty.core import chunking


def test_default_chunks_follow_the_stdlib_rule():
    plan = chunking.plan(100, processes=2)
    assert plan.chunk_starts == [0, 13, 26, 39, 52, 65, 78, 91, 100]
    assert plan.num_workers == 2


def test_number_of_chunks_does_not_grow_with_jobs():
    for n in (1000, 20000, 10 ** 6):
        assert chunking.plan(n, processes=8).num_chunks <= 4 * 8


def test_explicit_chunksize_and_few_jobs():
    plan = chunking.plan(5, processes=100, chunksize=2)
    assert plan.chunk_starts == [0, 2, 4, 5]
    assert plan.num_workers == 3


def test_invalid_arguments():
    with pytest.raises(ValueError):
        chunking.plan(5, processes=0)
    with pytest.raises(ValueError, match="Chunksize must be 1"):
        chunking.plan(5, processes=2, chunksize=0)
