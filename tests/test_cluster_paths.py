"""The clustered, padded fitting path: same numbers as an independent path, compiled once.

What is compared. ``build_model`` (automatic K: every cluster padded to its own sizes, rounded
to multiples of 8; the fit's lists: bond cutoffs with a margin, and a skin for the structures a
fit minimises) and ``Model.predict`` (one jitted, vmapped call per cluster) against
``evaluate_structures(..., clusters=1)``: every structure padded to ONE common shape (the largest
sizes of the file), with its own exact lists (no margin, no skin), in chunks of that one shape.
A literal one-structure-at-a-time path would compile once per structure (379 compilations,
hours on CI); the one-shape path shares nothing with the clustering: neither which structures
share a batch, nor the padded sizes, nor the lists' cutoffs. Energies, forces and charges agree
to 1e-10 relative on every structure of both shared geo files (each structure's forces and
charges relative to their largest magnitude).

Compile reuse: a second ``predict`` and further evaluations of a fit objective at new
parameters compile nothing (counted with ``jax.monitoring`` compile events). The fit path
(``clustered_value_and_grad``) shares ``predict``'s per-cluster function and ``assemble``; its
gradient is checked against central differences of its own value.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from reaxopt.evaluate import evaluate_structures
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.model import ModelOptions, assemble, build_model, clustered_value_and_grad
from reaxopt.structure import Structure

DATASETS = {"cobalt": 147, "disulfide": 232}
RTOL = 1e-10


@contextlib.contextmanager
def counting_compilations():
    """Yields a list that collects the name of every function JAX traces or compiles."""
    seen: list[str] = []

    def listener(event, duration, **kwargs):
        if event.startswith("/jax/core/compile/"):
            seen.append(str(kwargs.get("fun_name", event)))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(scope="module", params=list(DATASETS))
def dataset(request, shared_datasets):
    """(name, ffield path, structures, params, topology, model) for one shared geo file."""
    name = request.param
    folder = shared_datasets / name
    structures = read_geometries(folder / "geo")
    params, topology = build_forcefield(read_ffield(folder / "ffield_lit"))
    model = build_model(structures, params, topology)
    return name, folder / "ffield_lit", structures, params, topology, model


def test_model_clusters_like_the_cluster_command(dataset):
    name, _, structures, _, _, model = dataset
    assert len(structures) == DATASETS[name]
    assert model.clustering.candidates  # K chosen automatically
    assert 1 < len(model.batches) <= 10
    assert model.clustering.ratio <= 1.3
    # every structure in exactly one batch, at the row ``order`` says
    members = np.concatenate(model.members)
    assert sorted(members.tolist()) == list(range(len(structures)))
    rows = np.asarray(model.order)
    offsets = np.cumsum([0] + [len(m) for m in model.members])
    for c, batch_members in enumerate(model.members):
        np.testing.assert_array_equal(rows[batch_members], offsets[c] + np.arange(len(
            batch_members)))
        positions, system = model.batches[c]
        assert positions.shape[1] == model.sizes[c].atoms
        assert system.pairs.mask.shape[1] == model.sizes[c].nonbonded_pairs
        assert system.lists.torsion_mask.shape[1] == model.sizes[c].torsions
    # the structures a fit minimises carry a skin, the others none
    for s, skin in zip(structures, model.skins):
        assert skin == (0.0 if s.run_type == "single_point" else ModelOptions().skin)
    assert any(model.skins)


# cobalt's 147 structures under -m slow (its energies are checked against LAMMPS by default on
# a sample in test_datasets_energy); disulfide's 232 with their charges by default
@pytest.mark.parametrize("dataset", [pytest.param("cobalt", marks=pytest.mark.slow),
                                     "disulfide"], indirect=True)
def test_clustered_predictions_equal_the_one_shape_path(dataset):
    name, ffield, structures, params, _, model = dataset
    ours = model.predict(params)
    reference = evaluate_structures(ffield, structures, clusters=1)
    failures = []
    for k, (s, ref) in enumerate(zip(structures, reference)):
        n = s.n_atoms
        energy = float(ours.energy[k])
        forces = np.asarray(ours.forces[k])
        charges = np.asarray(ours.charges[k])
        if not abs(energy - ref["energy"]) <= RTOL * max(1.0, abs(ref["energy"])):
            failures.append(f"{s.name}: energy {energy!r} vs {ref['energy']!r}")
        scale = max(1.0, float(np.max(np.abs(ref["forces"]))))
        if not np.max(np.abs(forces[:n] - ref["forces"])) <= RTOL * scale:
            failures.append(f"{s.name}: forces deviate by "
                            f"{np.max(np.abs(forces[:n] - ref['forces'])):.3g}")
        scale = max(1e-3, float(np.max(np.abs(ref["charges"]))))
        if not np.max(np.abs(charges[:n] - ref["charges"]), initial=0.0) <= RTOL * scale:
            failures.append(f"{s.name}: charges deviate by "
                            f"{np.max(np.abs(charges[:n] - ref['charges'])):.3g}")
        # padding atoms: exactly zero forces and charges
        if np.any(forces[n:] != 0.0) or np.any(charges[n:] != 0.0):
            failures.append(f"{s.name}: nonzero forces or charges on padding atoms")
    assert not failures, "\n".join(failures)
    # not vacuous: real forces and charges
    assert max(float(np.max(np.abs(r["forces"]))) for r in reference) > 1.0
    if name == "disulfide":
        assert max(float(np.max(np.abs(r["charges"]))) for r in reference) > 0.1


def test_a_second_prediction_compiles_nothing(dataset):
    _, _, _, params, _, model = dataset
    jax.block_until_ready(model.predict(params).energy)  # compiled here or by the test above
    shifted = jax.tree_util.tree_map(lambda a: a * (1.0 + 1e-6), params)
    with counting_compilations() as compiled:
        jax.block_until_ready(model.predict(shifted).energy)
    assert compiled == []


def test_assemble_puts_every_structure_in_its_place(dataset):
    """Cluster outputs tagged with their structure's index come back in structure order."""
    _, _, structures, _, _, model = dataset
    outputs = []
    for (positions, _), members in zip(model.batches, model.members):
        tag = jnp.asarray(members, float)
        outputs.append((tag, positions * tag[:, None, None], jnp.broadcast_to(
            tag[:, None], positions.shape[:2])))
    predictions = assemble(model, outputs)
    np.testing.assert_array_equal(np.asarray(predictions.energy), np.arange(len(structures)))
    for k, s in enumerate(structures):
        n = s.n_atoms
        np.testing.assert_array_equal(np.asarray(predictions.positions[k])[:n], s.positions)
        np.testing.assert_array_equal(np.asarray(predictions.forces[k])[:n], k * s.positions)
        assert np.all(np.asarray(predictions.charges[k])[:n] == k)
        assert int(np.sum(predictions.atom_mask[k])) == n
        cell = np.zeros((3, 3)) if s.cell is None else s.cell
        np.testing.assert_array_equal(np.asarray(predictions.cell[k]), cell)


