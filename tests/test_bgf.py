"""BGF reader and writer: the published training sets, ReaxFF's cell frame, restraints, errors."""

import math
import re
import warnings

import numpy as np
import pytest
from ase.geometry import get_distances, minkowski_reduce

from reaxopt.errors import InputError
from reaxopt.io.bgf import (cell_parameters, cell_vectors, parse_atom_line, parse_restraint,
                            read_bgf, write_bgf)
from reaxopt.io.geometry import read_geometries
from reaxopt.structure import Structure

GEO_FILES = ["cobalt/geo", "disulfide/geo", "disulfide/valSet/geo"]


def raw_blocks(text):
    """The file's structures as lists of stripped lines, split at END lines (independent of us)."""
    blocks, block = [], []
    for line in text.splitlines():
        line = line.strip()
        if line == "END":
            blocks.append(block)
            block = []
        elif line:
            block.append(line)
    if any(block):
        blocks.append(block)
    return blocks


def expected_run_type(block):
    rutypes = [" ".join(line.split()[1:]) for line in block if line.startswith("RUTYPE")]
    if any(r.startswith("CELL OPT") for r in rutypes):
        return "cell_opt"
    if any(r == "SINGLE POINT" or r == "MAXIT 0" for r in rutypes):
        return "single_point"
    return "minimize"


@pytest.fixture(scope="module")
def geo(shared_datasets):
    """{relative path: (raw text, structures)} for the three published geo files."""
    out = {}
    for rel in GEO_FILES:
        path = shared_datasets / rel
        out[rel] = (path.read_text(), read_bgf(path))
    return out


# ------------------------------------------------------------------------- published datasets


@pytest.mark.parametrize("rel", GEO_FILES)
def test_dataset_counts_match_the_raw_text(geo, rel):
    text, structures = geo[rel]
    lines = [line.strip() for line in text.splitlines()]
    blocks = raw_blocks(text)
    assert len(structures) == sum(line.startswith("DESCRP") for line in lines) == len(blocks)
    assert [s.name for s in structures] == [line.split()[1] for line in lines
                                            if line.startswith("DESCRP")]
    assert sum(s.n_atoms for s in structures) == sum(line.startswith("HETATM") for line in lines)
    assert [s.n_atoms for s in structures] == [sum(x.startswith("HETATM") for x in b)
                                               for b in blocks]
    assert sum(s.periodic for s in structures) == sum(line.startswith("CRYSTX") for line in lines)
    assert [s.run_type for s in structures] == [expected_run_type(b) for b in blocks]
    assert [len(s.extra["rutype"]) for s in structures] == [
        sum(x.startswith("RUTYPE") for x in b) for b in blocks]


def test_dataset_sizes_are_those_published(geo):
    # the three files as the training sets ship them (counted with grep -c DESCRP / CRYSTX)
    assert len(geo["cobalt/geo"][1]) == 147
    assert sum(s.periodic for s in geo["cobalt/geo"][1]) == 136
    assert len(geo["disulfide/geo"][1]) == 232


@pytest.mark.parametrize("rel", GEO_FILES)
def test_dataset_atoms_match_the_raw_text(geo, rel):
    text, structures = geo[rel]
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("HETATM")]
    # in these files the name column is the bare element and the residue columns are blank
    assert [x for s in structures for x in s.symbols] == [r[2] for r in rows]
    expected = np.array([[float(v) for v in r[3:6]] for r in rows])
    np.testing.assert_array_equal(np.concatenate([s.positions for s in structures]), expected)
    charges = [float(r[9]) if len(r) >= 10 else 0.0 for r in rows]
    np.testing.assert_array_equal(np.concatenate([s.extra["bgf_charges"] for s in structures]),
                                  charges)


def test_wide_free_coordinates_keep_every_digit(geo):
    # disulfide/valSet writes some structures with f10.6-like coordinates past the f10.5 columns
    text, structures = geo["disulfide/valSet/geo"]
    wide = [line for line in text.splitlines() if re.match(r"HETATM.{24}\s*\d+\.\d{6}\s", line)]
    assert wide, "expected the wide-coordinate structures in valSet"
    by_name = {s.name: s for s in structures}
    ssgr = by_name["ssgr"]
    np.testing.assert_array_equal(ssgr.positions[2], [52.735720, 53.963400, 47.832520])
    assert ssgr.symbols[:3] == ["S", "S", "C"]
    assert ssgr.extra["ffield_types"][0] is None  # no type column: the element is the atom name


