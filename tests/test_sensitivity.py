"""Parameter sensitivity: standard errors, correlations, worst-determined directions.

The core (``reaxopt.report.sensitivity``) is checked against the analytic covariance of linear
least squares, s² (AᵀW²A)⁻¹, with no ReaxFF. The fit's section, summary.md, sensitivity.png and
``reaxopt sensitivity`` use one small energy-only fit (9 water structures, 3 O-H parameters),
whose compiled functions every test here shares.
"""

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (float64)
from reaxopt.report.sensitivity import (RCOND, from_jacobian, parameter_sensitivity,
                                        table_rows, text_report, to_json)

from input_helpers import assert_input_error, run

CHO = Path(__file__).resolve().parents[1] / "datasets" / "cho"
LABELS = ("bond H-O De_s", "bond H-O p_bo1", "angle H-O-H theta_00")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _linear_problem(seed=0, m=30, p=4):
    """(A, W, b, theta): a design whose columns differ in scale by 1e4, weights 0.5-2."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, p)) * np.array([1.0, 10.0, 0.01, 3.0])[:p]
    w = np.diag(rng.uniform(0.5, 2.0, m))
    return a, w, rng.normal(size=m), rng.normal(size=p)


def _residuals(a, w, b):
    return lambda theta: jnp.asarray(w) @ (jnp.asarray(a) @ theta - jnp.asarray(b))


def test_linear_least_squares_matches_the_analytic_covariance():
    a, w, b, theta = _linear_problem()
    m, p = a.shape
    s = parameter_sensitivity(_residuals(a, w, b), theta, [f"t{j}" for j in range(p)],
                              [f"item {i}" for i in range(m)], chunk=3)  # two passes, padded
    r = w @ (a @ theta - b)
    s2 = r @ r / (m - p)
    expected = s2 * np.linalg.inv(a.T @ w @ w @ a)
    se = np.sqrt(np.diag(expected))
    assert s.s2 == pytest.approx(s2, rel=1e-12)
    np.testing.assert_allclose(s.covariance, expected, rtol=1e-10)
    np.testing.assert_allclose(s.standard_errors, se, rtol=1e-10)
    np.testing.assert_allclose(s.correlation, expected / np.outer(se, se), rtol=1e-10,
                               atol=1e-12)
    assert s.determined.all() and s.dropped == 0
    # eigenvalues of the column-scaled JᵀJ, and each parameter's largest item share
    jac = w @ a
    scaled = jac / np.linalg.norm(jac, axis=0)
    np.testing.assert_allclose(s.eigenvalues, np.linalg.eigvalsh(scaled.T @ scaled), rtol=1e-10)
    shares = jac ** 2 / np.sum(jac ** 2, axis=0)
    for j in range(p):
        i = int(np.argmax(shares[:, j]))
        assert s.contributors[j][0] == (f"item {i}", pytest.approx(shares[i, j], rel=1e-12))
    # the JSON section and its table say the same
    section = json.loads(json.dumps(to_json(s)))
    assert [p["standard_error"] for p in section["parameters"]] == pytest.approx(se, rel=1e-10)
    rows = table_rows(section)
    assert [row[0] for row in rows] == [f"t{j}" for j in range(p)]
    assert float(rows[2][2]) == pytest.approx(se[2], rel=1e-3)
    assert "t2" in text_report(section)


def test_degenerate_and_unused_parameters_are_undetermined():
    """Columns 1 and 2 proportional (only their combination is measured), column 4 zero: those
    three are undetermined; the others keep the variance of the reduced, full-rank model."""
    a, w, b, theta = _linear_problem(seed=1, m=25, p=3)
    design = np.column_stack([a[:, 0], a[:, 1], -2.0 * a[:, 1], a[:, 2], np.zeros(len(a))])
    jac = w @ design
    theta5 = np.array([0.3, 0.2, 0.1, -0.4, 1.0])
    r = w @ (design @ theta5 - b)
    s = from_jacobian(jac, r, theta5, list("abcde"), [str(i) for i in range(len(a))])
    assert s.dropped == 2
    assert s.determined.tolist() == [True, False, False, True, False]
    reduced = w @ a
    expected = s.s2 * np.linalg.inv(reduced.T @ reduced)
    np.testing.assert_allclose(s.standard_errors[[0, 3]],
                               np.sqrt(np.diag(expected))[[0, 2]], rtol=1e-8)
    assert np.isnan(s.standard_errors[[1, 2, 4]]).all()
    assert s.eigenvalues[:2] == pytest.approx([0.0, 0.0], abs=RCOND)
    section = to_json(s)
    named = {c["parameter"]: c["component"] for d in section["directions"][:2]
             for c in d["components"] if abs(c["component"]) > 0.5}
    assert set(named) == {"b", "c", "e"}
    assert [row[2] for row in table_rows(section)] == ["%.4g" % s.standard_errors[0],
                                                        "undetermined", "undetermined",
                                                        "%.4g" % s.standard_errors[3],
                                                        "undetermined"]
    assert section["parameters"][4]["contributors"] == []


def test_fewer_items_than_parameters_leave_every_parameter_undetermined():
    rng = np.random.default_rng(2)
    s = from_jacobian(rng.normal(size=(3, 5)), rng.normal(size=3), np.ones(5), list("abcde"),
                      ["x", "y", "z"])
    assert s.dropped == 2 and not s.determined.any() and np.isnan(s.s2)
    assert s.eigenvalues[:2] == pytest.approx([0.0, 0.0], abs=1e-12)
    section = json.loads(json.dumps(to_json(s)))
    assert section["s2"] is None and section["degrees_of_freedom"] == -2
    assert all(p["standard_error"] is None for p in section["parameters"])


def test_non_finite_residuals_are_an_error_naming_the_parameter():
    a, w, b, theta = _linear_problem(p=2)
    jac = w @ a
    jac[3, 1] = np.nan
    with pytest.raises(ValueError, match="derivatives by t1"):
        from_jacobian(jac, w @ (a @ theta - b), theta, ["t0", "t1"],
                      [str(i) for i in range(len(a))])


# ------------------------------------------------------------------ with the fit (compiles)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """9 water structures (energies only, relative), 3 O-H parameters, zero steps."""
    from ase import Atoms
    from ase.io import read, write

    from reaxopt.config import load_config

    folder = tmp_path_factory.mktemp("sensitivity")
    picked = []
    for atoms in read(CHO / "cho.extxyz", ":"):
        if atoms.info["family"] in ("water_stretch_OH", "water_angle_HOH"):
            bare = Atoms(atoms.get_chemical_symbols(), atoms.positions)
            bare.info.update(name=atoms.info["name"], family=atoms.info["family"],
                             energy=atoms.get_potential_energy())
            picked.append(bare)
    write(folder / "water.extxyz", picked[::2], format="extxyz")
    lines = [line for line in (CHO / "params").read_text().splitlines()
             if any(line.rstrip().endswith(f"! {label}") or f"! {label} " in line
                    for label in LABELS)]
    (folder / "params").write_text("\n".join(lines) + "\n")
    (folder / "water.yaml").write_text(f"""\
