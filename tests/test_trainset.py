"""trainset.in reader: every published item parsed and typed, names match the geo files, errors."""

import math
import re
import warnings

import pytest

from reaxopt.errors import InputError
from reaxopt.io.trainset import (CellItem, ChargeItem, EnergyItem, EnergyTerm, ForceItem,
                                 GeometryItem, HeatfoItem, TrainingSet, check_names,
                                 parse_trainset, read_trainset)

PUBLISHED = ("cobalt", "disulfide", "disulfide/valSet")
# Item counts the README of ../shared states for each set.
README_COUNTS = {"cobalt": {"energy": 144},
                 "disulfide": {"energy": 219, "geometry": 255, "forces": 1467},
                 "disulfide/valSet": {"energy": 199, "geometry": 771}}
SECTION_KEYS = {"ENERGY": "energy", "CHARGE": "charge", "HEATFO": "heatfo",
                "GEOMETRY": "geometry", "FORCES": "forces", "CELLPARAMETERS": "cell"}


def raw_data_lines(text: str) -> dict[str, list[tuple[int, list[str]]]]:
    """(line number, fields) of the data lines between each section's markers, read naively."""
    out = {key: [] for key in SECTION_KEYS.values()}
    section = None
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#")[0].split("!")[0].strip()
        if not content:
            continue
        marker = content.replace(" ", "").upper()
        if marker.startswith("END"):
            section = None
        elif marker in SECTION_KEYS:
            section = SECTION_KEYS[marker]
        else:
            assert section is not None, f"line {number} is outside any section"
            out[section].append((number, content.split()))
    return out


def geo_names(path) -> list[str]:
    return re.findall(r"^DESCRP\s+(\S+)", path.read_text(), flags=re.M)


@pytest.fixture(scope="module", params=PUBLISHED)
def published(request, shared_datasets):
    folder = shared_datasets / request.param
    path = folder / "trainset.in"
    return request.param, folder, path.read_text(), read_trainset(path)


def test_counts_match_raw_lines_and_readme(published):
    name, _, text, ts = published
    raw = raw_data_lines(text)
    assert ts.counts() == {key: len(lines) for key, lines in raw.items()}
    for key, expected in README_COUNTS[name].items():
        assert ts.counts()[key] == expected


def test_every_item_matches_its_raw_line(published):
    """Each item against a naive re-reading of its own line: names, weights, atoms, references."""
    _, _, text, ts = published
    raw = {number: fields for lines in raw_data_lines(text).values() for number, fields in lines}
    assert sorted(item.line for item in ts.items()) == sorted(raw)
    for item in ts.energy:
        fields = raw[item.line]
        assert isinstance(item, EnergyItem)
        assert item.weight == float(fields[0]) and item.reference == float(fields[-1])
        expected = [(1 if s == "+" else -1, n, int(d))
                    for s, n, d in re.findall(r"([+-])\s*([^\s/]+)\s*/\s*(\d+)",
                                              " ".join(fields[1:-1]))]
        assert [(t.sign, t.name, t.divisor) for t in item.terms] == expected
        assert all(isinstance(t, EnergyTerm) for t in item.terms)
    kinds = {0: "rmsg", 2: "bond", 3: "angle", 4: "torsion"}
    for item in ts.geometry:
        fields = raw[item.line]
        assert isinstance(item, GeometryItem)
        assert (item.name, item.weight) == (fields[0], float(fields[1]))
        assert item.atoms == tuple(int(a) - 1 for a in fields[2:-1])
        assert item.kind == kinds[len(fields) - 3]
        expected = float(fields[-1])
        if item.kind in ("angle", "torsion"):
            expected = expected * math.pi / 180.0
        assert item.reference == pytest.approx(expected, rel=1e-15, abs=1e-15)
    for item in ts.forces:
        fields = raw[item.line]
        assert isinstance(item, ForceItem) and len(fields) == 6
        assert (item.name, item.weight, item.atom) == (fields[0], float(fields[1]), int(fields[2]) - 1)
        assert item.reference == tuple(float(f) for f in fields[3:])


def test_structure_names_exist_in_geo(published):
    _, folder, _, ts = published
    known = geo_names(folder / "geo")
    assert len(known) > 100
    names = ts.structure_names()
    assert names and set(names) <= set(known)
    assert len(names) == len(set(names))
    check_names(ts, known)  # does not raise


