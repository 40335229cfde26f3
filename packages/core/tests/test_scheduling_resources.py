"""Unit tests for distcore._private.scheduling.resources."""

from __future__ import annotations

import math
import pickle

import pytest

from distcore._private.scheduling.resources import (
    UNIT,
    Allocation,
    NodeResources,
    ResourceSet,
    critical_utilization,
)

R = ResourceSet


# ---------------------------------------------------------------- ResourceSet


def test_quantities_are_exposed_as_floats_and_zero_entries_dropped() -> None:
    rs = R({"CPU": 2, "GPU": 0, "custom": 0.5})
    assert dict(rs) == {"CPU": 2.0, "custom": 0.5}
    assert rs.to_dict() == {"CPU": 2.0, "custom": 0.5}
    assert isinstance(rs["CPU"], float)
    assert "GPU" not in rs
    assert rs.get("GPU", 0.0) == 0.0
    assert len(rs) == 2
    assert R.from_dict({"CPU": 1}) == R({"CPU": 1})
    assert R() == R({}) == R({"CPU": 0})


def test_fixed_point_accounting_does_not_drift() -> None:
    assert R({"CPU": 0.1}) + R({"CPU": 0.2}) == R({"CPU": 0.3})
    total = R()
    for _ in range(10):
        total = total + R({"CPU": 0.1})
    assert total == R({"CPU": 1})
    assert total["CPU"] == 1.0
    assert total.units("CPU") == UNIT
    left = R({"CPU": 1})
    for _ in range(10):
        left = left - R({"CPU": 0.1})
    assert left.is_empty()


def test_quantities_round_to_one_ten_thousandth() -> None:
    assert R({"CPU": 0.00004}).is_empty()
    assert R({"CPU": 0.00005 + 1e-12}).units("CPU") == 1
    assert R({"memory": 2**40})["memory"] == float(2**40)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"CPU": -1}, "'CPU'"),
        ({"CPU": math.nan}, "nan"),
        ({"GPU": math.inf}, "inf"),
        ({"CPU": "1"}, "'1'"),
        ({"CPU": True}, "True"),
        ({"CPU": None}, "None"),
        ({3: 1}, "3"),
        ({"": 1}, "''"),
    ],
)
def test_from_dict_rejects_bad_entries_naming_them(
    spec: dict[object, object], fragment: str
) -> None:
    with pytest.raises(ValueError, match="resource") as info:
        R.from_dict(spec)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_from_dict_error_names_resource_and_value() -> None:
    with pytest.raises(ValueError, match=r"'GPU'.*-0\.5"):
        R.from_dict({"CPU": 1, "GPU": -0.5})


def test_non_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="mapping"):
        R([("CPU", 1)])  # type: ignore[arg-type]


def test_subtraction_refuses_to_go_negative_naming_the_resource() -> None:
    assert R({"CPU": 2, "GPU": 1}) - R({"CPU": 0.5}) == R({"CPU": 1.5, "GPU": 1})
    with pytest.raises(ValueError, match=r"GPU would be -1"):
        R({"CPU": 2}) - R({"CPU": 1, "GPU": 1})


def test_arithmetic_with_other_types_is_not_supported() -> None:
    with pytest.raises(TypeError):
        R({"CPU": 1}) + {"CPU": 1}  # type: ignore[operator]
    with pytest.raises(TypeError):
        R({"CPU": 1}) - {"CPU": 1}  # type: ignore[operator]


def test_fits_in_and_shortfall() -> None:
    big = R({"CPU": 4, "GPU": 1})
    assert R({"CPU": 4}).fits_in(big)
    assert R().fits_in(R())
    assert not R({"CPU": 4.0001}).fits_in(big)
    assert not R({"TPU": 1}).fits_in(big)
    assert R({"CPU": 5, "GPU": 1, "TPU": 2}).shortfall(big) == R({"CPU": 1, "TPU": 2})
    assert R({"CPU": 1}).shortfall(big).is_empty()


