import numpy as np
import pytest

from loop.windows import WindowStore


def append(store, keys, ts, values):
    slots = store.slots_for([k[0] for k in keys], [k[1] for k in keys])
    return store.append(slots, np.asarray(ts, float), np.asarray(values, float))


def test_out_of_order_inside_a_batch_is_sorted_and_dupes_counted():
    store = WindowStore(capacity=4, initial_slots=1)
    out = append(store, [("a", "x")] * 5, [3, 1, 2, 2, 4], [30, 10, 20, 21, 40])
    assert (out.accepted, out.duplicate, out.late) == (4, 1, 0)
    ts, values = store.window(store.find("a", "x"))
    assert ts.tolist() == [1, 2, 3, 4] and values.tolist() == [10, 20, 30, 40]


def test_late_samples_across_batches_are_dropped():
    store = WindowStore(capacity=4)
    append(store, [("a", "x")], [10], [1])
    out = append(store, [("a", "x")] * 3, [9, 10, 11], [0, 0, 2])
    assert (out.accepted, out.late, out.duplicate) == (1, 1, 1)
    assert store.latest(store.find("a", "x")) == (11.0, 2.0)


def test_more_samples_than_capacity_keeps_the_newest_and_grows_slots():
    store = WindowStore(capacity=3, initial_slots=1)
    out = append(store, [("a", "x")] * 7 + [("b", "y")], range(8), range(8))
    assert out.accepted == 8 and store.series_count == 2  # grew past one slot
    assert store.window(store.find("a", "x"))[0].tolist() == [4, 5, 6]


def test_memory_is_fixed_by_slots_not_traffic():
    store = WindowStore(capacity=60, initial_slots=16)
    append(store, [("a", "x")], [0], [0])
    before = store.nbytes
    for tick in range(1, 1000):
        append(store, [("a", "x")], [tick], [tick])
    assert store.nbytes == before
    assert store.window(store.find("a", "x"))[0][-1] == 999


def test_expired_slots_are_reused():
    store = WindowStore(capacity=3, initial_slots=2)
    append(store, [("a", "x"), ("b", "y")], [1, 100], [1, 1])
    assert store.expire(now=100, expire_after_s=50) == 1
    assert store.find("a", "x") is None
    assert store.slot("c", "z") == 0  # the freed slot
    assert store.latest(0) is None


def test_capacity_guard():
    with pytest.raises(ValueError):
        WindowStore(capacity=1)