# ------------------------------------------------------------------------------ fit path


def _objective(theta, predictions, weights):
    """A loss of energies, forces and charges (a stand-in for the fit's)."""
    mask = predictions.atom_mask
    forces = jnp.where(mask[..., None], predictions.forces, 0.0)
    value = (jnp.sum(weights * predictions.energy ** 2) + 1e-2 * jnp.sum(forces ** 2)
             + jnp.sum(predictions.charges ** 2) + 1e-3 * jnp.sum(theta ** 2))
    return value, {"energy": predictions.energy}


def _assert_central_differences(evaluate, theta0, tmap, value0, gradient0):
    """Each component of gradient0 equals a central difference of evaluate(theta)[0]."""
    span = tmap.upper - tmap.lower
    for k in range(tmap.size):
        h = 1e-6 * span[k]
        plus, minus = theta0.copy(), theta0.copy()
        plus[k] += h
        minus[k] -= h
        numeric = (evaluate(plus)[0] - evaluate(minus)[0]) / (2 * h)
        assert gradient0[k] == pytest.approx(numeric, rel=1e-5, abs=1e-7 * abs(value0) / span[k])


@pytest.fixture(scope="module")
def small_molecules(shared_datasets):
    """(model, params, tmap, theta0, weights): five disulfide molecules of at most 4 atoms in
    two clusters, the first 6 parameters of the set's params file at ffield_lit's values."""
    from reaxopt.io.params import read_params
    from reaxopt.model import theta_map

    folder = shared_datasets / "disulfide"
    ff = read_ffield(folder / "ffield_lit")
    params, topology = build_forcefield(ff)
    structures = [s for s in read_geometries(folder / "geo") if s.n_atoms <= 4][:5]
    model = build_model(structures, params, topology, ModelOptions(clusters=2))
    assert len(model.batches) == 2
    tmap = theta_map([s for s in read_params(folder / "params", ff)][:6])
    theta0 = np.clip(tmap.from_params(params), tmap.lower, tmap.upper)
    return model, params, tmap, theta0, jnp.linspace(1.0, 2.0, len(structures))


