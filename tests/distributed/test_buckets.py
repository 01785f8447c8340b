"""GradBuckets: flat buffers capped in size, one all-reduce each, gradients rebound, never written into."""

from __future__ import annotations

import numpy as np

from minilora.distributed import GradBuckets, LocalCommunicator
from minilora.nn import Parameter


class CountingComm(LocalCommunicator):
    """A world of two where every other rank sent the same gradient: a mean is the identity, a sum doubles."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def all_reduce(self, array, op="sum"):
        self.calls.append(array.size)
        if op == "sum":
            array *= 2
        return array


def _params(rng, *shapes, dtype=np.float32):
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def test_buckets_respect_the_cap_and_the_dtype(rng):
    ps = _params(rng, (4, 4), (4,), (8, 4)) + _params(rng, (3,), dtype=np.float64)
    buckets = GradBuckets(ps, LocalCommunicator(), cap_bytes=100)  # 64 + 16 bytes fit, 128 alone, float64 apart
    assert [len(b) for b in buckets.buckets] == [2, 1, 1]
    assert buckets.nbytes == (16 + 4 + 32) * 4 + 3 * 8


def test_one_all_reduce_per_bucket_and_the_reduced_values_come_back(rng):
    ps = _params(rng, (4, 4), (4,), (8, 4))
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
    originals = [g.copy() for g in grads]
    for p, g in zip(ps, grads):
        p.grad = g
    ps[1].grad = None  # a parameter that got no gradient counts as zeros
    comm = CountingComm()
    GradBuckets(ps, comm).all_reduce_grads("sum")
    assert comm.calls == [16 + 4 + 32]
    np.testing.assert_array_equal(ps[0].grad, 2 * originals[0])
    np.testing.assert_array_equal(ps[1].grad, np.zeros(4, dtype=np.float32))
    np.testing.assert_array_equal(ps[2].grad, 2 * originals[2])
    np.testing.assert_array_equal(grads[0], originals[0])  # the array backward produced was not written into


def test_broadcast_writes_into_the_same_parameter_arrays(rng):
    ps = _params(rng, (2, 3), (5,))
    arrays = [p.data for p in ps]
    GradBuckets(ps, LocalCommunicator()).broadcast_data()
    assert all(p.data is a for p, a in zip(ps, arrays))
