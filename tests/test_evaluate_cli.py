"""`reaxopt evaluate`: one JSON line per structure, agreeing with LAMMPS; a second run loads
the compiled evaluation from the cache directory and writes the same bytes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from click.testing import CliRunner

from lammps_oracle import lammps_evaluate
from reaxopt import executables
from reaxopt.cli import main
from reaxopt.io.geometry import read_geometries

FFIELD = Path(__file__).resolve().parents[1] / "datasets" / "cho" / "ffield_cho"
TERMS = {"bond", "over_under", "lone_pair", "valence", "penalty", "coalition", "hydrogen_bond",
         "torsion", "conjugation", "van_der_waals", "coulomb", "charge_equilibration"}


def test_evaluate_writes_json_lines_that_match_lammps(tmp_path):
    rng = np.random.default_rng(3)
    frames = []
    for name in ("H2O", "CH3OH", "CH4"):
        atoms = molecule(name)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.info["name"] = name.lower()
        frames.append(atoms)
    geo = tmp_path / "mols.extxyz"
    ase.io.write(geo, frames, format="extxyz")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["evaluate", "--ffield", str(FFIELD), "--geo", str(geo),
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["name"] for r in records] == ["h2o", "ch3oh", "ch4"]
    for atoms, record in zip(frames, records):
        assert set(record["terms"]) == TERMS
        assert np.isclose(record["energy"], sum(record["terms"].values()), rtol=1e-12, atol=1e-9)
        ref = lammps_evaluate(FFIELD, atoms.get_chemical_symbols(), atoms.positions)
        assert np.isclose(record["energy"], ref["energy"], rtol=1e-8, atol=1e-6)
        for term in TERMS:
            assert np.isclose(record["terms"][term], ref["terms"][term], rtol=1e-8, atol=1e-6), term
        np.testing.assert_allclose(record["forces"], ref["forces"], atol=1e-5)
        np.testing.assert_allclose(record["charges"], ref["charges"], atol=1e-7)


@pytest.fixture(autouse=True)
def cache_directory(tmp_path, monkeypatch):
    """Each test's own cache directory (not the user's); the CLI points
    ``reaxopt.executables`` at it: undone after the test."""
    monkeypatch.setenv("REAXOPT_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    executables.reset_cache_directory()


def _cation_and_cell():
    """A methanol cation (total charge +1) and water with methanol in a triclinic cell."""
    rng = np.random.default_rng(5)
    cation = molecule("CH3OH")
    cation.positions += rng.normal(0, 0.05, cation.positions.shape)
    cation.info.update(name="cation", charge=1.0)
    water = molecule("H2O")
    water.translate([3.1, 0.4, 0.2])
    cell = molecule("CH3OH") + water
    cell.positions += rng.normal(0, 0.05, cell.positions.shape)
    cell.set_cell([[7.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, 0.7, 6.8]])
    cell.pbc = True
    cell.info["name"] = "cell"
    return [cation, cell]


def test_a_second_run_loads_the_compiled_evaluation_and_writes_the_same(tmp_path):
    frames = _cation_and_cell()
    geo = tmp_path / "mixed.extxyz"
    ase.io.write(geo, frames, format="extxyz")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    result = CliRunner().invoke(main, ["evaluate", "--ffield", str(FFIELD), "--geo", str(geo),
                                       "-o", str(first)])
    assert result.exit_code == 0, result.output
    # stored unless this test process's JAX cache had it already (conftest: not stored then)
    stored = sorted((tmp_path / "cache" / executables.SUBDIRECTORY).glob("*.bin"))
    assert "single_points" in {p.name.split("-")[0] for p in stored}
    stamps = {p: p.stat().st_mtime_ns for p in stored}
    # a new process (same environment, so the same keys) loads them instead of compiling
    done = subprocess.run([sys.executable, "-m", "reaxopt", "evaluate", "--ffield", str(FFIELD),
                           "--geo", str(geo), "-o", str(second)], capture_output=True, text=True,
                          env={**os.environ, "REAXOPT_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert second.read_bytes() == first.read_bytes()
    assert {p: p.stat().st_mtime_ns for p in stored} == stamps  # loaded: not rewritten
    # LAMMPS on what the file holds (positions rounded to 1e-8 Å), read by reaxopt's reader
    structures = read_geometries(geo)
    assert [s.total_charge for s in structures] == [1.0, 0.0] and structures[1].cell is not None
    for structure, line in zip(structures, first.read_text().splitlines()):
        record = json.loads(line)
        ref = lammps_evaluate(FFIELD, structure.symbols, structure.positions, structure.cell,
                              structure.total_charge)
        assert np.isclose(record["energy"], ref["energy"], rtol=1e-8, atol=1e-6), record["name"]
        for term in TERMS:
            assert np.isclose(record["terms"][term], ref["terms"][term], rtol=1e-8, atol=1e-6), term
        np.testing.assert_allclose(record["forces"], ref["forces"], atol=1e-5)
        np.testing.assert_allclose(record["charges"], ref["charges"], atol=1e-7)
    assert abs(sum(json.loads(first.read_text().splitlines()[0])["charges"]) - 1.0) < 1e-9


def test_a_stored_evaluation_that_does_not_load_is_compiled_again(tmp_path):
    geo = tmp_path / "mixed.extxyz"
    ase.io.write(geo, _cation_and_cell(), format="extxyz")
    outputs = []
    for k in range(2):
        out = tmp_path / f"out{k}.jsonl"
        result = CliRunner().invoke(main, ["evaluate", "--ffield", str(FFIELD), "--geo",
                                           str(geo), "-o", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
        for path in (tmp_path / "cache" / executables.SUBDIRECTORY).glob("*.bin"):
            path.write_bytes(b"not an executable")  # the next run must not trust it
        executables.forget_loaded()  # as a new process: nothing in memory
    assert outputs[0] == outputs[1]


def test_evaluate_missing_geometry_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--ffield", str(FFIELD), "--geo",
                                       str(tmp_path / "none.xyz")])
    assert result.exit_code == 2
    assert "none.xyz" in result.output and "Traceback" not in result.output