force_field: {CHO / 'ffield_cho'}
params: params
structures:
  - path: water.extxyz
    energy_unit: kcal/mol
output_dir: out
clusters: 1
optimizer:
  steps: 0
""")
    return load_config(folder / "water.yaml")


@pytest.fixture(scope="module")
def fitted(config):
    from reaxopt.fit import run_fit

    return run_fit(config, stream=False)


def _check_png(path: Path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 300
    assert np.mean(image[..., :3] < 0.9) > 0.01  # not blank


def _markdown_rows(text: str) -> dict[str, list[str]]:
    block = text.split("## Parameter sensitivity\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]
    assert rows[0][:4] == ["parameter", "value", "standard error", "relative error"]
    return {row[0]: row for row in rows[1:]}


def test_every_fit_writes_the_sensitivity(fitted):
    out, section = fitted.output_dir, fitted.summary["sensitivity"]
    assert json.loads((out / "summary.json").read_text())["sensitivity"] == section
    assert [p["label"] for p in section["parameters"]] == list(LABELS)
    assert section["items"] == 8 and section["degrees_of_freedom"] == 5
    assert section["loss"] == pytest.approx(fitted.summary["loss"]["final"], rel=1e-10)
    correlation = np.array(section["correlation"])
    np.testing.assert_allclose(correlation, correlation.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(correlation), 1.0)
    items = {row.split(",")[2] for row in (out / "report.csv").read_text().splitlines()[1:]}
    rows = _markdown_rows((out / "summary.md").read_text())
    for p in section["parameters"]:
        assert p["determined"] and 0.0 < p["standard_error"] < abs(p["value"])
        assert {c["item"] for c in p["contributors"]} <= items
        row = rows[p["label"]]
        assert float(row[2]) == pytest.approx(p["standard_error"], rel=1e-3)
        assert p["contributors"][0]["item"] in row[4]
    assert "![Parameter correlations](sensitivity.png)" in (out / "summary.md").read_text()
    _check_png(out / "sensitivity.png")
    assert "parameter sensitivity of 3 parameters over 8 training items" in (
        out / "run.log").read_text()


def test_the_jacobian_gives_the_loss_gradient(config, fitted):
    """2 Jᵀr is the data loss's gradient: the Jacobian runs the fit's loss path."""
    from reaxopt.fit.problem import build_problem, make_evaluator
    from reaxopt.fit.sensitivity import residual_function
    from reaxopt.inputs import load_inputs
    from reaxopt.relaxation import Relaxed
    from reaxopt.report.sensitivity import jacobian

    problem = build_problem(load_inputs(config))
    theta = problem.theta_start
    relaxed = Relaxed(problem.model)
    evaluation = make_evaluator(problem, 0.0, theta)(theta, relaxed)
    r, jac = jacobian(residual_function(problem, relaxed), theta)
    assert r @ r == pytest.approx(evaluation.data_loss, rel=1e-12)
    np.testing.assert_allclose(2.0 * jac.T @ r, evaluation.gradient, rtol=1e-9,
                               atol=1e-12 * np.max(np.abs(evaluation.gradient)))


def test_a_failed_sensitivity_leaves_the_other_outputs(config, fitted, tmp_path, monkeypatch):
    """Non-finite residuals: a warning in run.log, a note in summary.md, sensitivity null,
    an earlier sensitivity.png removed, and every other output written."""
    import reaxopt.fit.sensitivity as module
    from reaxopt.fit import run_fit

    monkeypatch.setattr(module, "residual_function", lambda problem, relaxed:
                        lambda theta: jnp.full(8, jnp.nan) * theta[0])
    (tmp_path / "sensitivity.png").write_bytes(PNG_MAGIC)  # stale, of another run
    result = run_fit(dataclasses.replace(config, output_dir=tmp_path), stream=False)
    assert result.summary["sensitivity"] is None
    assert json.loads((tmp_path / "summary.json").read_text())["sensitivity"] is None
    log = (tmp_path / "run.log").read_text()
    assert ("warning: parameter sensitivity not computed (ValueError: the weighted residuals "
            "or their Jacobian are not finite") in log
    assert "no parameter sensitivity" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "sensitivity.png").exists()
    for name in ("ffield", "report.csv", "summary.md", "parity.png"):
        assert (tmp_path / name).is_file(), name


def test_cli_sensitivity_prints_the_table_and_writes_its_files(config, fitted, tmp_path):
    out = tmp_path / "cli"
    result = run("sensitivity", config.path, "--ffield", fitted.output_dir / "ffield",
                 "--output", out)
    assert result.exit_code == 0, result.output
    written = json.loads((out / "sensitivity.json").read_text())
    _check_png(out / "sensitivity.png")
    # a zero-step fit's force field: the numbers of the fit's own section
    expected = fitted.summary["sensitivity"]["parameters"]
    for p, q in zip(written["parameters"], expected):
        assert p["standard_error"] == pytest.approx(q["standard_error"], rel=1e-9)
        line = next(line for line in result.stdout.splitlines() if line.startswith(p["label"]))
        assert float(line[len(p["label"]):].split()[1]) == pytest.approx(p["standard_error"],
                                                                         rel=1e-3)
    assert "worst-determined directions" in result.stdout
    assert f"wrote {out / 'sensitivity.json'}" in result.stdout
    assert written["ffield"] == str((fitted.output_dir / "ffield").resolve())


def test_cli_sensitivity_bad_input_is_one_paragraph(config, tmp_path):
    bad = config.path.parent / "bad.yaml"  # beside the data it names
    bad.write_text(config.path.read_text().replace("clusters: 1", "clusterz: 1"))
    assert_input_error(run("sensitivity", bad), "clusterz")
    assert_input_error(run("sensitivity", config.path, "--ffield", tmp_path / "missing"),
                       "--ffield", "not found")
