"""Bond-order gates held fixed (``reaxopt.energy.gates``): LAMMPS's energy at the point they were
recorded at, and smooth in a parameter that carries an entry across a threshold, where the
energy with live thresholds jumps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from reaxopt.evaluate import bond_cutoffs_for, build_system
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.io.params import parse_params
from reaxopt.model import theta_map
from reaxopt.packed import gated, gates_hold, pack, packed_outputs

# dmds-SS3.5 under ffield_best: between these values of the H-S bond's p_bo2 (bond parameter 14)
# an S...H pair's bond order crosses LAMMPS's thresholds and the energy jumps by about 0.16
# kcal/mol (found by scanning p_bo2 over its params-file bounds [2, 10])
LOW, HIGH = 2.10, 2.15


@pytest.fixture(scope="module")
def case(shared_datasets):
    folder = shared_datasets / "disulfide"
    ffield = read_ffield(folder / "ffield_best")
    params, topology = build_forcefield(ffield)
    tmap = theta_map(parse_params("3 7 14 0.005 2.0 10.0\n", ffield))
    structure = next(s for s in read_geometries(folder / "geo") if s.name == "dmds-SS3.5")
    # lists built at the bound that reaches farthest (the smallest p_bo2)
    loose = tmap.to_params(jnp.array([2.0]), params)
    positions, system = build_system(structure, loose, topology,
                                     cutoffs=bond_cutoffs_for(loose, topology))
    packed = jax.tree_util.tree_map(jnp.asarray, pack([(positions, system)]))

    def at(value):
        return tmap.to_params(jnp.array([value]), params)

    return packed, topology, at


def _outputs(packed, params, topology, forces=True):
    return packed_outputs(packed.positions, packed.system, packed.segments, params,
                          topology=topology, forces=forces, gates=packed.gates)


def test_gated_energy_is_lammps_energy_where_recorded(case):
    packed, topology, at = case
    for value in (LOW, HIGH):
        live = _outputs(packed, at(value), topology)
        held = _outputs(gated(packed, at(value), topology), at(value), topology)
        for a, b in zip(live, held):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gates_remove_the_jump_at_a_threshold(case):
    packed, topology, at = case
    held = gated(packed, at(LOW), topology)
    live_low, live_high = (gated(packed, at(v), topology).gates for v in (LOW, HIGH))
    assert any(bool(np.any(np.asarray(a) != np.asarray(b))) for a, b in
               zip(jax.tree_util.tree_leaves(live_low), jax.tree_util.tree_leaves(live_high)))

    def energy(p, gates_of):
        return _outputs(gates_of, at(p), topology, forces=False)[0][0]

    def jump(gates_of):
        """E(HIGH) - E(LOW) minus its smooth part, Simpson's rule on dE/dp (kcal/mol)."""
        slope = jax.grad(energy)
        middle = 0.5 * (LOW + HIGH)
        smooth = (HIGH - LOW) / 6.0 * (slope(LOW, gates_of) + 4.0 * slope(middle, gates_of)
                                      + slope(HIGH, gates_of))
        return float(energy(HIGH, gates_of) - energy(LOW, gates_of) - smooth)

    assert abs(jump(packed)) > 0.1  # live thresholds: the energy jumps
    assert abs(jump(held)) < 1e-4  # held gates: smooth across it


def test_gates_hold_where_recorded_and_not_across_the_threshold(case):
    packed, topology, at = case
    held = gated(packed, at(LOW), topology)
    assert gates_hold(packed, at(HIGH), topology)  # none held: always LAMMPS's
    assert gates_hold(held, at(LOW), topology)
    assert gates_hold(held, at(LOW + 1e-6), topology)
    assert not gates_hold(held, at(HIGH), topology)