def test_equality_hashing_and_mapping_comparison() -> None:
    a = R({"CPU": 1, "GPU": 0.5})
    b = R({"GPU": 0.5, "CPU": 1.0})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, R({"CPU": 1})}) == 2
    assert a != R({"CPU": 1})
    assert (a == {"CPU": 1.0, "GPU": 0.5}) is False


def test_repr_is_compact_and_sorted() -> None:
    assert repr(R({"GPU": 0.5, "CPU": 1})) == "{CPU: 1, GPU: 0.5}"
    assert str(R({"CPU": 0.1}) + R({"CPU": 0.2})) == "{CPU: 0.3}"
    assert repr(R()) == "{}"


def test_immutable_and_picklable() -> None:
    rs = R({"CPU": 0.3, "x": 2})
    with pytest.raises(AttributeError):
        rs._units = {}
    with pytest.raises(TypeError):
        rs["CPU"] = 2  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(rs))
    assert copy == rs
    assert hash(copy) == hash(rs)


def test_from_units_drops_zeros() -> None:
    assert R.from_units({"CPU": 5_000, "GPU": 0}) == R({"CPU": 0.5})


def test_critical_utilization() -> None:
    total = R({"CPU": 4, "GPU": 2, "memory": 100})
    assert critical_utilization(total, total) == 0.0
    assert critical_utilization(total, R({"CPU": 3, "GPU": 1, "memory": 100})) == 0.5
    assert critical_utilization(total, R()) == 1.0
    assert critical_utilization(R(), R()) == 0.0


# --------------------------------------------------------------- NodeResources


def test_ten_tenth_cpus_fit_into_one_cpu_and_an_eleventh_does_not() -> None:
    node = NodeResources(R({"CPU": 1}))
    grants = [node.allocate(R({"CPU": 0.1})) for _ in range(10)]
    assert all(isinstance(g, Allocation) for g in grants)
    assert node.available.is_empty()
    assert node.allocate(R({"CPU": 0.1})) is None
    assert node.utilization() == 1.0
    for g in grants:
        assert g is not None
        assert node.release(g)
    assert node.available == R({"CPU": 1})


def test_allocate_release_and_used() -> None:
    node = NodeResources(R({"CPU": 4, "memory": 1000}))
    a = node.allocate(R({"CPU": 1, "memory": 500}))
    assert a is not None
    assert a.resources == R({"CPU": 1, "memory": 500})
    assert a.gpu_ids == []
    assert a.bundle is None
    assert node.available == R({"CPU": 3, "memory": 500})
    assert node.used() == R({"CPU": 1, "memory": 500})
    assert node.utilization() == 0.5
    assert node.allocate(R({"CPU": 5})) is None
    assert node.allocate(R({"GPU": 1})) is None
    assert node.release(a) is True
    assert node.release(a) is False  # releasing twice is harmless
    assert node.available == node.total


def test_empty_request_always_fits() -> None:
    node = NodeResources(R({"CPU": 1}))
    assert node.allocate(R({"CPU": 1})) is not None
    empty = node.allocate(R())
    assert empty is not None
    assert empty.gpu_ids == []


def test_allocations_compare_by_identity() -> None:
    node = NodeResources(R({"CPU": 2}))
    a = node.allocate(R({"CPU": 1}))
    b = node.allocate(R({"CPU": 1}))
    assert a is not None and b is not None
    assert a != b
    twin = Allocation(R({"CPU": 1}), [], None)
    assert node.release(twin) is False  # not one this node handed out
    assert node.available.is_empty()


def test_whole_gpu_requests_get_distinct_free_ids() -> None:
    node = NodeResources(R({"CPU": 8, "GPU": 4}))
    a = node.allocate(R({"GPU": 2}))
    b = node.allocate(R({"GPU": 1}))
    assert a is not None and b is not None
    assert a.gpu_ids == [0, 1]
    assert b.gpu_ids == [2]
    assert node.allocate(R({"GPU": 2})) is None
    node.release(a)
    c = node.allocate(R({"GPU": 3}))
    assert c is not None
    assert c.gpu_ids == [0, 1, 3]


