"""BGF restraints (``reaxopt.restraints``): the energy by hand, forces and virial against finite
differences, restrained relaxations (FIRE and Newton) that balance ReaxFF's forces against the
restraints', and the restrained geometry's and energy's parameter derivatives against finite
differences of restrained minima.

The molecule is acetaldehyde of the bundled C/H/O set (atoms O, C, H, C, H, H, H), as in
tests/test_response.py, whose compiled shapes these tests share.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.io.params import read_params
from reaxopt.minimize import newton_refine, relax, restraint_terms
from reaxopt.model import build_model, theta_map
from reaxopt.response import linearised_positions, relaxed_response
from reaxopt.restraints import energy_forces_virial, restraint_arrays, restraint_energy
from reaxopt.structure import Restraint, Structure

DATA = Path(__file__).resolve().parents[1] / "datasets" / "cho"
PICKED = ("bond C-H p_bo2", "bond C-C p_bo1", "bond C-C De_s", "bond C-H p_be1")
# C-C pulled from ~1.5 Å towards 1.7 Å; the H-C-C-H torsion of the aldehyde H and a methyl H
# turned towards 60 degrees
RESTRAINTS = [Restraint("bond", (1, 3), 1.7, 200.0, 2.0),
              Restraint("torsion", (2, 1, 3, 4), 60.0, 20.0, 0.002)]


def _one(restraints):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), restraint_arrays([restraints]))


def test_restraint_energy_by_hand():
    x = jnp.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.0, 0.0],
                   [1.0, 0.0, 0.0], [0.0, 0.0, 1.0],
                   [np.cos(np.radians(170.0)), np.sin(np.radians(170.0)), 1.0]])
    molecule = jnp.zeros((3, 3))
    cases = [  # (restraint, energy by hand, kcal/mol)
        (Restraint("bond", (0, 1), 1.2, 100.0, 2.0), 100.0 * (1 - np.exp(-2.0 * 0.3 ** 2))),
        # angle 1-0-2 is 90 degrees; target 100, force2 per degree²
        (Restraint("angle", (1, 0, 2), 100.0, 50.0, 0.01), 50.0 * (1 - np.exp(-0.01 * 100.0))),
        # torsion 3-0-4-5 is +170 degrees (IUPAC); from a target of -170 it is 20 degrees
        # away (across 180, not 340)
        (Restraint("torsion", (3, 0, 4, 5), -170.0, 30.0, 0.001),
         30.0 * (1 - np.exp(-0.001 * 20.0 ** 2))),
    ]
    for restraint, expected in cases:
        assert float(restraint_energy(x, molecule, _one([restraint]))) == pytest.approx(
            expected, rel=1e-12), restraint.kind
    # padded to 4 entries: the padding contributes nothing
    every = restraint_arrays([[r for r, _ in cases]])
    assert every.mask.shape == (1, 4) and every.mask.sum() == 3
    total = float(restraint_energy(x, molecule, _one([r for r, _ in cases])))
    assert total == pytest.approx(sum(e for _, e in cases), rel=1e-12)
    # forces: minus the central finite difference of the energy
    _, forces, _ = energy_forces_virial(x, molecule, _one([r for r, _ in cases]))
    h = 1e-6
    for atom in range(6):
        for axis in range(3):
            step = jnp.zeros_like(x).at[atom, axis].set(h)
            fd = (restraint_energy(x + step, molecule, _one([r for r, _ in cases]))
                  - restraint_energy(x - step, molecule, _one([r for r, _ in cases]))) / (2 * h)
            assert float(forces[atom, axis]) == pytest.approx(-float(fd), abs=1e-7)


def test_restraint_in_a_cell_uses_the_minimum_image_and_gives_the_virial():
    cell = jnp.diag(jnp.array([5.0, 6.0, 7.0]))
    x = jnp.array([[0.2, 0.0, 0.0], [4.6, 0.5, 0.0]])  # 0.6 Å apart in x across the boundary
    restraints = _one([Restraint("bond", (0, 1), 1.0, 100.0, 2.0)])
    r = np.hypot(0.6, 0.5)
    assert float(restraint_energy(x, cell, restraints)) == pytest.approx(
        100.0 * (1 - np.exp(-2.0 * (r - 1.0) ** 2)), rel=1e-12)
    _, _, virial = energy_forces_virial(x, cell, restraints)
    h = 1e-6
    for a, b in ((0, 0), (1, 1), (0, 1)):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h / (1 if a == b else 2)
        plus, minus = jnp.eye(3) + strain, jnp.eye(3) - strain
        fd = (restraint_energy(x @ plus, cell @ plus, restraints)
              - restraint_energy(x @ minus, cell @ minus, restraints)) / (2 * h)
        # W = -dE/d(eps); a symmetric shear eps_ab = eps_ba = h/2 moves E by W_ab h
        assert float(virial[a, b]) == pytest.approx(-float(fd), rel=1e-6)
    assert float(virial[0, 0]) != 0.0 and float(virial[1, 1]) != 0.0


@pytest.fixture(scope="module")
def setup():
    ffield = read_ffield(DATA / "ffield_cho")
    params, topology = build_forcefield(ffield)
    specs = [s for s in read_params(DATA / "params", ffield) if s.label in PICKED]
    tmap = theta_map(specs)
    molecule = next(s for s in read_geometries(DATA / "cho.extxyz") if s.name == "acetaldehyde")
    structure = Structure(molecule.name, molecule.symbols, molecule.positions,
                          run_type="minimize", restraints=RESTRAINTS)
    return params, topology, tmap, structure


def _bond(x):
    return float(np.linalg.norm(np.asarray(x)[1] - np.asarray(x)[3]))


def _total_forces(model, params, restraints):
    """ReaxFF forces, restraint forces (n, 3) kcal/mol/Å of the model's one structure."""
    n = model.n_atoms[0]
    reaxff = np.asarray(model.predict(params).forces[0, :n])
    return reaxff, restraint_terms(model, restraints)[1][0, :n]


