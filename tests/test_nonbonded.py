"""vdW and Coulomb energies against LAMMPS; nonbonded forces against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from nonbonded_cases import jitted, lammps_cases, lammps_reference, our_system


@pytest.fixture(scope="module")
def cases(shared_datasets, tmp_path_factory):
    return lammps_cases(shared_datasets, tmp_path_factory.mktemp("ffields"))


def close(ours, theirs):
    return abs(ours - theirs) <= max(1e-6, 1e-8 * abs(theirs))  # False for NaN


def test_vdw_and_coulomb_match_lammps(cases):
    nonbonded, _, _ = jitted()
    failures = []
    for name, ffield, structure in cases:
        reference = lammps_reference(name, ffield, structure)["terms"]
        positions, system, params, topology = our_system(ffield, structure)
        terms, _ = nonbonded(positions, system, params, topology=topology)
        for term in ("van_der_waals", "coulomb"):
            ours, theirs = float(terms[term]), reference[term]
            if not close(ours, theirs):
                failures.append(f"{name} {term}: ours {ours!r} LAMMPS {theirs!r}")
        assert abs(reference["van_der_waals"]) > 1.0  # the comparison is not vacuous
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["cho_triclinic", "lg_molecule", "inner_wall_molecule",
                                  "cobalt_EOS_sc_4"])
def test_nonbonded_forces_at_fixed_charges_match_finite_differences(cases, name):
    _, gradient, energy = jitted()
    _, ffield, structure = next(c for c in cases if c[0] == name)
    positions, system, params, topology = our_system(ffield, structure)
    rng = np.random.default_rng(0)
    charges = np.where(system.atom_mask, rng.normal(0, 0.3, len(positions)), 0.0)
    forces = -np.asarray(gradient(positions, charges, system, params, topology=topology))
    h = 1e-5
    for atom in range(min(3, structure.n_atoms)):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            fd = -(float(energy(plus, charges, system, params, topology=topology))
                   - float(energy(minus, charges, system, params, topology=topology))) / (2 * h)
            assert forces[atom, axis] == pytest.approx(fd, abs=1e-6, rel=1e-6)
    assert np.all(forces[structure.n_atoms:] == 0.0)


def test_parameter_gradients_are_total_derivatives_through_the_charges(cases):
    """d(energy)/d(atom parameters) and d(force)/d(atom parameters) with the charges re-solved."""
    import jax

    from reaxopt.energy.total import equilibrate_charges, nonbonded_terms
    from reaxopt.forcefield import expand

    _, ffield, structure = next(c for c in cases if c[0] == "cho_triclinic")
    positions, system, params, topology = our_system(ffield, structure)

    def energy_and_force(atoms):
        p = type(params)(**{**params.__dict__, "atoms": atoms})
        ff = expand(p, topology)
        charges = equilibrate_charges(positions, system, ff)

        def total(x, q):
            return sum(nonbonded_terms(x, q, system, ff, topology).values())

        return jax.numpy.stack([total(positions, charges),
                                -jax.grad(total)(positions, charges)[0, 0]])

    f = jax.jit(energy_and_force)
    jacobian = np.asarray(jax.jit(jax.jacfwd(energy_and_force))(params.atoms))
    h = 1e-6
    for t in range(params.atoms.shape[0]):
        for column in (13, 14, 5, 4):  # chi, eta, gamma, vdW epsilon
            fd = (np.asarray(f(params.atoms.at[t, column].add(h)))
                  - np.asarray(f(params.atoms.at[t, column].add(-h)))) / (2 * h)
            np.testing.assert_allclose(jacobian[:, t, column], fd, rtol=1e-5, atol=1e-6)
    assert np.any(np.abs(jacobian[1, :, 13]) > 1e-3)  # the force does depend on chi


def test_contracted_type_pair_lookup_has_the_gather_values_and_derivatives():
    """The lookup GPUs use (its table derivative a contraction over pairs, not a scatter) gives
    the plain gather's values, gradient and second derivatives; by hand, d/dtable[0, 2] of
    sum_p w_p table[ti_p, tj_p] is the sum of w over the pairs of types (0, 2): 1 + 7 = 8."""
    from reaxopt.energy.lookup import contracted_type_pair_values

    table = jnp.array([[1.0, 2.0, 3.0], [2.0, 5.0, 7.0], [3.0, 7.0, 11.0]])
    ti, tj = jnp.array([0, 1, 2, 2, 1, 0, 0]), jnp.array([2, 2, 2, 1, 1, 0, 2])
    w = jnp.arange(7.0) + 1.0
    assert float(jax.grad(lambda t: jnp.sum(w * contracted_type_pair_values(t, ti, tj)))(
        table)[0, 2]) == 8.0

    def contracted(t):
        return jnp.sum(w * jnp.sin(contracted_type_pair_values(t, ti, tj)) ** 2)

    def gathered(t):
        return jnp.sum(w * jnp.sin(t[ti, tj]) ** 2)

    assert float(contracted(table)) == float(gathered(table))
    np.testing.assert_allclose(jax.grad(contracted)(table), jax.grad(gathered)(table),
                               rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(jax.hessian(contracted)(table), jax.hessian(gathered)(table),
                               rtol=1e-14, atol=1e-14)