def test_fractional_gpu_requests_pack_onto_one_instance() -> None:
    node = NodeResources(R({"GPU": 2}))
    grants = [node.allocate(R({"GPU": 0.25})) for _ in range(4)]
    assert [g.gpu_ids for g in grants if g] == [[0], [0], [0], [0]]
    half = node.allocate(R({"GPU": 0.5}))
    assert half is not None and half.gpu_ids == [1]
    quarter = node.allocate(R({"GPU": 0.25}))
    assert quarter is not None and quarter.gpu_ids == [1]  # the partly used one, not a fresh one


def test_fractional_gpu_requests_take_the_tightest_fitting_instance() -> None:
    node = NodeResources(R({"GPU": 2}))
    a = node.allocate(R({"GPU": 0.4}))
    b = node.allocate(R({"GPU": 0.7}))
    assert a is not None and a.gpu_ids == [0]
    assert b is not None and b.gpu_ids == [1]  # 0.6 left on instance 0 is too little
    c = node.allocate(R({"GPU": 0.2}))  # free: instance 0 has 0.6, instance 1 has 0.3
    assert c is not None and c.gpu_ids == [1]
    d = node.allocate(R({"GPU": 0.5}))
    assert d is not None and d.gpu_ids == [0]
    assert node.allocate(R({"GPU": 0.2})) is None  # 0.1 free on each
    assert node.release(b)
    e = node.allocate(R({"GPU": 0.8}))
    assert e is not None and e.gpu_ids == [1]


def test_whole_gpu_needs_a_fully_free_instance() -> None:
    node = NodeResources(R({"GPU": 2}))
    a = node.allocate(R({"GPU": 0.5}))
    b = node.allocate(R({"GPU": 0.5}))
    c = node.allocate(R({"GPU": 0.5}))
    assert a and b and c
    assert node.allocate(R({"GPU": 1})) is None  # 0.5 free, but on instance 1 only
    node.release(c)
    d = node.allocate(R({"GPU": 1}))
    assert d is not None and d.gpu_ids == [1]
    assert node.is_feasible(R({"GPU": 2}))


def test_invalid_gpu_requests() -> None:
    node = NodeResources(R({"GPU": 4}))
    with pytest.raises(ValueError, match=r"invalid GPU request 1\.5"):
        node.allocate(R({"GPU": 1.5}))
    with pytest.raises(ValueError, match="GPU"):
        node.is_feasible(R({"GPU": 2.5}))
    assert node.allocate(R({"GPU": 2.0})) is not None
    with pytest.raises(ValueError, match="whole number"):
        NodeResources(R({"GPU": 1.5}))


def test_is_feasible_on_an_idle_node() -> None:
    node = NodeResources(R({"CPU": 2, "GPU": 1}))
    assert node.allocate(R({"CPU": 2, "GPU": 1})) is not None
    assert node.is_feasible(R({"CPU": 2, "GPU": 1}))
    assert not node.is_feasible(R({"CPU": 3}))
    assert not node.is_feasible(R({"GPU": 2}))
    assert not node.is_feasible(R({"TPU": 1}))


# -------------------------------------------------------- placement bundles


def test_add_bundle_reserves_from_the_free_pool() -> None:
    node = NodeResources(R({"CPU": 4, "GPU": 2}))
    assert node.add_bundle("pg1", 0, R({"CPU": 2, "GPU": 1}))
    assert node.available == R({"CPU": 2, "GPU": 1})
    assert node.used() == R({"CPU": 2, "GPU": 1})
    assert not node.add_bundle("pg1", 1, R({"CPU": 3}))
    assert node.available == R({"CPU": 2, "GPU": 1})  # a failed add changes nothing
    [view] = node.bundles()
    assert (view.pg_id, view.index, view.total, view.gpu_ids) == (
        "pg1",
        0,
        R({"CPU": 2, "GPU": 1}),
        [0],
    )
    assert view.available == view.total


