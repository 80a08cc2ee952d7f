"""The packed system (``reaxopt.packed``): every structure in one compiled energy, per-structure
sums and one QEq block per structure. Checked against LAMMPS (energies, forces, charges) on the
disulfide set and a sample of the cobalt set, term by term against the per-structure energy,
and through a fit's loss and parameter gradient against the batched model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from test_datasets_energy import cobalt_sample, compare_with_lammps, evaluate_in_one_shape
from reaxopt.energy.total import energy_at_charges
from reaxopt.evaluate import bond_cutoffs_for, build_system
from reaxopt.forcefield import build_forcefield, expand
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.packed import ladder_sizes, pack, packed_outputs, padded_sizes, unpacked


def _packed_results(ffield, structures):
    """(packed system, [{energy, forces, charges}] per structure) with forces."""
    params, topology = build_forcefield(read_ffield(ffield))
    cutoffs = bond_cutoffs_for(params, topology)
    packed = jax.tree_util.tree_map(jnp.asarray, pack(
        [build_system(s, params, topology, cutoffs=cutoffs) for s in structures]))
    energy, forces, charges = packed_outputs(packed.positions, packed.system, packed.segments,
                                             params, topology=topology)
    n_max = max(s.n_atoms for s in structures)
    forces, charges = (np.asarray(unpacked(packed, v, n_max)) for v in (forces, charges))
    return packed, params, topology, [
        {"energy": float(energy[k]), "forces": forces[k, :s.n_atoms],
         "charges": charges[k, :s.n_atoms]} for k, s in enumerate(structures)]


@pytest.fixture(scope="module")
def disulfide(shared_datasets):
    folder = shared_datasets / "disulfide"
    return folder / "ffield_lit", read_geometries(folder / "geo")


def test_packed_disulfide_matches_lammps_and_the_batched_terms(disulfide):
    ffield, structures = disulfide
    packed, params, topology, results = _packed_results(ffield, structures)
    # padding only at the end: one shape for 232 molecules of 2 to 26 atoms
    assert packed.segments.count == len(structures)
    assert packed.sizes[0] >= sum(s.n_atoms for s in structures) > packed.sizes[0] - 64
    failures, worst = compare_with_lammps(ffield, structures, results)
    assert not failures, "\n".join(failures)
    assert worst["largest_force"] > 1.0
    # term by term, against each structure's own energy (padded batch, vmapped)
    batched = evaluate_in_one_shape(ffield, structures)
    charges = jnp.asarray(np.concatenate([r["charges"] for r in batched]
                                         + [np.zeros(packed.sizes[0] - len(np.concatenate(
                                             [r["charges"] for r in batched])))]))
    terms = jax.jit(energy_at_charges, static_argnames="topology")(
        packed.positions, charges, packed.system, expand(params, topology), topology,
        packed.segments)
    reference = _batched_terms(ffield, structures)
    for name, values in terms.items():
        np.testing.assert_allclose(np.asarray(values), reference[name], rtol=1e-10,
                                   atol=1e-9, err_msg=name)
    assert np.max(np.abs(reference["hydrogen_bond"])) > 0.01  # every term is exercised
    assert np.max(np.abs(reference["torsion"])) > 0.01


def _batched_terms(ffield, structures) -> dict:
    from reaxopt.evaluate import (batched_energy_forces_charges, pad_system, shared_sizes,
                                  stack_systems)

    params, topology = build_forcefield(read_ffield(ffield))
    cutoffs = bond_cutoffs_for(params, topology)
    built = [build_system(s, params, topology, cutoffs=cutoffs) for s in structures]
    sizes = shared_sizes([system for _, system in built])
    positions, systems = stack_systems([pad_system(*b, sizes) for b in built])
    _, terms, _, _ = batched_energy_forces_charges(positions, systems, params, topology=topology)
    return {name: np.asarray(v) for name, v in terms.items()}


def test_packed_cobalt_cells_match_lammps(shared_datasets):
    """Periodic cells (images premultiplied by each cell) and metal clusters in one system."""
    folder = shared_datasets / "cobalt"
    structures = cobalt_sample(read_geometries(folder / "geo"))
    assert sum(s.periodic for s in structures) >= 5 and not all(s.periodic for s in structures)
    _, _, _, results = _packed_results(folder / "ffield_lit", structures)
    failures, worst = compare_with_lammps(folder / "ffield_lit", structures, results)
    assert not failures, "\n".join(failures)
    assert worst["largest_force"] > 1.0


def test_structures_whose_charges_vanish_get_no_qeq_block(disulfide):
    """A neutral structure of one atom type has zero QEq charges by symmetry (equal
    electronegativities: q = 0 solves H q = -chi + mu): the packed system gives it no QEq
    block. Its charges, from the full dense solve, are zero; a charged one of one type, and
    the molecules of several types, keep their blocks and their charges."""
    from reaxopt.energy.charges import qeq_matrix, solve_charges
    from reaxopt.energy.segments import charges_vanish
    from reaxopt.energy.taper import taper_coefficients
    from reaxopt.energy.total import _pair_geometry

    ffield, structures = disulfide
    params, topology = build_forcefield(read_ffield(ffield))
    cutoffs = bond_cutoffs_for(params, topology)
    uniform = [s for s in structures if len(set(s.symbols)) == 1 and s.n_atoms > 1][:2]
    mixed = [s for s in structures if len(set(s.symbols)) > 1][:3]
    assert len(uniform) == 2 and len(mixed) == 3
    built = [build_system(s, params, topology, cutoffs=cutoffs) for s in uniform + mixed]
    ion = build_system(uniform[0], params, topology, cutoffs=cutoffs)
    ion = (ion[0], dataclasses.replace(ion[1], total_charge=np.float64(1.0)))
    assert charges_vanish(np.asarray(built[0][1].types)[:2], 0.0)
    assert not charges_vanish(np.asarray(ion[1].types), 1.0)
    packed = jax.tree_util.tree_map(jnp.asarray, pack(built + [ion]))
    assert packed.segments.blocks == 4
    np.testing.assert_array_equal(packed.segments.charged, [4, 4, 0, 1, 2, 3])
    _, _, charges = packed_outputs(packed.positions, packed.system, packed.segments, params,
                                   topology=topology, forces=False)
    charges = np.asarray(unpacked(packed, charges, 26))
    ff = expand(params, topology)
    for k, (positions, system) in enumerate(built + [ion]):
        r, ti, tj = _pair_geometry(positions, system)
        h = qeq_matrix(r, system.pairs.i, system.pairs.j, system.pairs.mask, ff.gamma[ti, tj],
                       ff.eta[system.types], system.atom_mask,
                       taper_coefficients(ff.swa, ff.swb))
        dense = np.asarray(solve_charges(h, ff.chi[system.types], system.atom_mask,
                                         system.total_charge))
        n = int(np.sum(system.atom_mask))
        np.testing.assert_allclose(charges[k, :n], dense[:n], atol=1e-12)
        if k < 2:
            assert np.all(charges[k] == 0.0) and np.max(np.abs(dense)) < 1e-12
        else:
            assert np.max(np.abs(dense)) > 0.01
    assert np.sum(charges[5]) == pytest.approx(1.0, abs=1e-12)
    # nobody charged: no QEq at all, no Coulomb energy
    only_uniform = jax.tree_util.tree_map(jnp.asarray, pack(built[:2]))
    assert only_uniform.segments.blocks == 0
    energy, _, charges = packed_outputs(only_uniform.positions, only_uniform.system,
                                        only_uniform.segments, params, topology=topology,
                                        forces=False)
    assert np.all(np.asarray(charges) == 0.0)
    np.testing.assert_allclose(np.asarray(energy), [r["energy"] for r in evaluate_in_one_shape(
        ffield, uniform)], rtol=1e-10)


def test_padded_sizes_keep_the_shape_until_outgrown():
    assert padded_sizes((100, 1000, 0)) == (128, 1024, 64)
    # fits the previous padding: kept (no new compilation)
    assert padded_sizes((120, 900, 10), (128, 1024, 64)) == (128, 1024, 64)
    # outgrown: 25 % headroom on every total, rounded up to 64
    assert padded_sizes((130, 900, 10), (128, 1024, 64)) == (192, 1152, 64)


def test_ladder_sizes_pick_the_smallest_quarter_that_holds_the_counts():
    full = (2560, 4096, 640)
    # rounded up to 64: full / 4 = (640, 1024, 192); / 16 = (192, 256, 64); / 64 = (64, 64, 64)
    assert ladder_sizes(full, (600, 1000, 100)) == (640, 1024, 192)
    assert ladder_sizes(full, (150, 200, 60)) == (192, 256, 64)
    assert ladder_sizes(full, (60, 60, 10)) == (64, 64, 64)
    assert ladder_sizes(full, (2000, 100, 10)) == full  # one total too large for a quarter


def test_packed_model_gives_the_batched_loss_and_parameter_gradient():
    """A loss of energies and forces (second derivatives in the gradient) of the bundled C/H/O
    molecules: the packed model's value and exact parameter gradient equal the batched one's."""
    from pathlib import Path

    from reaxopt.io.params import read_params
    from reaxopt.model import ModelOptions, build_model, clustered_value_and_grad, theta_map

    data = Path(__file__).resolve().parents[1] / "datasets" / "cho"
    ffield = read_ffield(data / "ffield_cho")
    params, topology = build_forcefield(ffield)
    tmap = theta_map(read_params(data / "params", ffield))
    structures = read_geometries(data / "cho.extxyz")[:8]

    def objective(theta, predictions):
        mask = predictions.atom_mask[..., None]
        value = (jnp.sum(predictions.energy ** 2) * 1e-4
                 + jnp.sum(jnp.where(mask, predictions.forces ** 2, 0.0))
                 + jnp.sum(predictions.charges ** 2))
        return value, None

    value_and_grad = clustered_value_and_grad(objective)
    theta = jnp.asarray(tmap.from_params(params))
    results = []
    for packed in (False, True):
        model = build_model(structures, params, topology,
                            ModelOptions(clusters=1, packed=packed))
        assert (model.packed is not None) == packed
        (value, _), gradient = value_and_grad(theta, model, tmap, params)
        results.append((float(value), np.asarray(gradient)))
    (batched, g_batched), (packed_value, g_packed) = results
    assert packed_value == pytest.approx(batched, rel=1e-11)
    assert np.max(np.abs(g_batched)) > 1.0
    np.testing.assert_allclose(g_packed, g_batched, rtol=1e-9,
                               atol=1e-9 * np.max(np.abs(g_batched)))


def test_packed_relaxation_follows_the_batched_one():
    """``relax`` of a packed model (``fire_packed``: the structures relaxed as one packed system)
    takes the batched FIRE trajectory: stretched water molecules whose hydrogens travel beyond
    the skin (list rebuilds and re-packing, new bonds), one of them with a bond restraint, and a
    water dimer held as it is. Same geometries, steps and RMS forces, and the restraint holds."""
    from test_cluster_moving_lists import FFIELD, _water

    from reaxopt.minimize import geometries, relax
    from reaxopt.model import ModelOptions, build_model
    from reaxopt.structure import Restraint, Structure

    def molecule(name, atoms):
        return Structure(name=name, symbols=[a for a, _ in atoms],
                         positions=np.array([x for _, x in atoms]), run_type="minimize")

    structures = [molecule("two_waters", _water([0.0, 0.0, 0.0], 2.0)
                           + _water([6.0, 0.0, 0.0], 1.6)),
                  molecule("restrained_water", _water([0.0, 0.0, 0.0], 1.9, 95.0)),
                  molecule("held_dimer", _water([0.0, 0.0, 0.0], 0.97)
                           + _water([2.9, 0.0, 0.3], 0.97))]
    restraints = [[], [Restraint("bond", (0, 1), 1.3, 300.0, 4.0)], []]
    params, topology = build_forcefield(read_ffield(FFIELD))
    relaxed = {}
    for packed in (False, True):
        model = build_model(structures, params, topology, ModelOptions(clusters=1, packed=packed))
        out, steps, rms = relax(model, params, [0, 1], [3000, 3000, 0], 0.05,
                                restraints=restraints)
        relaxed[packed] = (geometries(out), steps, rms, out)
    (g_batched, s_batched, r_batched, _), (g_packed, s_packed, r_packed, model) = (
        relaxed[False], relaxed[True])
    np.testing.assert_array_equal(s_packed, s_batched)
    assert 50 < s_packed[0] < 3000 and 0 < s_packed[1] < 3000 and s_packed[2] == 0
    np.testing.assert_allclose(r_packed, r_batched, atol=1e-8)
    assert np.all(r_packed[:2] < 0.05)
    for (x_packed, _), (x_batched, _) in zip(g_packed, g_batched):
        np.testing.assert_allclose(x_packed, x_batched, atol=1e-8)
    x = g_packed[0][0]
    assert np.linalg.norm(x[1] - structures[0].positions[1]) > 0.5  # beyond the skin
    assert np.linalg.norm(x[0] - x[1]) < 1.1 and np.linalg.norm(x[0] - x[2]) < 1.1
    restrained = np.linalg.norm(g_packed[1][0][1] - g_packed[1][0][0])
    assert abs(restrained - 1.3) < 0.1 and np.linalg.norm(
        g_packed[1][0][2] - g_packed[1][0][0]) < 1.1
    np.testing.assert_array_equal(g_packed[2][0], structures[2].positions)
    # the packed system the loss sees holds the relaxed geometries
    predicted = model.predict(params)
    np.testing.assert_allclose(np.asarray(predicted.positions[0, :6]), x, atol=1e-12)
