"""The relaxed geometry's parameter derivative (``reaxopt.response``) against finite differences
of geometries relaxed to convergence at displaced parameters.

Acetaldehyde (CH3CHO) of the bundled set under its C/H/O force field; parameters that move its
bonds (C-H, C-C bond order and bond energy). The reference relaxations are FIRE, then Newton
iterations on the forces until the RMS force is below 1e-9 kcal/mol/Å, so the finite
differences see the true minimum at each parameter value; the Newton steps' matrix affects how
fast they converge, not where.
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
from reaxopt.minimize import newton_refine, relax
from reaxopt.model import build_model, theta_map
from reaxopt.response import (internal_inverse, linearised_positions, relaxed_response,
                              rigid_modes)
from reaxopt.structure import Structure

DATA = Path(__file__).resolve().parents[1] / "datasets" / "cho"
PICKED = ("bond C-H p_bo2", "bond C-C p_bo1", "bond C-C De_s", "bond C-H p_be1")


@pytest.fixture(scope="module")
def setup():
    ffield = read_ffield(DATA / "ffield_cho")
    params, topology = build_forcefield(ffield)
    specs = [s for s in read_params(DATA / "params", ffield) if s.label in PICKED]
    assert len(specs) == len(PICKED)
    tmap = theta_map(specs)
    molecule = next(s for s in read_geometries(DATA / "cho.extxyz") if s.name == "acetaldehyde")
    return params, topology, tmap, molecule


def _at(model, x):
    """``model`` (one structure) with its positions set to x (Å): the same compiled shapes."""
    positions, system = model.batches[0]
    moved = positions.at[0, :len(x)].set(jnp.asarray(x))
    return dataclasses.replace(model, batches=((moved, system),))


@pytest.fixture(scope="module")
def relaxed_model(setup):
    """The molecule relaxed by FIRE under the starting parameters (RMS force < 0.01)."""
    params, topology, _, molecule = setup
    structure = Structure(molecule.name, molecule.symbols, molecule.positions,
                          run_type="minimize")
    model = build_model([structure], params, topology)
    model, _, rms = relax(model, params, [0], [3000], 0.01)
    assert rms[0] < 0.01
    return model


def _newton(model, theta, setup, tolerance=1e-9):
    """Newton iterations x <- x + K⁺ F from the model's geometry: the converged minimum (Å)."""
    params, _, tmap, molecule = setup
    p = tmap.to_params(jnp.asarray(theta), params)
    n = len(molecule.symbols)
    x = np.asarray(model.batches[0][0][0, :n])
    for _ in range(20):
        current = _at(model, x)
        forces = np.asarray(current.predict(p).forces[0, :n])
        if np.sqrt(np.mean(forces ** 2)) < tolerance:
            return x
        inverse = np.asarray(relaxed_response(current, p, [0]).inverse_force_constants[0])
        x = x + (inverse[:3 * n, :3 * n] @ forces.ravel()).reshape(n, 3)
    raise AssertionError("Newton relaxation did not converge")


def _internal(x):
    """Bond lengths C-C, C=O, methyl C-H, carbonyl C-H (Å) and the C-C=O angle (degrees);
    atoms O, C(carbonyl), H, C(methyl), H, H, H."""
    d = lambda a, b: jnp.linalg.norm(x[a] - x[b])  # noqa: E731
    u, v = x[3] - x[1], x[0] - x[1]
    angle = jnp.degrees(jnp.arccos(jnp.dot(u, v) / (jnp.linalg.norm(u) * jnp.linalg.norm(v))))
    return jnp.stack([d(1, 3), d(0, 1), d(3, 4), d(1, 2), angle])


def test_rigid_modes_are_orthonormal_and_rigid():
    x = np.random.default_rng(0).normal(size=(5, 3))
    modes = rigid_modes(x, periodic=False)
    assert modes.shape == (15, 6)
    assert np.allclose(modes.T @ modes, np.eye(6), atol=1e-12)
    # a rigid motion leaves every distance unchanged to first order
    for mode in modes.T:
        moved = x + 1e-6 * mode.reshape(5, 3)
        before = np.linalg.norm(x[:, None] - x[None], axis=-1)
        after = np.linalg.norm(moved[:, None] - moved[None], axis=-1)
        assert np.max(np.abs(after - before)) < 1e-11
    assert rigid_modes(x, periodic=True).shape == (15, 3)


def test_linearised_geometry_has_the_relaxed_geometry_derivative(setup, relaxed_model):
    params, topology, tmap, molecule = setup
    assert molecule.symbols == ["O", "C", "H", "C", "H", "H", "H"]
    theta0 = tmap.from_params(params)
    x0 = _newton(relaxed_model, theta0, setup)
    n = len(x0)
    model = _at(relaxed_model, x0)
    response = relaxed_response(model, tmap.to_params(jnp.asarray(theta0), params), [0])

    def internal_of(theta):
        predictions = model.predict(tmap.to_params(theta, params))
        return _internal(linearised_positions(predictions, response).positions[0, :n])

    value = np.asarray(internal_of(jnp.asarray(theta0)))
    assert np.allclose(value, np.asarray(_internal(jnp.asarray(x0))), atol=1e-9)
    ours = np.asarray(jax.jacobian(internal_of)(jnp.asarray(theta0)))

    reference = np.zeros_like(ours)
    for k in range(len(theta0)):
        h = 1e-4 * max(1.0, abs(theta0[k]))
        plus, minus = theta0.copy(), theta0.copy()
        plus[k] += h
        minus[k] -= h
        reference[:, k] = (np.asarray(_internal(jnp.asarray(_newton(model, plus, setup))))
                           - np.asarray(_internal(jnp.asarray(_newton(model, minus, setup))))
                           ) / (2 * h)
    assert np.max(np.abs(reference)) > 1e-3  # the parameters do move the geometry
    scale = np.maximum(np.abs(reference), 1e-4)
    assert np.max(np.abs(ours - reference) / scale) < 1e-4, (ours, reference)