def test_add_bundle_is_idempotent_and_validated() -> None:
    node = NodeResources(R({"CPU": 4}))
    assert node.add_bundle("pg", 0, R({"CPU": 1}))
    assert node.add_bundle("pg", 0, R({"CPU": 1}))  # retry: no double reservation
    assert node.available == R({"CPU": 3})
    with pytest.raises(ValueError, match="already reserved"):
        node.add_bundle("pg", 0, R({"CPU": 2}))
    with pytest.raises(ValueError, match="no resources"):
        node.add_bundle("pg", 1, R())
    with pytest.raises(ValueError, match="index"):
        node.add_bundle("pg", -1, R({"CPU": 1}))
    with pytest.raises(ValueError, match="pg_id"):
        node.add_bundle("", 0, R({"CPU": 1}))
    with pytest.raises(ValueError, match="GPU"):
        node.add_bundle("pg", 2, R({"GPU": 1.5}))


def test_allocation_inside_a_bundle_uses_only_the_bundle() -> None:
    node = NodeResources(R({"CPU": 4}))
    node.add_bundle("pg", 0, R({"CPU": 1}))
    inside = node.allocate(R({"CPU": 1}), bundle=("pg", 0))
    assert inside is not None
    assert inside.bundle == ("pg", 0)
    assert node.available == R({"CPU": 3})  # the node pool is untouched
    assert node.allocate(R({"CPU": 1}), bundle=("pg", 0)) is None  # bundle full
    assert node.allocate(R({"CPU": 1})) is not None  # node still has room
    assert node.bundles()[0].available.is_empty()
    assert node.release(inside)
    assert node.bundles()[0].available == R({"CPU": 1})
    assert node.available == R({"CPU": 2})


def test_fractional_accounting_inside_a_bundle() -> None:
    node = NodeResources(R({"CPU": 2}))
    node.add_bundle("pg", 0, R({"CPU": 1}))
    grants = [node.allocate(R({"CPU": 0.1}), bundle=("pg", 0)) for _ in range(10)]
    assert all(grants)
    assert node.allocate(R({"CPU": 0.1}), bundle=("pg", 0)) is None


def test_any_bundle_index_picks_a_fitting_bundle_of_that_group() -> None:
    node = NodeResources(R({"CPU": 8}))
    node.add_bundle("pg", 0, R({"CPU": 1}))
    node.add_bundle("pg", 3, R({"CPU": 2}))
    node.add_bundle("other", 0, R({"CPU": 4}))
    a = node.allocate(R({"CPU": 1}), bundle=("pg", -1))
    b = node.allocate(R({"CPU": 2}), bundle=("pg", -1))
    assert a is not None and a.bundle == ("pg", 0)
    assert b is not None and b.bundle == ("pg", 3)
    assert node.allocate(R({"CPU": 1}), bundle=("pg", -1)) is None  # "other" is not used
    assert node.is_feasible(R({"CPU": 2}), bundle=("pg", -1))
    assert not node.is_feasible(R({"CPU": 3}), bundle=("pg", -1))
    with pytest.raises(ValueError, match="-1"):
        node.allocate(R({"CPU": 1}), bundle=("pg", -2))


def test_unknown_bundle_does_not_fit() -> None:
    node = NodeResources(R({"CPU": 8}))
    assert node.allocate(R({"CPU": 1}), bundle=("nope", 0)) is None
    assert node.allocate(R({"CPU": 1}), bundle=("nope", -1)) is None
    assert not node.is_feasible(R({"CPU": 1}), bundle=("nope", 0))


