"""Energies, forces and parameter gradients stay finite anywhere within a fit's bounds.

A cobalt fit from ffield_lit used to stop after one iteration: at the bounds of the published
params file (Co r_s 2.6 Å, Co-Co p_bo2 5.0) bcc and hcp crystals are so over-coordinated that
exp() overflowed in ReaxFF's ratios of exponentials (valence f8, penalty f9, ...); the energies
stayed finite (those entries were masked) but the gradient through the mask was NaN. The
ratios are now computed in overflow-free forms (``reaxopt.energy.safe_math``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from reaxopt.energy.safe_math import logistic, logistic_scaled, two_plus_ratio
from reaxopt.energy.total import energy_forces_charges
from reaxopt.evaluate import build_system
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.io.params import read_params
from reaxopt.model import theta_map


def test_overflow_free_forms_equal_the_plain_formulas():
    a = np.linspace(-30.0, 30.0, 13)
    b = np.linspace(20.0, -20.0, 13)
    np.testing.assert_allclose(two_plus_ratio(a, b), (2 + np.exp(a)) / (1 + np.exp(a) + np.exp(b)),
                               rtol=1e-14)
    np.testing.assert_allclose(logistic(a), 1 / (1 + np.exp(-a)), rtol=1e-14)
    np.testing.assert_allclose(logistic_scaled(a, 25.0), 1 / (1 + 25.0 * np.exp(a)), rtol=1e-13)
    assert np.all(np.asarray(logistic_scaled(a, 0.0)) == 1.0)
    # where the plain formulas overflow: finite values and gradients
    for f in (lambda x: two_plus_ratio(x, -x), lambda x: two_plus_ratio(-x, x),
              lambda x: logistic(-x), lambda x: logistic_scaled(x, 3.0)):
        for x in (800.0, -800.0):
            assert np.isfinite(float(f(x))) and np.isfinite(float(jax.grad(f)(x)))


@pytest.mark.parametrize("label, side", [("atom Co r_s", "upper"), ("bond Co-Co p_bo2", "lower"),
                                         ("atom Co p_ovun2", "lower")])
def test_cobalt_crystals_at_the_bounds_have_finite_gradients(shared_datasets, label, side):
    folder = shared_datasets / "cobalt"
    ff = read_ffield(folder / "ffield_lit")
    params, topology = build_forcefield(ff)
    tmap = theta_map(read_params(folder / "params", ff))
    theta = np.clip(tmap.from_params(params), tmap.lower, tmap.upper)
    k = tmap.labels.index(label)
    theta[k] = getattr(tmap, side)[k]
    at_bound = tmap.to_params(jnp.asarray(theta), params)
    crystals = [s for s in read_geometries(folder / "geo") if s.name in ("EOS_bcc_1", "EOS_hcp_1")]
    assert len(crystals) == 2
    for structure in crystals:
        positions, system = build_system(structure, at_bound, topology)
        system = jax.tree_util.tree_map(jnp.asarray, system)

        def objective(p):
            energy, _, forces, _ = energy_forces_charges(jnp.asarray(positions), system, p,
                                                         topology)
            return energy + jnp.sum(forces ** 2)

        value, gradient = jax.value_and_grad(objective)(at_bound)
        assert np.isfinite(float(value))
        for leaf in jax.tree_util.tree_leaves(gradient):
            assert np.all(np.isfinite(np.asarray(leaf))), (structure.name, label)
