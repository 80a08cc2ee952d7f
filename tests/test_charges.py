"""QEq charges and the charge_equilibration term against LAMMPS's fix qeq/reaxff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from nonbonded_cases import jitted, lammps_cases, lammps_reference, our_system
from reaxopt.energy.charges import solve_charges


@pytest.fixture(scope="module")
def cases(shared_datasets, tmp_path_factory):
    return lammps_cases(shared_datasets, tmp_path_factory.mktemp("ffields"))


def test_charges_and_qeq_energy_match_lammps(cases):
    nonbonded, _, _ = jitted()
    failures = []
    for name, ffield, structure in cases:
        reference = lammps_reference(name, ffield, structure)
        positions, system, params, topology = our_system(ffield, structure)
        terms, charges = nonbonded(positions, system, params, topology=topology)
        n = structure.n_atoms
        deviation = np.max(np.abs(np.asarray(charges)[:n] - reference["charges"]))
        if not deviation <= 1e-7:  # NaN fails too
            failures.append(f"{name}: charges deviate by {deviation:.3g} e")
        ours = float(terms["charge_equilibration"])
        theirs = reference["terms"]["charge_equilibration"]
        if not abs(ours - theirs) <= max(1e-6, 1e-8 * abs(theirs)):
            failures.append(f"{name} charge_equilibration: ours {ours!r} LAMMPS {theirs!r}")
        assert np.sum(charges) == pytest.approx(structure.total_charge, abs=1e-10)
        assert np.all(np.asarray(charges)[n:] == 0.0)
    assert not failures, "\n".join(failures)


def test_some_structures_carry_real_charges(cases):
    """Guard against a vacuous comparison: the cases hold clearly nonzero charges."""
    spread = [np.ptp(lammps_reference(*c)["charges"]) for c in cases if c[2].n_atoms > 2]
    assert max(spread) > 0.3


def test_bordered_solve_satisfies_equal_electronegativity():
    # random symmetric positive-definite H: H q + chi is the same for every real atom
    rng = np.random.default_rng(3)
    n, real = 6, 5
    a = rng.normal(size=(n, n))
    h = a @ a.T + n * np.eye(n)
    chi = rng.normal(size=n)
    mask = np.arange(n) < real
    h[real:, :] = 0.0
    h[:, real:] = 0.0
    h[real, real] = 1.0
    q = np.asarray(solve_charges(jnp.asarray(h), jnp.asarray(chi), jnp.asarray(mask), 0.7))
    potential = h[:real, :real] @ q[:real] + chi[:real]
    assert np.ptp(potential) < 1e-12
    assert q[:real].sum() == pytest.approx(0.7, abs=1e-13)
    assert q[real] == 0.0


def test_charge_gradient_in_parameters_matches_finite_differences(cases):
    """Charges respond to the parameters (total derivative): d q_0 / d chi of each type."""
    from reaxopt.energy.total import equilibrate_charges
    from reaxopt.forcefield import expand

    _, ffield, structure = next(c for c in cases if c[0] == "cho_molecule")
    positions, system, params, topology = our_system(ffield, structure)

    def first_charge(atoms):
        p = type(params)(**{**params.__dict__, "atoms": atoms})
        return equilibrate_charges(positions, system, expand(p, topology))[0]

    g = jax.grad(first_charge)(params.atoms)
    h = 1e-6
    for t in range(params.atoms.shape[0]):
        for column in (13, 14, 5):  # chi, eta, gamma
            plus = params.atoms.at[t, column].add(h)
            minus = params.atoms.at[t, column].add(-h)
            fd = (first_charge(plus) - first_charge(minus)) / (2 * h)
            assert float(g[t, column]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