def test_cobalt_groups_and_terms(shared_datasets):
    ts = read_trainset(shared_datasets / "cobalt" / "trainset.in")
    first = ts.energy[0]
    assert first.group == "General Co_clusters"
    assert first.terms == (EnergyTerm(1, "Co_2_atom", 2), EnergyTerm(-1, "Co_1_atom", 1))
    assert first.reference == -29.79 and first.weight == 2.0
    by_name = {item.terms[0].name: item for item in ts.energy}
    # A bare '#' separator keeps the open group; commented-out data lines are not titles.
    assert by_name["Surface_bcc510"].group == "General Co_surfaces"
    assert by_name["Vac_0v"].group == "General Co_vacancies2"
    assert by_name["SFE_bcc001"].group == "General Co_stacking_faults"
    assert {item.group for item in ts.energy} >= {"Volume Co_hcp", "General Co_amorphous"}


def test_check_names_reports_line_and_suggestion(shared_datasets):
    path = shared_datasets / "cobalt" / "trainset.in"
    ts = read_trainset(path)
    known = [n for n in geo_names(shared_datasets / "cobalt" / "geo") if n != "dimer_sep_3"]
    with pytest.raises(InputError) as err:
        check_names(ts, known)
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1) if "dimer_sep_3/" in l)
    assert err.value.line == line
    assert err.value.file == str(path)
    assert "'dimer_sep_3'" in err.value.message and "did you mean 'dimer_sep_" in err.value.message


SYNTHETIC = """\
# a training set using every section
CHARGE
#Iden Weight Atom Lit
water   0.1  1  -0.8   ! oxygen
water   0.1  2   0.4
ENDCHARGE
HEATFO
methane  2.00  -17.80   !Heat of formation
END HEATFO
GEOMETRY
# Water geometry
water  0.01   1  2        0.96     # bond
water  1.00   2  1  3    104.5     # angle
ethane 1.00   3  1  2  6  60.0
water  1.00            0.01        # RMSG
ENDGEOMETRY
FORCES
water   1.0  3  0.5 -1.25 2.0
water   2.0  0.25
ENDFORCES
CELL PARAMETERS
# Ice cell
ice  0.01  a     4.5
ice  0.5   alfa  90.0
ice  0.5   GAMMA 120.0
END CELL PARAMETERS
ENERGY
# Dimerisation
1.5  +  dimer/1 -  water/1  - water  -5.0
1.0  +ice/4  -water/1   -11.83
2.0  dimer / 2 + water_long_name_x / 3   7.25
"""


def test_synthetic_file_every_section():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ts = parse_trainset(SYNTHETIC, "synthetic.in")
    assert len(caught) == 1 and "ENERGY" in str(caught[0].message)  # ENERGY never closed
    assert ts.counts() == {"energy": 3, "charge": 2, "heatfo": 1, "geometry": 4, "forces": 2,
                           "cell": 3}
    assert ts.charge[0] == ChargeItem("water", 0.1, 0, -0.8, 4, "")
    assert ts.heatfo[0] == HeatfoItem("methane", 2.0, -17.8, 8, "")
    bond, angle, torsion, rmsg = ts.geometry
    assert (bond.kind, bond.atoms, bond.reference, bond.group) == ("bond", (0, 1), 0.96,
                                                                   "Water geometry")
    assert (angle.kind, angle.atoms) == ("angle", (1, 0, 2))
    assert angle.reference == pytest.approx(math.radians(104.5), rel=1e-15)
    assert (torsion.kind, torsion.atoms) == ("torsion", (2, 0, 1, 5))
    assert torsion.reference == pytest.approx(math.pi / 3, rel=1e-15)
    assert (rmsg.kind, rmsg.atoms, rmsg.reference) == ("rmsg", (), 0.01)
    assert ts.forces[0] == ForceItem("water", 1.0, 2, (0.5, -1.25, 2.0), 18, "")
    assert ts.forces[1] == ForceItem("water", 2.0, None, 0.25, 19, "")
    assert [c.parameter for c in ts.cell] == ["a", "alpha", "gamma"]
    assert ts.cell[0] == CellItem("ice", 0.01, "a", 4.5, 23, "Ice cell")
    assert ts.cell[2].reference == pytest.approx(2 * math.pi / 3, rel=1e-15)
    e1, e2, e3 = ts.energy
    assert e1.terms == (EnergyTerm(1, "dimer", 1), EnergyTerm(-1, "water", 1),
                        EnergyTerm(-1, "water", 1))
    assert (e1.weight, e1.reference, e1.group) == (1.5, -5.0, "Dimerisation")
    assert e2.terms == (EnergyTerm(1, "ice", 4), EnergyTerm(-1, "water", 1))
    assert e3.terms == (EnergyTerm(1, "dimer", 2), EnergyTerm(1, "water_long_name_x", 3))
    assert ts.structure_names() == ("water", "methane", "ethane", "ice", "dimer",
                                    "water_long_name_x")
    assert isinstance(ts, TrainingSet) and ts.source == "synthetic.in"


