"""ASE-read geometries: units, cells, reference data, names and errors."""

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from reaxopt.errors import InputError
from reaxopt.io.ase_io import energy_unit_factor, read_ase
from reaxopt.io.geometry import read_geometries

KCAL_MOL_PER_EV = 1.0 / (units.kcal / units.mol)


def water(energy=None, forces=None, **info):
    atoms = molecule("H2O")
    if energy is not None:
        atoms.info["energy"] = energy
    if forces is not None:
        atoms.arrays["forces"] = np.asarray(forces, dtype=float)
    atoms.info.update(info)
    return atoms


FORCES = np.array([[0.1, -0.2, 0.3], [-0.05, 0.15, -0.25], [0.0, 0.05, -0.05]])


def test_energy_unit_factors_follow_ase_units():
    assert energy_unit_factor("eV") == KCAL_MOL_PER_EV
    assert KCAL_MOL_PER_EV == pytest.approx(23.0605, rel=1e-5)
    assert energy_unit_factor("kcal/mol") == 1.0
    hartree = units.Hartree * KCAL_MOL_PER_EV
    assert energy_unit_factor("Hartree") == pytest.approx(hartree, rel=1e-15)
    assert energy_unit_factor("Hartree") == pytest.approx(627.5095, rel=1e-6)
    assert energy_unit_factor("kJ/mol") == pytest.approx(1 / 4.184, rel=1e-15)
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        energy_unit_factor("furlong")


def test_ev_energy_and_forces_are_converted(tmp_path):
    path = tmp_path / "w.extxyz"
    ase.io.write(path, [water(-14.2, FORCES), water(-14.0, 2 * FORCES)])
    a, b = read_ase(path)
    assert a.energy == pytest.approx(-14.2 * KCAL_MOL_PER_EV, rel=1e-15)
    assert b.energy == pytest.approx(-14.0 * KCAL_MOL_PER_EV, rel=1e-15)
    np.testing.assert_allclose(a.forces, FORCES * KCAL_MOL_PER_EV, rtol=1e-15)
    np.testing.assert_allclose(b.forces, 2 * FORCES * KCAL_MOL_PER_EV, rtol=1e-15)
    np.testing.assert_allclose(a.positions, molecule("H2O").positions, atol=1e-8)
    assert a.symbols == ["O", "H", "H"]
    assert (a.cell, a.run_type, a.total_charge, a.charges) == (None, "single_point", 0.0, None)
    assert (a.name, b.name) == ("w_0", "w_1")
    assert a.source == str(path)


def test_kcal_per_mol_from_the_file_and_from_the_argument(tmp_path):
    path = tmp_path / "k.extxyz"
    ase.io.write(path, water(-300.5, FORCES, energy_unit="kcal/mol"))
    (s,) = read_ase(path)
    assert s.energy == -300.5
    np.testing.assert_allclose(s.forces, FORCES, rtol=1e-15)
    # the argument wins over the file's key
    (h,) = read_ase(path, energy_unit="Hartree")
    assert h.energy == pytest.approx(-300.5 * units.Hartree * KCAL_MOL_PER_EV, rel=1e-15)
    plain = tmp_path / "p.extxyz"
    ase.io.write(plain, water(-1.5, units="kJ/mol"))
    (k,) = read_ase(plain)
    assert k.energy == pytest.approx(-1.5 / 4.184, rel=1e-15)
    (k2,) = read_ase(plain, energy_unit="kcal/mol")
    assert k2.energy == -1.5


def test_forces_unit_key(tmp_path):
    path = tmp_path / "f.extxyz"
    ase.io.write(path, water(-0.5, FORCES, energy_unit="Hartree", forces_unit="Hartree/Bohr"))
    (s,) = read_ase(path)
    hartree = units.Hartree * KCAL_MOL_PER_EV
    assert s.energy == pytest.approx(-0.5 * hartree, rel=1e-15)
    np.testing.assert_allclose(s.forces, FORCES * hartree / units.Bohr, rtol=1e-15)
    ase.io.write(path, water(-0.5, FORCES, forces_unit="kcal/mol/Angstrom"))
    (t,) = read_ase(path)
    assert t.energy == pytest.approx(-0.5 * KCAL_MOL_PER_EV, rel=1e-15)
    np.testing.assert_allclose(t.forces, FORCES, rtol=1e-15)
    ase.io.write(path, water(-0.5, FORCES, forces_unit="eV/parsec"))
    with pytest.raises(InputError, match="unknown force unit 'eV/parsec'") as err:
        read_ase(path)
    assert err.value.key == "forces_unit"


def test_reference_keys_other_than_energy(tmp_path):
    atoms = water()
    atoms.info["REF_energy"] = -2.0
    atoms.arrays["REF_forces"] = FORCES
    path = tmp_path / "ref.extxyz"
    ase.io.write(path, atoms)
    (s,) = read_ase(path)
    assert s.energy == pytest.approx(-2.0 * KCAL_MOL_PER_EV, rel=1e-15)
    np.testing.assert_allclose(s.forces, FORCES * KCAL_MOL_PER_EV, rtol=1e-15)
    atoms = water()
    atoms.info["dft_energy"] = 0.25
    ase.io.write(path, atoms)
    assert read_ase(path)[0].energy == pytest.approx(0.25 * KCAL_MOL_PER_EV, rel=1e-15)


