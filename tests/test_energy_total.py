"""End to end against LAMMPS: 12 terms, energy, forces and charges via evaluate_structures.

Each force field's structures go through one ``evaluate_structures`` call, which groups them
into one padded shape (one compilation). The cho and cobalt groups run by default; the other
force fields are marked slow (each costs a compilation of the full energy).
"""

import json

import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from nonbonded_cases import lammps_cases, lammps_reference
from reaxopt.evaluate import evaluate_structures, evaluate_to_jsonl
from reaxopt.io.geometry import read_geometries
from reaxopt.energy.total import TERMS

GROUPS = {
    "cho": ["cho_molecule", "cho_cation", "cho_triclinic", "cho_rotated_cell"],
    "cobalt": ["cobalt_hcp_opt", "cobalt_Elast_diam_c11", "cobalt_EOS_sc_4", "cobalt_Co_8_atom"],
    "lg": ["lg_molecule", "lg_orthorhombic"],
    "ab": ["ab_molecule", "ab_small_cell"],
    "inner_wall": ["inner_wall_molecule"],
    "ci_ch": ["ci_ch_molecule"],
    "mattsson": ["mattsson_molecule"],
    "disulfide": ["disulfide_dmteBase", "disulfide_dmds"],
    "cobalt_slab": ["cobalt_Surf_adatom_fcc111"],
}
@pytest.fixture(scope="module")
def cases(shared_datasets, tmp_path_factory):
    return {c[0]: c for c in lammps_cases(shared_datasets, tmp_path_factory.mktemp("ffields"))}


@pytest.mark.parametrize("group", list(GROUPS))
def test_terms_energy_forces_and_charges_match_lammps(cases, group):
    names = GROUPS[group]
    ffield = cases[names[0]][1]
    structures = [cases[name][2] for name in names]
    results = evaluate_structures(ffield, structures)
    failures, largest_force = [], 0.0
    for name, structure, ours in zip(names, structures, results):
        reference = lammps_reference(*cases[name])
        assert ours["name"] == structure.name
        for term in TERMS:
            a, b = ours["terms"][term], reference["terms"][term]
            if not abs(a - b) <= max(1e-6, 1e-8 * abs(b)):
                failures.append(f"{name} {term}: ours {a!r} LAMMPS {b!r}")
        if not abs(ours["energy"] - reference["energy"]) <= max(1e-6,
                                                               1e-8 * abs(reference["energy"])):
            failures.append(f"{name} energy: ours {ours['energy']!r} "
                            f"LAMMPS {reference['energy']!r}")
        force_deviation = np.max(np.abs(ours["forces"] - reference["forces"]))
        if not force_deviation <= 1e-5:  # NaN fails too
            failures.append(f"{name} forces deviate by {force_deviation:.3g} kcal/mol/Å")
        charge_deviation = np.max(np.abs(ours["charges"] - reference["charges"]))
        if not charge_deviation <= 1e-7:
            failures.append(f"{name} charges deviate by {charge_deviation:.3g} e")
        assert ours["forces"].shape == (structure.n_atoms, 3)
        largest_force = max(largest_force, np.max(np.abs(reference["forces"])))
    assert not failures, "\n".join(failures)
    assert largest_force > 1.0  # the force comparison is not vacuous


@pytest.mark.slow
def test_evaluate_to_jsonl_writes_one_line_per_structure(cases, tmp_path):
    from ase import Atoms
    from ase.io import write

    names = ["cho_molecule", "cho_triclinic"]
    structures = [cases[name][2] for name in names]
    atoms = [Atoms(s.symbols, positions=s.positions, cell=s.cell, pbc=s.cell is not None)
             for s in structures]
    geo = tmp_path / "two.xyz"
    write(geo, atoms, format="extxyz")
    out = tmp_path / "out.jsonl"
    assert evaluate_to_jsonl(cases[names[0]][1], geo, out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2
    # the same numbers as evaluate_structures on what the file holds (same shapes: no recompile)
    direct = evaluate_structures(cases[names[0]][1], read_geometries(geo))
    for line, ours, name in zip(lines, direct, names):
        assert set(line) == {"name", "energy", "terms", "forces", "charges"}
        assert line["energy"] == ours["energy"]
        assert line["terms"] == ours["terms"]
        np.testing.assert_array_equal(line["forces"], ours["forces"])
        np.testing.assert_array_equal(line["charges"], ours["charges"])
        # and LAMMPS's, up to the file's 1e-8 Å rounding of the positions
        reference = lammps_reference(*cases[name])
        assert line["energy"] == pytest.approx(reference["energy"], abs=1e-4)
        np.testing.assert_allclose(line["forces"], reference["forces"], atol=1e-3)


@pytest.mark.slow
def test_batched_evaluation_matches_one_by_one(cases):
    from reaxopt.evaluate import (batched_energy_forces_charges, build_system, pad_system,
                                  shared_sizes, stack_systems)
    from nonbonded_cases import forcefield

    names = GROUPS["cho"]
    ffield = cases[names[0]][1]
    structures = [cases[name][2] for name in names]
    params, topology = forcefield(ffield)
    built = [build_system(s, params, topology) for s in structures]
    sizes = shared_sizes([b[1] for b in built])
    positions, systems = stack_systems([pad_system(*b, sizes) for b in built])
    energy, terms, forces, charges = batched_energy_forces_charges(positions, systems, params,
                                                                   topology=topology)
    for k, name in enumerate(names):
        reference = lammps_reference(*cases[name])
        n = structures[k].n_atoms
        assert float(energy[k]) == pytest.approx(reference["energy"], abs=1e-6)
        np.testing.assert_allclose(np.asarray(forces[k])[:n], reference["forces"], atol=1e-5)
        np.testing.assert_allclose(np.asarray(charges[k])[:n], reference["charges"], atol=1e-7)


def test_padded_sizes_are_few_and_waste_at_most_a_quarter():
    from reaxopt.evaluate import atom_bucket, padded_size

    sizes = {padded_size(n) for n in range(1, 5000)}
    assert len(sizes) < 40
    for n in range(8, 5000):
        assert n <= padded_size(n) <= 1.25 * n
    assert [atom_bucket(n) for n in (1, 8, 9, 16, 17, 108)] == [8, 8, 16, 16, 32, 128]


def test_unknown_element_is_an_input_error(cases):
    from reaxopt.errors import InputError
    from reaxopt.evaluate import build_system
    from reaxopt.structure import Structure
    from nonbonded_cases import forcefield

    params, topology = forcefield(cases["cho_molecule"][1])
    bad = Structure(name="gold", symbols=["Au", "H"], positions=np.array([[0, 0, 0],
                                                                           [1.5, 0, 0.0]]))
    with pytest.raises(InputError, match="Au"):
        build_system(bad, params, topology)
