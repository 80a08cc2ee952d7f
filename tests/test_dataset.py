"""The bundled C/H/O DFT dataset (datasets/cho): completeness, units, and physical sanity."""

import importlib.util
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.io import read

from reaxopt.io.ase_io import read_ase
from reaxopt.io.ffield import read_ffield
from reaxopt.io.params import get_value, read_params

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
CHO = DATASETS / "cho"
HARTREE_TO_KCAL_MOL = units.Hartree / (units.kcal / units.mol)


@pytest.fixture(scope="module")
def make_cho():
    """datasets/make_cho.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_cho", DATASETS / "make_cho.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_cho"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def structures():
    return read(CHO / "cho.extxyz", index=":", format="extxyz")


@pytest.fixture(scope="module")
def families(structures):
    grouped = defaultdict(list)
    for atoms in structures:
        grouped[atoms.info["family"]].append(atoms)
    return grouped


def test_file_is_small_and_holds_every_generated_structure(structures, make_cho):
    assert (CHO / "cho.extxyz").stat().st_size <= 2 * 1024 * 1024
    names = [a.info["name"] for a in structures]
    assert len(names) == len(set(names)), "structure names must be unique"
    jobs = make_cho.all_jobs()
    assert names == [job.name for job in jobs], "file must hold every generated structure, in order"
    for atoms, job in zip(structures, jobs):
        assert atoms.info["family"] == job.family
        assert atoms.get_chemical_symbols() == job.atoms.get_chemical_symbols()
        np.testing.assert_allclose(atoms.positions, job.atoms.positions, atol=1e-7, err_msg=job.name)


def test_every_structure_has_energy_forces_and_metadata(structures):
    for atoms in structures:
        name = atoms.info["name"]
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        assert math.isfinite(energy), name
        assert forces.shape == (len(atoms), 3), name
        assert np.all(np.isfinite(forces)), name
        # A free molecule: the forces of an exact gradient sum to zero.
        assert np.abs(forces.sum(axis=0)).max() < 1e-3, name
        info = atoms.info
        assert info["energy_unit"] == "kcal/mol"
        assert info["forces_unit"] == "kcal/mol/Angstrom"
        assert info["level_of_theory"] == "B3LYP/6-31G*"
        assert info["run_type"] == "single_point"
        assert info["total_charge"] == 0
        assert info["family"]
        if info["family"] != "molecules":
            assert name.startswith(info["family"] + "_"), name
        assert math.isclose(info["hartree_to_kcal_mol"], HARTREE_TO_KCAL_MOL, rel_tol=0, abs_tol=1e-9)


def test_energies_are_total_energies_in_kcal_per_mol(families):
    # Literature B3LYP/6-31G* total energies (Hartree), loose enough for geometry differences:
    # water about -76.409, methane about -40.518. A wrong unit (eV, Hartree) fails by far.
    by_name = {a.info["name"]: a.get_potential_energy() / HARTREE_TO_KCAL_MOL for a in families["molecules"]}
    assert by_name["water"] == pytest.approx(-76.409, abs=0.01)
    assert by_name["methane"] == pytest.approx(-40.518, abs=0.01)


def scans(families, kind):
    for family, members in sorted(families.items()):
        if f"_{kind}_" in family:
            members = sorted(members, key=lambda a: a.info["coordinate"])
            yield family, members, np.array([a.get_potential_energy() for a in members])


def test_stretch_scans_have_their_minimum_at_equilibrium_and_rise_at_both_ends(families):
    found = 0
    for family, members, energies in scans(families, "stretch"):
        found += 1
        coordinates = np.array([a.info["coordinate"] for a in members])
        equilibrium = members[0].info["equilibrium_value"]
        lowest = int(np.argmin(energies))
        assert abs(coordinates[lowest] - equilibrium) < 0.05 * equilibrium, family
        # Monotonic rise away from the minimum on both sides, and clearly so at the ends.
        assert np.all(np.diff(energies[: lowest + 1]) < 0), family
        assert np.all(np.diff(energies[lowest:]) > 0), family
        assert energies[0] - energies[lowest] > 5.0, family
        assert energies[-1] - energies[lowest] > 30.0, family
    assert found == 5


def test_angle_scans_have_their_minimum_near_equilibrium(families):
    found = 0
    for family, members, energies in scans(families, "angle"):
        found += 1
        coordinates = np.array([a.info["coordinate"] for a in members])
        lowest = int(np.argmin(energies))
        assert abs(coordinates[lowest] - members[0].info["equilibrium_value"]) < 15.0, family
        assert energies[0] > energies[lowest] + 1.0 and energies[-1] > energies[lowest] + 1.0, family
    assert found == 3


def test_stretch_forces_integrate_to_the_energy_change(families, make_cho):
    """Along a rigid stretch, dE/dr = -(sum of forces on the moved side) . bond direction.

    Checked by the trapezoid rule between neighbouring scan points: this ties the force sign and
    units (kcal/mol/Å) to the energies (kcal/mol).
    """
    for family, members, energies in scans(families, "stretch"):
        fixed, moved = (int(k) for k in members[0].info["scan_atoms"])
        side = make_cho.side_of_bond(members[0], fixed, moved)
        generalized = []
        for atoms in members:
            direction = atoms.positions[moved] - atoms.positions[fixed]
            direction /= np.linalg.norm(direction)
            generalized.append(atoms.get_forces()[side].sum(axis=0) @ direction)
        generalized = np.array(generalized)
        r = np.array([a.info["coordinate"] for a in members])
        predicted = -0.5 * (generalized[1:] + generalized[:-1]) * np.diff(r)
        # Trapezoid error grows with curvature; steps are about 0.1 Å.
        np.testing.assert_allclose(np.diff(energies), predicted, rtol=0.15, atol=2.0, err_msg=family)


def test_forces_are_small_at_equilibrium_geometries_and_large_when_rattled(families):
    # G2 geometries (MP2/6-31G*) sit within about 0.02 Å of the B3LYP/6-31G* minima, so their
    # forces are small next to those of copies rattled by 0.05-0.1 Å.
    def largest(atoms):
        return np.abs(atoms.get_forces()).max()

    equilibrium = [largest(a) for a in families["molecules"]]
    rattled = [largest(a) for family, members in families.items() if family.endswith("_rattle") for a in members]
    assert max(equilibrium) < 40.0
    assert np.median(equilibrium) < 10.0
    assert np.median(rattled) > 5 * np.median(equilibrium)


def test_starting_force_field_reads_and_names_the_publication():
    ff = read_ffield(CHO / "ffield_cho")
    assert ff.symbols == ["C", "H", "O"]
    assert "Chenoweth" in ff.title and "1040" in ff.title and "10.1021/jp709896w" in ff.title


def test_params_file_selects_existing_parameters_with_same_sign_bounds_around_them():
    ff = read_ffield(CHO / "ffield_cho")
    specs = read_params(CHO / "params", ff)
    assert 20 <= len(specs) <= 45
    comments = [line.split("!", 1)[1].strip() for line in (CHO / "params").read_text().splitlines() if line.strip()]
    for spec, comment in zip(specs, comments):
        value = get_value(ff, spec)
        assert spec.lower < value < spec.upper, spec.label
        assert spec.lower * spec.upper > 0, f"bounds of {spec.label} change sign"
        assert spec.step > 0
        assert comment.startswith(spec.label + " "), f"comment '{comment}' does not name {spec.label}"


def test_reaxopt_reads_the_dataset_in_kcal_per_mol(structures):
    read_back = read_ase(CHO / "cho.extxyz")
    assert [s.name for s in read_back] == [a.info["name"] for a in structures]
    for structure, atoms in zip(read_back, structures):
        assert structure.energy == pytest.approx(atoms.get_potential_energy(), rel=0, abs=1e-9)
        np.testing.assert_allclose(structure.forces, atoms.get_forces(), rtol=0, atol=1e-9)
        assert structure.total_charge == 0
        assert structure.run_type == "single_point"
        assert structure.cell is None


def test_regenerating_one_structure_reproduces_the_stored_energy_and_forces(structures, make_cho):
    try:
        import pyscf  # noqa: F401
    except ImportError:
        pytest.skip("pyscf is not installed (pip install reaxopt[datasets]); cannot regenerate DFT data")
    stored = {a.info["name"]: a for a in structures}
    for name in ("water", "h2"):
        start = time.perf_counter()
        energy, forces = make_cho.compute(make_cho.job_by_name(name).atoms)
        elapsed = time.perf_counter() - start
        reference = stored[name]
        assert abs(energy - reference.get_potential_energy()) / HARTREE_TO_KCAL_MOL < 1e-6, name
        np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-3, err_msg=name)
        print(f"{name}: regenerated in {elapsed:.1f} s")