@pytest.fixture(scope="module")
def restrained(setup):
    """FIRE relaxations of the molecule with and without the restraints (RMS < 0.01)."""
    params, topology, _, structure = setup
    free = build_model([dataclasses.replace(structure, restraints=[])], params, topology)
    free, _, rms_free = relax(free, params, [0], [3000], 0.01)
    model = build_model([structure], params, topology)
    model, _, rms = relax(model, params, [0], [3000], 0.01, restraints=[RESTRAINTS])
    assert rms_free[0] < 0.01 and rms[0] < 0.01
    return free, model


def test_restrained_relaxation_balances_reaxff_against_the_restraints(setup, restrained):
    params, _, _, structure = setup
    free, model = restrained
    n = structure.n_atoms
    free_bond = _bond(free.batches[0][0][0, :n])
    bond = _bond(model.batches[0][0][0, :n])
    # pulled towards 1.7 Å, held back by the C-C bond
    assert 1.45 < free_bond < 1.6 and free_bond + 0.02 < bond < 1.7
    reaxff, pulled = _total_forces(model, params, [RESTRAINTS])
    assert np.sqrt(np.mean(reaxff ** 2)) > 5.0  # ReaxFF alone is far from balanced
    # the RMS FIRE converged on is that of ReaxFF's plus the restraints' forces
    assert np.sqrt(np.mean((reaxff + pulled) ** 2)) < 0.01
    # the C-C bond restraint's pull along the bond, by hand: -dE/dr at the relaxed length
    delta = bond - 1.7
    along = (np.asarray(model.batches[0][0][0, 3]) - np.asarray(model.batches[0][0][0, 1]))
    along /= np.linalg.norm(along)
    torsion_only = restraint_terms(model, [RESTRAINTS[1:]])[1][0, :n]
    bond_pull = np.dot(pulled[3] - torsion_only[3], along)
    assert bond_pull == pytest.approx(-2 * 200.0 * 2.0 * delta * np.exp(-2.0 * delta ** 2),
                                      rel=1e-9)


