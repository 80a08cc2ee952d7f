"""LAMMPS's ``enobonds`` keyword: atoms without bonds keep (yes, default) or lose (no) their
lone-pair and under-coordination energies. Compared live with LAMMPS on a water molecule with
an isolated oxygen and an isolated hydrogen (beyond the 5 Å bond cutoff, inside the 10 Å
nonbonded one)."""

import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from lammps_oracle import lammps_evaluate
from nonbonded_cases import POTENTIALS
from reaxopt.evaluate import evaluate_structures
from reaxopt.structure import Structure

CHO = None if POTENTIALS is None else POTENTIALS / "ffield.reax.cho"


def _structure():
    symbols = ["O", "H", "H", "O", "H"]
    positions = np.array([[0.0, 0.0, 0.0], [0.96, 0.05, 0.0], [-0.25, 0.93, 0.02],
                          [6.2, 0.4, -0.3], [0.3, -6.1, 0.5]])
    return Structure(name="water_and_lone_atoms", symbols=symbols, positions=positions)


@pytest.fixture(scope="module")
def results():
    structure = _structure()
    out = {}
    for enobonds in (True, False):
        ours = evaluate_structures(CHO, [structure], enobonds=enobonds)[0]
        reference = lammps_evaluate(CHO, structure.symbols, structure.positions,
                                    enobonds=enobonds)
        out[enobonds] = ours, reference
    return out


@pytest.mark.parametrize("enobonds", [True, False], ids=["enobonds_yes", "enobonds_no"])
def test_terms_energy_forces_charges_match_lammps(results, enobonds):
    ours, reference = results[enobonds]
    for term, value in reference["terms"].items():
        assert ours["terms"][term] == pytest.approx(value, abs=1e-6, rel=1e-8), term
    assert ours["energy"] == pytest.approx(reference["energy"], abs=1e-6, rel=1e-8)
    np.testing.assert_allclose(ours["forces"], reference["forces"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours["charges"], reference["charges"], atol=1e-7, rtol=0)


def test_the_option_changes_only_the_lone_atoms_energies(results):
    (yes, lammps_yes), (no, lammps_no) = results[True], results[False]
    changed = {t for t in yes["terms"] if abs(yes["terms"][t] - no["terms"][t]) > 1e-9}
    # (an isolated O or H has Delta_lp < 0, so its lone-pair energy is ~0 either way)
    assert "over_under" in changed and changed <= {"lone_pair", "over_under"}
    # the lone atoms' under-coordination energy is worth more than 1 kcal/mol
    assert abs(yes["energy"] - no["energy"]) > 1.0
    assert yes["energy"] - no["energy"] == pytest.approx(
        lammps_yes["energy"] - lammps_no["energy"], abs=1e-6)
    np.testing.assert_array_equal(yes["charges"], no["charges"])