def test_periodic_cell_rows(tmp_path):
    atoms = bulk("Co", "hcp", a=2.507, c=4.07) * (2, 1, 1)
    atoms.info["energy"] = -10.0
    path = tmp_path / "co.extxyz"
    ase.io.write(path, atoms)
    (s,) = read_ase(path)
    np.testing.assert_allclose(s.cell, atoms.cell[:], rtol=1e-12, atol=1e-12)
    assert s.cell[0, 1] == pytest.approx(0.0) and s.cell[1, 1] > 0  # ASE's a along x, as given
    np.testing.assert_allclose(s.positions, atoms.positions, atol=1e-8)
    assert s.periodic and s.n_atoms == 4 and "pbc" not in s.extra


def test_charges_and_total_charge(tmp_path):
    atoms = water(charge=-1)
    atoms.arrays["charges"] = np.array([-0.8, -0.1, -0.1])
    path = tmp_path / "q.extxyz"
    ase.io.write(path, atoms)
    (s,) = read_ase(path)
    np.testing.assert_allclose(s.charges, [-0.8, -0.1, -0.1])
    assert s.total_charge == -1.0
    init = water(total_charge=1.0)
    init.set_initial_charges([0.5, 0.25, 0.25])
    ase.io.write(path, init)
    (t,) = read_ase(path)
    np.testing.assert_allclose(t.charges, [0.5, 0.25, 0.25])
    assert t.total_charge == 1.0


def test_single_point_calculator_results(tmp_path):
    atoms = water()
    atoms.calc = SinglePointCalculator(atoms, energy=-5.0, forces=FORCES)
    path = tmp_path / "w.traj"
    ase.io.write(path, atoms)
    (s,) = read_ase(path)
    assert s.energy == pytest.approx(-5.0 * KCAL_MOL_PER_EV, rel=1e-15)
    np.testing.assert_allclose(s.forces, FORCES * KCAL_MOL_PER_EV, rtol=1e-15)


def test_names_run_type_and_index(tmp_path):
    frames = [water(name="a"), water(name="a"), water(config_type="dimer"), water(),
              water(run_type="minimize", max_iterations=50)]
    path = tmp_path / "names.extxyz"
    ase.io.write(path, frames)
    structures = read_ase(path)
    assert [s.name for s in structures] == ["a", "a_1", "dimer_2", "names_3", "names_4"]
    assert [s.run_type for s in structures] == ["single_point"] * 4 + ["minimize"]
    assert structures[4].max_iterations == 50
    assert [s.name for s in read_ase(path, index="1:3")] == ["a", "dimer_1"]


def test_errors(tmp_path):
    with pytest.raises(InputError, match="geometry file not found"):
        read_ase(tmp_path / "missing.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is\nnot an xyz file\n")
    with pytest.raises(InputError, match="ASE cannot read this geometry file") as err:
        read_ase(garbage)
    assert err.value.file == str(garbage)
    assert "\n" not in err.value.message
    path = tmp_path / "w.extxyz"
    ase.io.write(path, water(-1.0))
    with pytest.raises(InputError, match="unknown energy unit 'furlong'") as err:
        read_ase(path, energy_unit="furlong")
    assert err.value.key == "energy_unit"
    ase.io.write(path, water(-1.0, units="Rydberg"))
    with pytest.raises(InputError, match="unknown energy unit 'Rydberg'") as err:
        read_ase(path)
    assert err.value.key == "units"
    ase.io.write(path, water(run_type="md"))
    with pytest.raises(InputError, match="run_type 'md'") as err:
        read_ase(path)
    assert err.value.key == "run_type"


def test_read_geometries_dispatches_to_ase(tmp_path):
    path = tmp_path / "w.extxyz"
    ase.io.write(path, water(-1.0))
    (s,) = read_geometries(path, energy_unit="kcal/mol")
    assert s.energy == -1.0
    xyz = tmp_path / "plain.xyz"
    xyz.write_text("1\ncomment\nCo 0 0 0\n")
    (p,) = read_geometries(xyz)
    assert p.symbols == ["Co"] and p.energy is None


def test_partial_pbc_keeps_the_cell_and_notes_it(tmp_path):
    atoms = Atoms("Co2", positions=[[0, 0, 0], [1.2, 1.2, 1.2]], cell=[5, 5, 20],
                  pbc=[True, True, False])
    path = tmp_path / "slab.extxyz"
    ase.io.write(path, atoms)
    (s,) = read_ase(path)
    np.testing.assert_allclose(s.cell, np.diag([5.0, 5.0, 20.0]))
    assert s.extra["pbc"] == [True, True, False]