def test_cobalt_energies_run_types_and_kept_keywords(geo):
    text, structures = geo["cobalt/geo"]
    energies = [float(line.split()[1]) for line in text.splitlines() if line.startswith("ENERGY")]
    assert [s.energy for s in structures] == energies  # UNIT ENERGY kcal: no conversion
    by_name = {s.name: s for s in structures}
    assert by_name["Co_3_atom"].run_type == "minimize"
    assert by_name["Co_3_atom"].max_iterations is None
    assert by_name["Co_1_atom"].run_type == "single_point"
    assert by_name["Co_1_atom"].max_iterations == 0
    ac = by_name["hcp_opt_ac"]
    assert ac.run_type == "cell_opt"
    assert ac.extra["cell_opt"] == 3 and ac.extra["endpo"] == 0.05 and ac.extra["maxmov"] == 0
    assert ac.extra["rutype"] == ["ENDPO 0.050", "MAXMOV        0", "CELL OPT     3"]
    assert by_name["Co_3_atom"].extra["conect"] == [(1, 2, 3), (2, 1, 3), (3, 1, 2)]
    assert all(s.total_charge == 0.0 and s.restraints == [] for s in structures)


# ------------------------------------------------------------------------------- cell frame


def shortest_distance(positions, cell):
    """Shortest interatomic distance with periodic images (exact via Minkowski reduction)."""
    reduced, _ = minkowski_reduce(cell)
    shortest = float(np.min(np.linalg.norm(reduced, axis=1)))  # an atom and its own image
    if len(positions) > 1:
        _, d = get_distances(positions, cell=cell, pbc=True)
        np.fill_diagonal(d, np.inf)
        shortest = min(shortest, float(d.min()))
    return shortest


def a_along_x_cell(a, b, c, alpha, beta, gamma):
    """ASE's convention (a along x, b in xy): the wrong frame for ReaxFF files."""
    from ase.geometry import cellpar_to_cell

    return cellpar_to_cell([a, b, c, alpha, beta, gamma])


def crystx(block):
    return [float(v) for v in next(x for x in block if x.startswith("CRYSTX")).split()[1:7]]


def test_cell_frame_gives_physical_distances_in_every_periodic_cobalt_structure(geo):
    text, structures = geo["cobalt/geo"]
    blocks = raw_blocks(text)
    periodic = [(s, b) for s, b in zip(structures, blocks) if s.periodic]
    assert len(periodic) == 136
    wrong, skewed = {}, 0
    for s, block in periodic:
        params = crystx(block)
        np.testing.assert_allclose(cell_parameters(s.cell), params, rtol=1e-12, atol=1e-10)
        d = shortest_distance(s.positions, s.cell)
        # amorphous MD snapshots (orthogonal boxes) come down to 1.72 Å; crystals stay near the
        # bulk Co-Co distance of 2.5 Å (2.29 Å in the most compressed EOS point)
        assert d > 1.7, f"{s.name}: shortest Co-Co distance {d:.3f} Å"
        if params[3:] != [90.0, 90.0, 90.0]:
            skewed += 1
            assert d > 2.2, f"{s.name}: shortest Co-Co distance {d:.3f} Å in a skewed cell"
        wrong[s.name] = shortest_distance(s.positions, a_along_x_cell(*params))
    assert skewed >= 20
    # the a-along-x frame puts atoms nearly on top of each other in non-orthogonal cells
    assert min(wrong.values()) < 1.0, wrong
    assert sum(w < 1.6 for w in wrong.values()) >= 3