def test_bundle_feasibility_uses_the_bundle_total() -> None:
    node = NodeResources(R({"CPU": 8, "GPU": 2}))
    node.add_bundle("pg", 0, R({"CPU": 2, "GPU": 0.5}))
    assert node.is_feasible(R({"CPU": 2, "GPU": 0.5}), bundle=("pg", 0))
    assert not node.is_feasible(R({"GPU": 1}), bundle=("pg", 0))
    assert not node.is_feasible(R({"CPU": 3}), bundle=("pg", 0))
    assert node.is_feasible(R({"CPU": 3}))


def test_gpu_bundle_pins_specific_gpu_ids() -> None:
    node = NodeResources(R({"GPU": 4}))
    first = node.allocate(R({"GPU": 1}))
    assert first is not None and first.gpu_ids == [0]
    assert node.add_bundle("pg", 0, R({"GPU": 2}))
    assert node.bundles()[0].gpu_ids == [1, 2]
    outside = node.allocate(R({"GPU": 1}))
    assert outside is not None and outside.gpu_ids == [3]
    x = node.allocate(R({"GPU": 1}), bundle=("pg", 0))
    y = node.allocate(R({"GPU": 0.5}), bundle=("pg", 0))
    z = node.allocate(R({"GPU": 0.5}), bundle=("pg", 0))
    assert x is not None and x.gpu_ids == [1]
    assert y is not None and y.gpu_ids == [2]
    assert z is not None and z.gpu_ids == [2]
    assert node.allocate(R({"GPU": 0.5}), bundle=("pg", 0)) is None


def test_fractional_gpu_bundles_share_an_instance() -> None:
    node = NodeResources(R({"GPU": 1}))
    assert node.add_bundle("pg", 0, R({"GPU": 0.5}))
    assert node.add_bundle("pg", 1, R({"GPU": 0.5}))
    assert [b.gpu_ids for b in node.bundles()] == [[0], [0]]
    assert not node.add_bundle("pg", 2, R({"GPU": 0.1}))
    a = node.allocate(R({"GPU": 0.5}), bundle=("pg", 1))
    assert a is not None and a.gpu_ids == [0]
    assert node.allocate(R({"GPU": 1}), bundle=("pg", 0)) is None


def test_remove_bundle_returns_resources_and_in_use_allocations() -> None:
    node = NodeResources(R({"CPU": 4, "GPU": 2}))
    node.add_bundle("pg", 0, R({"CPU": 2, "GPU": 1}))
    node.add_bundle("pg", 1, R({"CPU": 1}))
    a = node.allocate(R({"CPU": 1, "GPU": 1}), bundle=("pg", 0))
    b = node.allocate(R({"CPU": 0.5}), bundle=("pg", 0))
    c = node.allocate(R({"CPU": 1}), bundle=("pg", 1))
    assert a and b and c
    done = node.allocate(R({"CPU": 0.5}), bundle=("pg", 0))
    assert done is not None and node.release(done)
    killed = node.remove_bundle("pg", 0)
    assert killed == [a, b]
    assert node.available == R({"CPU": 3, "GPU": 2})
    assert node.release(a) is False  # the worker's later release is a no-op
    assert node.available == R({"CPU": 3, "GPU": 2})
    assert node.remove_bundle("pg", 0) == []  # removing again is harmless
    assert [(v.pg_id, v.index) for v in node.bundles()] == [("pg", 1)]
    assert node.release(c)
    assert node.remove_bundle("pg", 1) == []
    assert node.available == node.total
    whole = node.allocate(R({"GPU": 2}))
    assert whole is not None and whole.gpu_ids == [0, 1]


def test_remove_placement_group_frees_all_its_bundles() -> None:
    node = NodeResources(R({"CPU": 4}))
    node.add_bundle("pg", 0, R({"CPU": 1}))
    node.add_bundle("pg", 1, R({"CPU": 1}))
    node.add_bundle("keep", 0, R({"CPU": 1}))
    a = node.allocate(R({"CPU": 1}), bundle=("pg", 1))
    assert node.remove_placement_group("pg") == [a]
    assert node.available == R({"CPU": 3})
    assert [v.pg_id for v in node.bundles()] == ["keep"]
