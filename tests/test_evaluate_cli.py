"""`reaxopt evaluate`: one JSON line per structure, agreeing with LAMMPS."""

import json
from pathlib import Path

import ase.io
import numpy as np
from ase.build import molecule
from click.testing import CliRunner

from lammps_oracle import lammps_evaluate
from reaxopt.cli import main

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


def test_evaluate_missing_geometry_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--ffield", str(FFIELD), "--geo",
                                       str(tmp_path / "none.xyz")])
    assert result.exit_code == 2
    assert "none.xyz" in result.output and "Traceback" not in result.output