def test_newton_steps_reach_the_restrained_minimum(setup, restrained):
    params, topology, _, structure = setup
    _, fire = restrained
    n = structure.n_atoms
    started, _, rms = relax(build_model([structure], params, topology), params, [0], [10], 0.01,
                            restraints=[RESTRAINTS])
    assert rms[0] > 0.5
    refined, refined_rms = newton_refine(started, params, [0], 1e-5, 8, restraints=[RESTRAINTS])
    assert refined_rms[0] < 1e-5
    reaxff, pulled = _total_forces(refined, params, [RESTRAINTS])
    assert np.sqrt(np.mean((reaxff + pulled) ** 2)) == pytest.approx(refined_rms[0], rel=1e-9)
    x, y = np.asarray(refined.batches[0][0][0, :n]), np.asarray(fire.batches[0][0][0, :n])
    assert _bond(x) == pytest.approx(_bond(y), abs=2e-4)


def _minimum(model, params, tolerance=1e-9):
    """The restrained minimum (Å) by exact Newton iterations from the model's geometry."""
    n = model.n_atoms[0]
    positions, system = model.batches[0]
    x = np.asarray(positions[0, :n])
    for _ in range(30):
        at = dataclasses.replace(model, batches=((positions.at[0, :n].set(x), system),))
        response = relaxed_response(at, params, [0], 0.0, [RESTRAINTS])
        forces = np.asarray(response.start_forces[0, :n] + response.restraint_forces[0, :n])
        if np.sqrt(np.mean(forces ** 2)) < tolerance:
            return at
        step = np.asarray(response.inverse_force_constants[0, :3 * n, :3 * n]) @ forces.ravel()
        x = x + step.reshape(n, 3)
    raise AssertionError("Newton iterations did not converge")


def test_restrained_energy_and_geometry_have_their_relaxed_derivatives(setup, restrained):
    """At a restrained minimum ReaxFF's forces are not zero, so its energy's derivative holds
    -F·dx*/dθ: the linearised energy and bond length follow finite differences of
    restrained minima."""
    params, _, tmap, structure = setup
    n = structure.n_atoms
    theta0 = tmap.from_params(params)
    model = _minimum(restrained[1], params)
    response = relaxed_response(model, params, [0], 0.0, [RESTRAINTS])
    assert np.max(np.abs(np.asarray(response.restraint_forces))) > 10.0

    def observed(theta):
        predictions = linearised_positions(model.predict(tmap.to_params(theta, params)),
                                           response)
        x = predictions.positions[0, :n]
        return jnp.stack([predictions.energy[0], jnp.linalg.norm(x[1] - x[3])])

    ours = np.asarray(jax.jacobian(observed)(jnp.asarray(theta0)))
    reference = np.zeros_like(ours)
    for k in range(len(theta0)):
        h = 1e-4 * max(1.0, abs(theta0[k]))
        values = []
        for sign in (1, -1):
            theta = theta0.copy()
            theta[k] += sign * h
            p = tmap.to_params(jnp.asarray(theta), params)
            at = _minimum(model, p)
            x = np.asarray(at.batches[0][0][0, :n])
            values.append([float(at.predict(p).energy[0]), _bond(x)])
        reference[:, k] = (np.array(values[0]) - np.array(values[1])) / (2 * h)
    relative = np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-4)
    assert np.max(relative[1]) < 1e-6, (ours, reference)
    # The energy: LAMMPS's QEq energy is not exactly stationary in the charges (23.02 vs
    # 332.06371/14.4, reaxopt.energy.charges), so its forces differ from -dE/dx by ~0.1%, and
    # so does the F_r·dx*/dθ term (up to 1e-3 of the derivative here). Without the term the
    # derivative is off by 1.4% to 25%.
    assert np.max(relative[0]) < 2e-3, (ours, reference)
    plain = np.asarray(jax.grad(lambda t: model.predict(tmap.to_params(t, params)).energy[0])(
        jnp.asarray(theta0)))
    assert np.min(np.abs(plain - reference[0]) / np.abs(reference[0])) > 1e-2


