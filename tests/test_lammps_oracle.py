"""Sanity of the LAMMPS oracle itself: terms add up, charges sum to the total, forces are -dE/dx."""

from pathlib import Path

import numpy as np
import pytest

from lammps_oracle import TERMS, lammps_evaluate, lammps_frame
from nonbonded_cases import POTENTIALS, _ethanol_water, _perturb

CHO = POTENTIALS / "ffield.reax.cho"


@pytest.fixture(scope="module")
def molecule():
    symbols, x = _ethanol_water()
    return symbols, _perturb(x, 1)


def test_energy_is_the_sum_of_the_terms_and_charges_are_neutral(molecule):
    symbols, x = molecule
    result = lammps_evaluate(CHO, symbols, x)
    assert set(result["terms"]) == set(TERMS) and len(TERMS) == 12
    assert result["energy"] == pytest.approx(sum(result["terms"].values()), abs=1e-9)
    assert result["raw"][3] == 0.0 and result["raw"][12] == 0.0
    assert result["charges"].sum() == pytest.approx(0.0, abs=1e-12)
    assert np.ptp(result["charges"]) > 0.3
    assert result["forces"].shape == (len(symbols), 3)


def test_total_charge_through_the_spectator_ion(molecule):
    symbols, x = molecule
    neutral = lammps_evaluate(CHO, symbols, x)
    cation = lammps_evaluate(CHO, symbols, x, total_charge=1.0)
    assert cation["charges"].sum() == pytest.approx(1.0, abs=1e-10)
    assert cation["energy"] == pytest.approx(sum(cation["terms"].values()), abs=1e-9)
    # the geometry terms do not see the charges
    for term in ("bond", "valence", "van_der_waals"):
        assert cation["terms"][term] == pytest.approx(neutral["terms"][term], abs=1e-9)
    assert cation["terms"]["coulomb"] != pytest.approx(neutral["terms"]["coulomb"], abs=1e-3)


def test_forces_are_minus_the_energy_gradient_without_qeq(molecule):
    symbols, x = molecule
    result = lammps_evaluate(CHO, symbols, x, qeq=False)
    assert result["terms"]["coulomb"] == 0.0 and np.all(result["charges"] == 0.0)
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (9, 2)]:
        plus, minus = x.copy(), x.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = -(lammps_evaluate(CHO, symbols, plus, qeq=False)["energy"]
               - lammps_evaluate(CHO, symbols, minus, qeq=False)["energy"]) / (2 * h)
        assert result["forces"][atom, axis] == pytest.approx(fd, abs=1e-5, rel=1e-6)


def test_rotated_cell_gives_the_same_energy_and_rotated_forces(molecule):
    symbols, x = molecule
    cell = np.array([[7.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, 0.7, 6.8]])
    rotation = np.array([[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    a = lammps_evaluate(CHO, symbols, x, cell)
    b = lammps_evaluate(CHO, symbols, x @ rotation, cell @ rotation)
    assert b["energy"] == pytest.approx(a["energy"], abs=1e-8)
    np.testing.assert_allclose(b["forces"], a["forces"] @ rotation, atol=1e-8)
    q, lower = lammps_frame(cell @ rotation)
    np.testing.assert_allclose(cell @ rotation @ q, lower, atol=1e-12)
    assert lower[0, 1] == lower[0, 2] == lower[1, 2] == 0.0


def test_strongly_tilted_cell_is_reduced_to_the_same_lattice(molecule):
    symbols, x = molecule
    cell = np.array([[7.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, 0.7, 6.8]])
    sheared = cell.copy()
    sheared[1] += 2 * cell[0]  # same lattice, tilt xy = 15 > lx / 2
    sheared[2] -= cell[1] + cell[0]
    a = lammps_evaluate(CHO, symbols, x, cell)
    b = lammps_evaluate(CHO, symbols, x, sheared)
    assert b["energy"] == pytest.approx(a["energy"], abs=1e-8)
    np.testing.assert_allclose(b["forces"], a["forces"], atol=1e-8)
    np.testing.assert_allclose(b["charges"], a["charges"], atol=1e-10)
