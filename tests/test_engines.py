"""Engines map part functions over items: results in item order, setup once per worker, errors surface, and the
Ray engine really spreads work over a multi-node cluster."""

from __future__ import annotations

import builtins
import sys

import pytest

from pipelines.engines import EngineError, LocalEngine, make_engine
from tests import engine_fns
from tests.ray_cluster import ray_cluster  # noqa: F401  (fixture)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_engine_keeps_item_order(workers):
    engine = LocalEngine(workers=workers)
    items = list(range(7))
    assert engine.map_parts(engine_fns.square, items, desc="square") == [x * x for x in items]


def test_local_pool_runs_outside_this_process():
    import os

    results = LocalEngine(workers=2).map_parts(engine_fns.where, list(range(4)))
    assert [item for item, _ in results] == [0, 1, 2, 3]
    assert all(pid != os.getpid() for _, pid in results)


def test_setup_runs_once_per_worker():
    results = LocalEngine(workers=1).map_parts(engine_fns.with_state, list(range(5)), setup=engine_fns.load_state)
    assert len({token for _, token, _ in results}) == 1  # one worker: one model load for all parts


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_part_raises_its_error(workers):
    with pytest.raises(ValueError, match="part 3 is broken"):
        LocalEngine(workers=workers).map_parts(engine_fns.fail_on_three, list(range(6)))


def test_unknown_engine_and_misplaced_address_are_clear_errors():
    with pytest.raises(EngineError, match="engines are: local, ray"):
        make_engine("spark")
    with pytest.raises(EngineError, match="--ray-address only applies to --engine ray"):
        make_engine("local", address="auto")


def test_missing_ray_extra_names_the_pip_line(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(EngineError, match=r"pip install 'fairsift\[ray\]'"):
        make_engine("ray")


def test_ray_engine_spreads_parts_over_the_cluster_nodes(ray_cluster):
    engine = make_engine("ray", address=ray_cluster.address)
    assert engine.describe()["nodes"] == 3
    results = engine.map_parts(engine_fns.where, list(range(9)), desc="where")
    assert [item for item, _ in results] == list(range(9))
    assert len({pid for _, pid in results}) >= 2  # more than one worker process took parts
    stateful = engine.map_parts(engine_fns.with_state, list(range(6)), setup=engine_fns.load_state)
    assert [item for item, _, _ in stateful] == list(range(6))
    # one actor per CPU of the cluster, each loading its state once
    assert len({token for _, token, _ in stateful}) == 3
    with pytest.raises(ValueError, match="part 3 is broken"):
        engine.map_parts(engine_fns.fail_on_three, list(range(5)))