def test_hcp_equation_of_state_nearest_neighbours(geo):
    """2-atom hcp cells: the nearest neighbour is min(a, sqrt(a²/3 + c²/4)) for ideal sites."""
    text, structures = geo["cobalt/geo"]
    checked = 0
    for s, block in zip(structures, raw_blocks(text)):
        if not s.periodic or s.n_atoms != 2:
            continue
        a, b, c, alpha, beta, gamma = crystx(block)
        if not (a == b and alpha == beta == 90.0 and gamma == 120.0):
            continue
        expected = min(a, math.sqrt(a * a / 3 + c * c / 4))
        assert shortest_distance(s.positions, s.cell) == pytest.approx(expected, rel=0.01)
        assert shortest_distance(s.positions, a_along_x_cell(a, b, c, alpha, beta, gamma)) < \
            0.95 * expected
        checked += 1
    assert checked >= 12  # EOS_hcp_1..12 and the two hcp_opt cells


def test_cell_vectors_have_the_stated_lengths_and_angles():
    cell = cell_vectors(2.5, 2.6, 4.1, 84.0, 87.0, 60.0)
    assert cell[2, 0] == cell[2, 1] == cell[1, 0] == 0.0  # c along z, b in the yz plane
    np.testing.assert_allclose(cell_parameters(cell), [2.5, 2.6, 4.1, 84.0, 87.0, 60.0],
                               rtol=1e-13)
    assert np.linalg.det(cell) > 0
    np.testing.assert_array_equal(cell_vectors(3, 4, 5, 90, 90, 90), np.diag([3.0, 4.0, 5.0]))


# ---------------------------------------------------------------------------- small files

HEAD = """BIOGRF 200
DESCRP {name}
RUTYPE SINGLE POINT
"""
ATOMS = """HETATM     1 O                   0.00000   0.00000   0.11779 O      1 0 -0.80000
HETATM     2 H                   0.00000   0.75545  -0.47116 H_     1 0  0.40000
HETATM     3 H                   0.00000  -0.75545  -0.47116 H_     1 0  0.40000
"""


ATOMS4 = ATOMS + ("HETATM     4 H                   1.00000   1.00000   1.00000 H_     1 0"
                  "  0.00000\n")