def test_fit_objective_compiles_once_per_cluster_and_has_the_exact_gradient(small_molecules):
    """Two clusters of small disulfide molecules: the first evaluation compiles, later ones at
    other parameters compile nothing; the gradient matches central differences of the value."""
    model, params, tmap, theta0, weights = small_molecules
    value_and_grad = clustered_value_and_grad(_objective)

    def evaluate(theta):
        (value, aux), gradient = value_and_grad(jnp.asarray(theta), model, tmap, params,
                                                weights)
        return float(value), np.asarray(gradient), aux

    value0, gradient0, _ = evaluate(theta0)
    with counting_compilations() as compiled:
        _assert_central_differences(evaluate, theta0, tmap, value0, gradient0)
    assert compiled == []
    assert np.any(np.abs(gradient0) > 0)


def test_one_cluster_per_structure_is_allowed():
    """clusters >= the number of structures: one batch (and compiled shape) per structure."""
    from pathlib import Path

    ffield = Path(__file__).resolve().parents[1] / "datasets" / "cho" / "ffield_cho"
    params, topology = build_forcefield(read_ffield(ffield))
    structures = [Structure(name=f"h2_{k}", symbols=["H", "H"],
                            positions=np.array([[0.0, 0.0, 0.0], [0.7 + 0.1 * k, 0.0, 0.0]]))
                  for k in range(3)]
    model = build_model(structures, params, topology, ModelOptions(clusters=5))
    assert len(model.batches) == 3
    assert sorted(np.concatenate(model.members).tolist()) == [0, 1, 2]
    assert model.summary_lines()[0].startswith("3 structures in 3 clusters (as configured)")


def _energy_objective(theta, predictions, weights):
    """A loss of energies and charges only (no force items)."""
    value = (jnp.sum(weights * predictions.energy ** 2) + jnp.sum(predictions.charges ** 2)
             + 1e-3 * jnp.sum(theta ** 2))
    return value, {"energy": predictions.energy}


def test_model_without_forces_has_the_same_energies_and_exact_gradient(small_molecules):
    """``with_forces=False`` (a loss without force items): the same energies and charges as
    the full model, zero forces, and the gradient of an energy loss matches central
    differences."""
    import dataclasses

    full, params, tmap, theta0, weights = small_molecules
    bare = dataclasses.replace(full, with_forces=False)
    with_forces, without = full.predict(params), bare.predict(params)
    np.testing.assert_allclose(without.energy, with_forces.energy, rtol=1e-12)
    np.testing.assert_allclose(without.charges, with_forces.charges, rtol=1e-12, atol=1e-14)
    assert not np.any(np.asarray(without.forces))
    assert np.max(np.abs(np.asarray(with_forces.forces))) > 1.0
    value_and_grad = clustered_value_and_grad(_energy_objective)

    def evaluate(theta):
        (value, _), gradient = value_and_grad(jnp.asarray(theta), bare, tmap, params, weights)
        return float(value), np.asarray(gradient)

    value0, gradient0 = evaluate(theta0)
    _assert_central_differences(evaluate, theta0, tmap, value0, gradient0)
    assert np.any(np.abs(gradient0) > 0)
