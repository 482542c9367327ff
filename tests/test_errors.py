import concurrent.futures

import pytest

from pypoolparty import errors


def test_cancelled_error_is_concurrent_futures_cancelled_error():
    err = errors.CancelledError("pypoolparty: the pool was terminated")
    assert isinstance(err, concurrent.futures.CancelledError)
    assert isinstance(err, errors.PoolError)
    with pytest.raises(concurrent.futures.CancelledError, match="terminated"):
        raise err