def test_linearised_geometry_starts_at_an_unconverged_relaxation(setup, relaxed_model):
    """A relaxation stopped at a residual force is taken as it is: no Newton step at θ₀."""
    params, topology, tmap, molecule = setup
    theta0 = tmap.from_params(params)
    p = tmap.to_params(jnp.asarray(theta0), params)
    x0 = _newton(relaxed_model, theta0, setup)
    n = len(x0)
    shifted = x0 + 0.02 * np.random.default_rng(1).normal(size=x0.shape)
    model = _at(relaxed_model, shifted)
    predictions = model.predict(p)
    residual = np.asarray(predictions.forces[0, :n])
    assert np.sqrt(np.mean(residual ** 2)) > 1.0  # far from converged (kcal/mol/Å)
    response = relaxed_response(model, p, [0])
    assert np.allclose(np.asarray(response.start_forces[0, :n]), residual, atol=1e-10)
    moved = np.asarray(linearised_positions(predictions, response).positions[0, :n])
    assert np.max(np.abs(moved - shifted)) < 1e-12


def test_stiffness_floor_bounds_soft_modes_and_keeps_stiff_ones():
    """K with internal stiffnesses 0.5, 2, 50 and 300 kcal/mol/Å² (and one unstable mode, -4):
    with a floor of 10 the inverse has 1/10 on the soft and unstable modes, 1/50 and 1/300 on
    the stiff ones; with no floor it is the exact inverse."""
    x = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.3, 0.2], [0.4, 0.3, 1.2]])
    rigid = rigid_modes(x, periodic=False)
    internal = np.linalg.svd(np.eye(12) - rigid @ rigid.T)[0][:, :6]
    stiffness = np.array([0.5, 2.0, 50.0, 300.0, -4.0, 80.0])
    k = internal @ np.diag(stiffness) @ internal.T
    floored = internal_inverse(k, x, periodic=False, min_stiffness=10.0)
    expected = internal @ np.diag(1.0 / np.maximum(stiffness, 10.0)) @ internal.T
    np.testing.assert_allclose(floored, expected, atol=1e-12)
    np.testing.assert_allclose(internal.T @ floored @ internal,
                               np.diag([0.1, 0.1, 0.02, 1 / 300, 0.1, 1 / 80]), atol=1e-12)
    exact = internal_inverse(k, x, periodic=False)
    np.testing.assert_allclose(internal.T @ exact @ internal, np.diag(1.0 / stiffness),
                               atol=1e-12)
    assert np.max(np.abs(exact @ rigid)) < 1e-12 and np.max(np.abs(floored @ rigid)) < 1e-12


def test_newton_steps_finish_an_unconverged_relaxation(setup, relaxed_model, monkeypatch):
    """FIRE stopped after 10 steps leaves acetaldehyde at RMS force > 0.5 kcal/mol/Å; Newton
    steps take it to RMS < 1e-4 at a lower energy, at the minimum that Newton iterations from a
    long FIRE relaxation reach; steps that keep halving the force reuse the force constants, so
    there are fewer force-constant evaluations than steps."""
    import reaxopt.response

    params, topology, tmap, molecule = setup
    structure = Structure(molecule.name, molecule.symbols, molecule.positions,
                          run_type="minimize")
    started, _, rms = relax(build_model([structure], params, topology), params, [0], [10], 0.01)
    assert rms[0] > 0.5
    evaluations = []

    def counted(*args, **kwargs):
        evaluations.append(args[2])
        return relaxed_response(*args, **kwargs)

    monkeypatch.setattr(reaxopt.response, "relaxed_response", counted)
    steps = []
    refined, refined_rms = newton_refine(started, params, [0], 1e-4, 8,
                                         on_step=lambda *step: steps.append(step))
    assert refined_rms[0] < 1e-4
    largest = [rms for rms, _ in steps]
    assert largest == sorted(largest, reverse=True) and largest[-1] == refined_rms[0]
    assert sum(fresh for _, fresh in steps) == len(evaluations) < len(steps) <= 8
    assert steps[0][1]  # the first step evaluates force constants
    n = len(molecule.symbols)
    forces = np.asarray(refined.predict(params).forces[0, :n])
    assert np.sqrt(np.mean(forces ** 2)) == pytest.approx(refined_rms[0], rel=1e-9)
    assert float(refined.predict(params).energy[0]) < float(started.predict(params).energy[0])
    minimum = _newton(relaxed_model, tmap.from_params(params), setup)
    np.testing.assert_allclose(np.asarray(_internal(jnp.asarray(refined.batches[0][0][0, :n]))),
                               np.asarray(_internal(jnp.asarray(minimum))), atol=1e-4)