def bgf(tmp_path, text, name="t.bgf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_restraints_and_molcharge(tmp_path):
    text = (HEAD.format(name="water") + "MOLCHARGE   1   2  -1.00\nMOLCHARGE   3   4   0.00\n"
            "BOND RESTRAINT   1   2  1.0000 7500.00  0.2500  0.0000500    1000    2000\n"
            "ANGLE RESTRAINT   2   1   3 104.50  250.00  1.0000 0.000000\n"
            "TORSION RESTRAINT   1   2   3   4 180.00  100.00  0.5000 0.100000\n"
            "BOND RESTRAINT 2 3 1.6 500 0.1\n" + ATOMS4 + "END\n")
    (s,) = read_bgf(bgf(tmp_path, text))
    assert s.total_charge == -1.0
    assert s.extra["molcharge"] == [(0, 1, -1.0), (2, 3, 0.0)]
    assert s.n_atoms == 4
    bond, angle, torsion, bond2 = s.restraints
    assert (bond.kind, bond.atoms, bond.target, bond.force1, bond.force2, bond.rate, bond.line) == \
        ("bond", (0, 1), 1.0, 7500.0, 0.25, 0.00005, 6)
    assert s.extra["restraint_windows"] == {0: (1000, 2000)}
    assert (angle.kind, angle.atoms, angle.target, angle.force1, angle.force2, angle.rate) == \
        ("angle", (1, 0, 2), 104.5, 250.0, 1.0, 0.0)
    assert (torsion.kind, torsion.atoms, torsion.target, torsion.force1, torsion.force2,
            torsion.rate, torsion.line) == ("torsion", (0, 1, 2, 3), 180.0, 100.0, 0.5, 0.1, 8)
    assert (bond2.atoms, bond2.target, bond2.force1, bond2.force2, bond2.rate) == \
        ((1, 2), 1.6, 500.0, 0.1, 0.0)
    assert s.symbols == ["O", "H", "H", "H"]
    np.testing.assert_array_equal(s.extra["bgf_charges"], [-0.8, 0.4, 0.4, 0.0])


def test_atom_lines_in_columns_free_format_and_run_together():
    name, ftype, xyz, q = parse_atom_line(
        "HETATM     7 X1   RES A  444   1.00000  -2.00000   3.50000 Co     1 0  0.25000")
    assert (name, ftype, q) == ("X1", "Co", 0.25)
    np.testing.assert_array_equal(xyz, [1.0, -2.0, 3.5])
    # f10.5 numbers that fill their columns run together: read from columns 31-60
    line = "HETATM     1 C".ljust(30) + "-100.12345-200.54321 300.00001 C_R    3 0 -0.04750"
    _, _, xyz, _ = parse_atom_line(line)
    np.testing.assert_array_equal(xyz, [-100.12345, -200.54321, 300.00001])
    name, ftype, xyz, q = parse_atom_line("HETATM 3 S 0.5 1.5 -2.25 S_3 1 0 -0.1")
    assert (name, ftype, q) == ("S", "S_3", -0.1)
    np.testing.assert_array_equal(xyz, [0.5, 1.5, -2.25])
    with pytest.raises(ValueError, match="three coordinates"):
        parse_atom_line("HETATM     1 C                   1.00000   2.00000")


def test_element_comes_from_the_type_column_before_the_name(tmp_path):
    text = HEAD.format(name="t") + (
        "HETATM     1 X1                  0.00000   0.00000   0.00000 Co     1 0  0.00000\n"
        "HETATM     2 C12                 1.00000   0.00000   0.00000 S_3    1 0  0.00000\n"
        "HETATM     3 C12                 2.00000   0.00000   0.00000\n"
        "HETATM     4 Co                  3.00000   0.00000   0.00000\n") + "END\n"
    (s,) = read_bgf(bgf(tmp_path, text))
    assert s.symbols == ["Co", "S", "C", "Co"]
    assert s.extra["ffield_types"] == ["Co", "S_3", None, None]
    assert s.extra["atom_names"] == ["X1", "C12", "C12", "Co"]


def test_restraint_in_fixed_columns_with_run_together_atoms():
    # the manual's layout (15x,2i4,f8.4,f8.2,f8.5,f10.7): four-digit atoms leave no blank
    body = " " + "1001" + "1002" + "  1.5000" + " 7500.00" + " 0.25000" + " 0.0000000"
    r, window = parse_restraint("BOND RESTRAINT", body)
    assert (r.atoms, r.target, r.force1, r.force2, r.rate) == ((1001, 1002), 1.5, 7500.0, 0.25, 0.0)
    assert window is None


def test_vchange_repeats_the_previous_cell_rescaled(tmp_path):
    text = ("XTLGRF 200\nDESCRP fcc_1\nRUTYPE SINGLE POINT\n"
            "CRYSTX     4.50640    4.50640    4.50640   90.00000   90.00000   90.00000\n"
            "HETATM     1 Pt                  0.00000   0.00000   0.00000 Pt     1 1  0.00000\n"
            "HETATM     2 Pt                  2.25138   2.25138   0.00000 Pt     1 1  0.00000\n"
            "END\n\nXTLGRF 200\nDESCRP fcc_2\nREMARK 80% volume\nVCHANGE 0.80\nEND\n")
    first, second = read_bgf(bgf(tmp_path, text))
    assert second.name == "fcc_2" and second.symbols == ["Pt", "Pt"]
    assert np.linalg.det(second.cell) == pytest.approx(0.8 * np.linalg.det(first.cell), rel=1e-14)
    np.testing.assert_allclose(np.linalg.solve(second.cell.T, second.positions.T),
                               np.linalg.solve(first.cell.T, first.positions.T), atol=1e-14)
    assert second.run_type == "single_point"
    assert (second.extra["vchange"], second.extra["vchange_of"]) == (0.8, "fcc_1")
    bad = bgf(tmp_path, HEAD.format(name="mol") + ATOMS + "END\nBIOGRF 200\nDESCRP v\n"
              "VCHANGE 0.9\nEND\n", name="bad.bgf")
    with pytest.raises(InputError, match="VCHANGE in structure 'v' needs a periodic") as err:
        read_bgf(bad)
    assert err.value.line == 10


def test_axes_other_than_zyx_is_refused(tmp_path):
    ok = HEAD.format(name="w") + "AXES ZYX\nFFIELD ffield.reax\n" + ATOMS + "END\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (s,) = read_bgf(bgf(tmp_path, ok))
    assert (s.extra["axes"], s.extra["ffield"]) == ("ZYX", "ffield.reax")
    bad = bgf(tmp_path, HEAD.format(name="w") + "AXES XYZ\n" + ATOMS + "END\n", name="b.bgf")
    with pytest.raises(InputError, match="AXES XYZ is not supported") as err:
        read_bgf(bad)
    assert err.value.line == 4


def test_unknown_keyword_warns_and_is_kept(tmp_path):
    text = HEAD.format(name="w") + "FIXATOMS     1     2\n" + ATOMS + "END\n"
    with pytest.warns(UserWarning, match=r"line 4: unknown BGF keyword 'FIXATOMS'"):
        (s,) = read_bgf(bgf(tmp_path, text))
    assert s.extra["other"] == ["FIXATOMS     1     2"]


def test_energy_units_are_converted_to_kcal_per_mol(tmp_path):
    from ase import units

    text = "".join(HEAD.format(name=f"w{u}") + ATOMS + f"UNIT ENERGY {u}\nENERGY -2.5\nEND\n"
                   for u in ("kcal", "eV", "kJ"))
    kcal, ev, kj = read_bgf(bgf(tmp_path, text))
    assert kcal.energy == -2.5
    assert ev.energy == pytest.approx(-2.5 / (units.kcal / units.mol), rel=1e-15)
    assert kj.energy == pytest.approx(-2.5 / 4.184, rel=1e-15)


def test_comments_blank_lines_and_a_final_structure_without_end(tmp_path):
    text = "# a comment\n\n" + HEAD.format(name="a") + ATOMS + "END\n\n" + \
        HEAD.format(name="b") + ATOMS
    a, b = read_bgf(bgf(tmp_path, text))
    assert (a.name, a.line, b.name, b.line, b.n_atoms) == ("a", 3, "b", 11, 3)


def test_rutype_maxit_and_default(tmp_path):
    text = (HEAD.replace("RUTYPE SINGLE POINT\n", "RUTYPE MAXIT    25\n").format(name="m")
            + ATOMS + "END\n" + "BIOGRF 200\nDESCRP d\n" + ATOMS + "END\n")
    m, d = read_bgf(bgf(tmp_path, text))
    assert (m.run_type, m.max_iterations) == ("minimize", 25)
    assert (d.run_type, d.max_iterations) == ("minimize", None)


BAD = [
    ("HETATM     2 H                   0.00000   abc       -0.47116 H_     1 0  0.40000\n",
     5, "cannot read the atom line"),
    ("CRYSTX    10.00000   10.00000   10.00000   90.00000   90.00000\n", 4, "CRYSTX needs 6"),
    ("CRYSTX    10.00000  -10.00000   10.00000   90.00000   90.00000   90.00000\n", 4,
     "cell lengths must be positive"),
    ("CRYSTX    10.00000   10.00000   10.00000   10.00000   10.00000  170.00000\n", 4,
     "do not make a cell"),
    ("CRYSTX    10.00000   10.00000   10.00000  190.00000   90.00000   90.00000\n", 4,
     "strictly between 0 and 180"),
    ("BOND RESTRAINT   1   x  1.0000 7500.00  0.2500  0.0000000\n", 4,
     "cannot read the BOND RESTRAINT line"),
    ("ANGLE RESTRAINT   1   2   7 104.50  250.00  1.0000 0.000000\n", 4,
     "angle restraint names atom 7 but structure 'w' has 3 atoms"),
    ("ENERGY  abc\n", 4, "ENERGY needs a number"),
    ("RUTYPE MAXIT -3\n", 4, "non-negative iteration count"),
    ("MOLCHARGE   1  9  1.0\n", 4, "outside the atoms 1..3 of structure 'w'"),
    ("MOLCHARGE   1  2  1.0\n", 4, "in exactly one group (as ReaxFF requires); atom 3 is in 0"),
    ("UNIT ENERGY furlong\nENERGY 1.0\n", 4, "unknown energy unit 'furlong'"),
]


@pytest.mark.parametrize("line, number, message", BAD)
def test_malformed_lines_raise_with_the_line_number(tmp_path, line, number, message):
    if line.startswith("HETATM"):
        text = HEAD.format(name="w") + ATOMS.splitlines(keepends=True)[0] + line + "END\n"
    else:
        text = HEAD.format(name="w") + line + ATOMS + "END\n"
    path = bgf(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_bgf(path)
    assert err.value.line == number
    assert err.value.file == str(path)
    assert message in err.value.message


def test_structure_without_atoms(tmp_path):
    path = bgf(tmp_path, HEAD.format(name="a") + ATOMS + "END\n" + HEAD.format(name="b") + "END\n")
    with pytest.raises(InputError, match="structure 'b' has no atoms") as err:
        read_bgf(path)
    assert err.value.line == 11


def test_file_ending_before_any_atom(tmp_path):
    path = bgf(tmp_path, HEAD.format(name="a") + ATOMS + "END\n" + HEAD.format(name="b"))
    with pytest.raises(InputError, match="ends inside structure 'b'"):
        read_bgf(path)


def test_missing_end_between_structures(tmp_path):
    path = bgf(tmp_path, HEAD.format(name="a") + ATOMS + HEAD.format(name="b") + ATOMS + "END\n")
    with pytest.raises(InputError, match="before the END of structure 'a'") as err:
        read_bgf(path)
    assert err.value.line == 7


def test_duplicate_names_name_both_lines(tmp_path):
    path = bgf(tmp_path, (HEAD.format(name="same") + ATOMS + "END\n") * 2)
    with pytest.raises(InputError) as err:
        read_bgf(path)
    assert "'same' is used twice, on lines 2 and 9" in err.value.message
    assert err.value.line == 9


def test_made_up_names_may_not_clash(tmp_path):
    text = "BIOGRF 200\n" + ATOMS + "END\n" + HEAD.format(name="t_0") + ATOMS + "END\n"
    with pytest.raises(InputError, match="'t_0' is used twice, by the structures on lines 1 and 6"):
        read_bgf(bgf(tmp_path, text))


# ------------------------------------------------------------------------------- round trip


def assert_same(a: Structure, b: Structure, extra=True):
    assert (a.name, a.symbols, a.total_charge, a.run_type, a.max_iterations) == \
        (b.name, b.symbols, b.total_charge, b.run_type, b.max_iterations)
    np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-12)
    assert (a.cell is None) == (b.cell is None)
    if a.cell is not None:
        np.testing.assert_allclose(a.cell, b.cell, rtol=0, atol=1e-12)
    assert a.energy == pytest.approx(b.energy, rel=1e-14, abs=0) if a.energy is not None \
        else b.energy is None
    assert [(r.kind, r.atoms, r.target, r.force1, r.force2, r.rate) for r in a.restraints] == \
        [(r.kind, r.atoms, r.target, r.force1, r.force2, r.rate) for r in b.restraints]
    if extra:
        assert a.extra.keys() == b.extra.keys()
        for key in a.extra:
            if key == "bgf_charges":
                np.testing.assert_array_equal(a.extra[key], b.extra[key])
            else:
                assert a.extra[key] == b.extra[key], key


@pytest.mark.parametrize("rel", GEO_FILES)
def test_write_then_read_gives_the_same_structures(geo, rel, tmp_path):
    structures = geo[rel][1]
    out = tmp_path / "out.bgf"
    write_bgf(structures, out)
    again = read_bgf(out)
    assert len(again) == len(structures)
    for a, b in zip(structures, again):
        assert_same(a, b)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed


def test_round_trip_of_restraints_charge_and_other_lines(tmp_path):
    text = (HEAD.format(name="water") + "MOLCHARGE   1   4   1.00\nFIXATOMS 1 2\n"
            "BOND RESTRAINT   1   2  1.0000 7500.00  0.2500  0.0000500    1000    2000\n"
            "TORSION RESTRAINT   1   2   3   4 180.00  100.00  0.5000 0.100000\n" + ATOMS4
            + "UNIT ENERGY eV\nENERGY -3.14159\nEND\n")
    with pytest.warns(UserWarning, match="FIXATOMS"):
        (s,) = read_bgf(bgf(tmp_path, text))
        write_bgf([s], tmp_path / "again.bgf")
        (t,) = read_bgf(tmp_path / "again.bgf")
    assert_same(s, t)
    assert t.extra["restraint_windows"] == {0: (1000, 2000)}


def test_write_turns_an_ase_cell_into_the_reaxff_frame(tmp_path):
    rng = np.random.default_rng(1)
    cell = a_along_x_cell(3.1, 3.4, 5.2, 70.0, 80.0, 65.0)
    positions = rng.random((4, 3)) @ cell
    s = Structure("tri", ["Co"] * 4, positions, cell=cell, energy=-12.3456789012345,
                  total_charge=0.5, run_type="minimize", max_iterations=40)
    write_bgf([s], tmp_path / "tri.bgf")
    (t,) = read_bgf(tmp_path / "tri.bgf")
    np.testing.assert_allclose(cell_parameters(t.cell), cell_parameters(cell), rtol=1e-12)
    rotation = np.linalg.solve(cell, t.cell)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(t.positions, positions @ rotation, atol=1e-12)
    _, d0 = get_distances(positions, cell=cell, pbc=True)
    _, d1 = get_distances(t.positions, cell=t.cell, pbc=True)
    np.testing.assert_allclose(d1, d0, atol=1e-12)
    assert (t.energy, t.total_charge, t.run_type, t.max_iterations) == \
        (s.energy, 0.5, "minimize", 40)


def test_write_keeps_coordinates_that_do_not_fit_f10_5(tmp_path):
    positions = np.array([[0.0, -1234.5, -100.0], [0.7400000001, -123.45678, 0.0],
                          [12345.6, -99999.123456, 1.0 / 3.0]])
    s = Structure("wide", ["H", "Co", "C"], positions, run_type="minimize", max_iterations=12)
    write_bgf([s], tmp_path / "wide.bgf")
    (t,) = read_bgf(tmp_path / "wide.bgf")
    np.testing.assert_array_equal(t.positions, positions)
    assert (t.symbols, t.run_type, t.max_iterations) == (["H", "Co", "C"], "minimize", 12)


def test_write_in_reaxff_columns_rounds_to_five_decimals(tmp_path):
    positions = np.array([[0.123456789, -1.0 / 3.0, 2.0], [1.5, 2.5, 3.5]])
    s = Structure("cols", ["H", "H"], positions, cell=np.diag([10.0, 11.0, 12.123456789]))
    write_bgf([s], tmp_path / "cols.bgf", exact=False)
    atom_lines = [x for x in (tmp_path / "cols.bgf").read_text().splitlines()
                  if x.startswith("HETATM")]
    assert atom_lines[0][30:60] == "   0.12346  -0.33333   2.00000"
    (t,) = read_bgf(tmp_path / "cols.bgf")
    np.testing.assert_allclose(t.positions, positions, atol=5e-6, rtol=0)
    assert t.cell[2, 2] == 12.12346


def test_write_refuses_repeated_names(tmp_path):
    s = Structure("same", ["H"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="unique"):
        write_bgf([s, s], tmp_path / "x.bgf")


def test_read_geometries_dispatches_bgf(tmp_path, shared_datasets):
    odd = bgf(tmp_path, "\n\n" + HEAD.format(name="w") + ATOMS + "END\n", name="water.txt")
    assert [s.name for s in read_geometries(odd)] == ["w"]
    assert len(read_geometries(shared_datasets / "disulfide" / "geo")) == 232
    with pytest.raises(InputError, match="apply to ASE-read files"):
        read_geometries(odd, energy_unit="eV")
    with pytest.raises(InputError, match="geometry file not found"):
        read_geometries(tmp_path / "missing.bgf")


def test_dataset_reads_without_warnings(shared_datasets):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rel in GEO_FILES:
            read_bgf(shared_datasets / rel)