def test_missing_end_before_next_section_warns():
    text = "ENERGY\n1.0 + a/1 - b/1 2.0\nGEOMETRY\na 0.01 1 2 1.5\nENDGEOMETRY\n"
    with pytest.warns(UserWarning, match="line 1: section ENERGY has no ENDENERGY.*line 3"):
        ts = parse_trainset(text, "t.in")
    assert ts.counts()["energy"] == 1 and ts.counts()["geometry"] == 1


BAD = [
    # (text, line, words the message must hold)
    ("ENERGIES\n1.0 + a/1 2.0\nENDENERGIES\n", 1, ["unknown section keyword 'ENERGIES'"]),
    ("GEOMETRY\na 0.01 1 1.5 2.0 3.0 4.0 5.0\nENDGEOMETRY\n", 2, ["GEOMETRY line", "found 8 fields"]),
    ("CHARGE\nw 0.1 1\nENDCHARGE\n", 2, ["CHARGE line", "found 3 fields"]),
    ("HEATFO\nmethane heavy -17.8\nENDHEATFO\n", 2, ["weight", "'heavy'"]),
    ("CHARGE\nw 0.1 1 minus\nENDCHARGE\n", 2, ["reference charge", "'minus'"]),
    ("GEOMETRY\n# ok\nw 0.0 1 2 1.0\nENDGEOMETRY\n", 3, ["weight must be positive", "0.0"]),
    ("ENERGY\n-1.0 + a/1 - b/1 2.0\nENDENERGY\n", 2, ["weight must be positive"]),
    ("ENERGY\n1.0 + a/0 - b/1 2.0\nENDENERGY\n", 2, ["divisor of 'a'", "positive integer", "0"]),
    ("ENERGY\n1.0 + a/1 - b/2.5 2.0\nENDENERGY\n", 2, ["divisor of 'b'", "'2.5'"]),
    ("ENERGY\n1.0 + a/1 - b/1\nENDENERGY\n", 2, ["reference energy", "'b/1'"]),
    ("GEOMETRY\nw 0.01 0 2 1.0\nENDGEOMETRY\n", 2, ["atom numbers start at 1", "0"]),
    ("FORCES\nw 1.0 -3 0 0 0\nENDFORCES\n", 2, ["atom numbers start at 1", "-3"]),
    ("GEOMETRY\nw 0.01 2 2 1.0\nENDGEOMETRY\n", 2, ["appears twice"]),
    ("# header\nw 0.01 1 2 1.0\n", 2, ["outside any section"]),
    ("GEOMETRY\nw 0.01 1 2 1.0\nENDENERGY\n", 3, ["closes ENERGY", "open section is GEOMETRY"]),
    ("CELL PARAMETERS\nice 0.1 delta 90\nEND CELL PARAMETERS\n", 2, ["unknown cell parameter",
                                                                    "'delta'"]),
    ("ENERGY\n1.0 + - a/1 2.0\nENDENERGY\n", 2, ["two signs"]),
    ("ENERGY\n1.0 + a/16 \u2013 b/1 -11.83\nENDENERGY\n", 2, ["not a sign", "ASCII"]),
    ("FORCES\nw 1.0 1 0.5 0.5\nENDFORCES\n", 2, ["FORCES line", "found 5 fields"]),
]


@pytest.mark.parametrize("text,line,words", BAD, ids=[b[2][0] for b in BAD])
def test_malformed_input_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "trainset.in"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_trainset(path)
    assert err.value.file == str(path)
    assert err.value.line == line
    for word in words:
        assert word in err.value.message
    assert str(path) in str(err.value) and f"line {line}" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_trainset(tmp_path / "nope.in")