def _water_angle(force1=7500.0, force2=1.0):
    """A bent H-O-H (104.5 degrees) and its angle restraint at 104.5 as device arrays."""
    x = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0],
                  [0.9572 * np.cos(np.radians(104.5)), 0.9572 * np.sin(np.radians(104.5)), 0.0]])
    arrays = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), restraint_arrays(
        [[Restraint("angle", (1, 0, 2), 104.5, force1, force2)]]))
    return jnp.asarray(x), arrays


def test_split_forces_remove_the_restrained_direction_and_step_to_the_balance():
    """The tangent forces have no component along the restrained value's gradient g (and
    forces across it pass unchanged); the Newton step takes a structure held only by its
    restraint, 0.02 degrees off its target, back to the target (to second order), and with a
    stiffness K allowed for ReaxFF, by the share k|g|²/(k|g|² + K) of the way."""
    from reaxopt.restraints import restraint_values, split_forces

    x, arrays = _water_angle()
    cell = jnp.zeros((3, 3))
    g = np.asarray(jax.jacrev(restraint_values)(x, cell, arrays))[0]  # degrees per Å
    rng = np.random.default_rng(1)
    forces = rng.normal(0.0, 50.0, (3, 3))
    tangent, step = map(np.asarray, split_forces(jnp.asarray(forces), x, cell, arrays, 1e3))
    assert abs(np.sum(tangent * g)) < 1e-10 * np.abs(forces).max() * np.linalg.norm(g)
    np.testing.assert_allclose(tangent + np.sum(forces * g) / np.sum(g * g) * g, forces,
                               atol=1e-10)
    across = np.zeros((3, 3))
    across[:, 2] = [1.0, -2.0, 0.5]  # out of the molecule's plane: the angle does not change
    kept, none = map(np.asarray, split_forces(jnp.asarray(across), x, cell, arrays, 1e3))
    np.testing.assert_allclose(kept, across, atol=1e-12)
    np.testing.assert_allclose(none, 0.0, atol=1e-14)
    # off target by 0.02 degrees, under the restraint's own force
    off = np.asarray(x) - 0.02 * g / np.sum(g * g)
    assert float(restraint_values(jnp.asarray(off), cell, arrays)[0]) == pytest.approx(
        104.5 - 0.02, abs=1e-5)
    _, pull, _ = energy_forces_virial(jnp.asarray(off), cell, arrays)
    _, step = split_forces(pull, jnp.asarray(off), cell, arrays, 0.0)
    back = float(restraint_values(jnp.asarray(off) + step, cell, arrays)[0])
    assert abs(back - 104.5) < 1e-5  # from 0.02 degrees: Newton's second-order error
    # with an allowance for ReaxFF's curvature the step falls short by its share of the whole
    _, damped = split_forces(pull, jnp.asarray(off), cell, arrays, 1e3)
    share = 1.0 / (1.0 + 1e3 / (2 * 7500.0 * np.sum(g * g)))
    moved = float(restraint_values(jnp.asarray(off) + damped, cell, arrays)[0]) - (104.5 - 0.02)
    assert moved == pytest.approx(0.02 * share, rel=1e-3)


def test_step_share_keeps_a_restrained_value_within_its_share_of_the_well():
    """A step that would open the angle by 4 degrees is cut to the share that moves it by a
    quarter of its 1-degree well; a step that barely moves it is taken whole."""
    from reaxopt.restraints import step_share

    x, arrays = _water_angle()
    turn = np.radians(4.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0],
                         [0, 0, 1]])
    after = np.asarray(x).copy()
    after[2] = after[2] @ rotation.T
    share = float(step_share(x, jnp.asarray(after), jnp.zeros((3, 3)), arrays, 0.25))
    assert share == pytest.approx(0.25 / 4.0, rel=1e-9)
    nudged = np.asarray(x) + 1e-4 * np.array([[0, 0, 1.0], [0, 0, -1.0], [0, 0, 1.0]])
    assert float(step_share(x, jnp.asarray(nudged), jnp.zeros((3, 3)), arrays, 0.25)) == 1.0
