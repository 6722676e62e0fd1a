"""fastmlp._collector: the garbage collector paused over start-up work and set back as it was."""

import gc
import weakref

import pytest

from fastmlp._collector import collector_paused


class _Node:
    """A tracked object that can sit in a reference cycle."""

    def __init__(self):
        self.other = None


def _in_generation(objects, generation):
    ids = {id(obj) for obj in gc.get_objects(generation=generation)}
    return sum(id(obj) in ids for obj in objects)


def test_the_collector_is_off_inside_and_on_after():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves it to the outer one
    assert gc.isenabled()
    with pytest.raises(KeyError):
        with collector_paused():
            raise KeyError("a failed import")
    assert gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off():
    gc.disable()
    try:
        with collector_paused():
            made = [_Node() for _ in range(100)]
        assert not gc.isenabled()
        assert _in_generation(made, 2) == 0  # nothing moved
    finally:
        gc.enable()


def test_objects_made_inside_go_to_the_oldest_generation():
    gc.collect()
    with collector_paused():
        made = [_Node() for _ in range(1000)]
    assert _in_generation(made, 2) == 1000
    assert _in_generation(made, 0) == 0


def test_garbage_made_inside_is_still_collected():
    with collector_paused():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
    assert alive() is not None  # a cycle: only the collector frees it
    gc.collect()
    assert alive() is None


def test_objects_the_user_froze_stay_frozen():
    gc.collect()
    kept = [_Node() for _ in range(10)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            [_Node() for _ in range(10)]
        assert gc.get_freeze_count() == frozen
        assert _in_generation(kept, 2) == 0
    finally:
        gc.unfreeze()


def test_making_a_model_again_leaves_young_objects_young():
    """Only the engine module's first import pauses the collector; a later model's engine is a
    lookup, so the caller's young objects are not moved to the oldest generation."""
    import fastmlp as fm

    fm.MLP(4, [fm.Dense(3)])
    gc.collect()
    made = [_Node() for _ in range(100)]
    fm.MLP(4, [fm.Dense(3)])
    assert _in_generation(made, 2) == 0
