"""Figures, summary.md, `reaxopt report` and `reaxopt compare`.

The figure and Markdown tests use a small hand-made output directory (no JAX). The fit hook and
`compare` reuse tests/test_fit.py's 12-structure config; they share its compiled loss.
"""

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import reaxopt  # noqa: F401  (float64)
from reaxopt.cli import main
from reaxopt.report import markdown, plots
from reaxopt.report.outputs import HISTORY_COLUMNS, REPORT_COLUMNS

from test_fit import FAMILIES, LONG_STRETCH
from test_fit import config  # noqa: F401  (module-scoped fixture: the small fit config)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# a scan family "s" at coordinates 1.0, 1.1, 1.2, 1.3 (s_1.1 has the lowest reference, the base
# of the relative items), a second structure "m" without a coordinate, and force items
SCAN = {"s_1.0": 5.0, "s_1.2": 2.0, "s_1.3": 9.0}  # reference relative to s_1.1
INITIAL_SHIFT = {"s_1.0": 3.0, "s_1.2": -4.0, "s_1.3": 0.0}  # initial - reference
FITTED_SHIFT = {"s_1.0": 1.0, "s_1.2": -1.0, "s_1.3": 0.5}


def _report_rows():
    rows = []
    for name, reference in SCAN.items():
        rows.append({"set": "training", "kind": "energy", "item": f"{name} - s_1.1",
                     "reference": reference, "initial": reference + INITIAL_SHIFT[name],
                     "fitted": reference + FITTED_SHIFT[name]})
    rows.append({"set": "validation", "kind": "energy", "item": "m_b - m_a", "reference": 1.0,
                 "initial": 3.0, "fitted": 2.0})
    for k, (ref, ini, fit) in enumerate([(10.0, 14.0, 11.0), (-5.0, -9.0, -6.0),
                                         (0.0, 2.0, 0.0)]):
        rows.append({"set": "training", "kind": "forces", "item": f"s_1.0 atom 1 f{'xyz'[k]}",
                     "reference": ref, "initial": ini, "fitted": fit})
    for r in rows:
        r.update(error=r["fitted"] - r["reference"], weight="", scale=1.0,
                 contribution=(r["fitted"] - r["reference"]) ** 2, source="hand-made")
    return rows


def _write_csv(path, columns, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _structures():
    out = [SimpleNamespace(name=f"s_{c}", extra={"family": "s_scan", "coordinate": c,
                                                  "coordinate_unit": "angstrom"})
           for c in ("1.0", "1.1", "1.2", "1.3")]
    return out + [SimpleNamespace(name="m_a", extra={"family": "m"}),
                  SimpleNamespace(name="m_b", extra={"family": "m"})]


@pytest.fixture
def output_dir(tmp_path):
    _write_csv(tmp_path / "report.csv", REPORT_COLUMNS, _report_rows())
    history = [{"trial": 1, "step": s, "iteration": i, "event": "iteration",
                "loss": 100.0 / (s * 3 + i), "validation_loss": 50.0 / (s * 3 + i),
                "best_selection": 1.0, "elapsed_s": i} for s in (1, 2) for i in (1, 2, 3)]
    _write_csv(tmp_path / "history.csv", HISTORY_COLUMNS, history)
    summary = {"config": "hand-made.yaml", "loss": {"initial": 100.0, "final": 10.0},
               "validation_loss": {"initial": 50.0, "final": 5.0}, "wall_seconds": 3.0,
               "compile_seconds": 1.0, "evaluations": 7}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    return tmp_path


def _check_png(path: Path, min_width=400, min_height=300):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, (path, image.shape)
    # not a blank canvas: some pixels differ from white
    assert np.mean(image[..., :3] < 0.9) > 0.005


def _markdown_table(text: str, heading: str) -> list[list[str]]:
    """The rows of the Markdown table under ``## heading`` (header first)."""
    block = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if not set(line) <= set("|-: ")]


def test_figures_and_summary_from_hand_made_outputs(output_dir):
    written = markdown.write_report(output_dir, _structures())
    names = sorted(p.name for p in written)
    assert names == ["convergence.png", "parity.png", "scans.png", "summary.md"]
    _check_png(output_dir / "parity.png", min_width=800)
    _check_png(output_dir / "convergence.png")
    _check_png(output_dir / "scans.png", min_width=300, min_height=300)
    text = (output_dir / "summary.md").read_text()
    for name in ("parity.png", "convergence.png", "scans.png"):
        assert f"]({name})" in text
    kinds = _markdown_table(text, "Errors per item kind")
    assert kinds[0] == ["set", "kind", "items", "RMSE (initial → fitted)",
                        "MAE (initial → fitted)"]
    by_key = {(r[0], r[1]): r for r in kinds[1:]}
    assert set(by_key) == {("training", "energy"), ("training", "forces"),
                           ("validation", "energy")}
    # energy: initial errors 3, -4, 0; fitted 1, -1, 0.5
    energy = by_key["training", "energy"]
    assert energy[2] == "3"
    before, after = (float(x) for x in energy[3].split("→"))
    assert before == pytest.approx(math.sqrt(25 / 3), rel=1e-3)
    assert after == pytest.approx(math.sqrt(2.25 / 3), rel=1e-3)
    mae_before, mae_after = (float(x) for x in energy[4].split("→"))
    assert mae_before == pytest.approx(7 / 3, rel=1e-3)
    assert mae_after == pytest.approx(2.5 / 3, rel=1e-3)
    families = _markdown_table(text, "Errors per family")
    assert families[0][:3] == ["set", "kind", "family"]
    assert {(r[0], r[1], r[2]) for r in families[1:]} == {
        ("training", "energy", "s_scan"), ("training", "forces", "s_scan"),
        ("validation", "energy", "m")}


def test_scan_points_add_the_base_and_shift_to_the_lowest_reference():
    labels = plots.structure_labels(_structures())
    rows = [{k: str(v) for k, v in r.items()} for r in _report_rows()]
    families = plots.scan_points(rows, labels)
    assert set(families) == {"s_scan"}  # "m" has no coordinate
    points = families["s_scan"]["points"]
    assert [p[0] for p in points] == [1.0, 1.1, 1.2, 1.3]
    # the base s_1.1 (reference 0) is the lowest reference point: every series is 0 there
    assert points[1][1:4] == (0.0, 0.0, 0.0)
    assert [p[1] for p in points] == [5.0, 0.0, 2.0, 9.0]
    assert [p[2] for p in points] == [8.0, 0.0, -2.0, 9.0]


def test_a_failing_figure_warns_and_the_rest_is_written(output_dir, monkeypatch):
    def broken(rows, path):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "parity_plot", broken)
    warned = []
    written = markdown.write_report(output_dir, _structures(), warn=warned.append)
    assert [p.name for p in written] == ["convergence.png", "scans.png", "summary.md"]
    assert len(warned) == 1 and "parity.png" in warned[0] and "no display" in warned[0]
    text = (output_dir / "summary.md").read_text()
    assert "](parity.png)" not in text and "no display" in text


def test_cli_report_regenerates_and_rejects_an_empty_dir(output_dir, tmp_path_factory):
    runner = CliRunner()
    result = runner.invoke(main, ["report", str(output_dir)])
    assert result.exit_code == 0, result.output
    for name in ("parity.png", "convergence.png", "summary.md"):
        assert (output_dir / name).is_file() and f"wrote {output_dir / name}" in result.output
    # no config.yaml here: the summary says why families are missing
    assert "families and scans are not shown" in (output_dir / "summary.md").read_text()
    empty = tmp_path_factory.mktemp("empty")
    failed = runner.invoke(main, ["report", str(empty)])
    assert failed.exit_code == 2
    assert "report.csv" in failed.output and "reaxopt fit" in failed.output
    assert "Traceback" not in failed.output
    missing = runner.invoke(main, ["report", str(empty / "nowhere")])
    assert missing.exit_code == 2 and "no directory" in missing.output


# ------------------------------------------------------------------ with the fit (compiles)


@pytest.fixture(scope="module")
def zero_step_fit(config, tmp_path_factory):  # noqa: F811
    import dataclasses

    from reaxopt.fit import run_fit

    run = dataclasses.replace(config, output_dir=tmp_path_factory.mktemp("zero"),
                              optimizer=dataclasses.replace(config.optimizer, steps=0))
    return run_fit(run, stream=False)


def test_every_fit_writes_figures_and_summary(zero_step_fit):
    out = zero_step_fit.output_dir
    _check_png(out / "parity.png", min_width=800)
    _check_png(out / "scans.png")
    assert not (out / "convergence.png").exists()  # zero steps: no iterations
    text = (out / "summary.md").read_text()
    assert "no optimizer iterations" in text
    families = {r[2] for r in _markdown_table(text, "Errors per family")[1:]}
    assert {family for family, _ in FAMILIES} | {LONG_STRETCH[0]} >= families
    assert len(families) >= 2
    # the per-kind RMSEs agree with summary.json
    rows = {(r[0], r[1]): r for r in _markdown_table(text, "Errors per item kind")[1:]}
    for part in ("training", "validation"):
        for kind in ("energy", "forces"):
            expected = zero_step_fit.summary[part]["rmse"][kind]["fitted"]
            shown = float(rows[part, kind][3].split("→")[1])
            assert shown == pytest.approx(expected, rel=1e-3)


def test_cli_report_reads_families_through_config_yaml(zero_step_fit):
    out = zero_step_fit.output_dir
    (out / "scans.png").unlink()
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    _check_png(out / "scans.png")
    assert "Errors per family" in (out / "summary.md").read_text()


def _rmse_table(output: str) -> dict:
    """(set, kind) -> [RMSE A, RMSE B] from `reaxopt compare` output."""
    lines = output.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("set "))
    assert lines[start].split()[-4:] == ["RMSE", "A", "RMSE", "B"]
    table = {}
    for line in lines[start + 2:]:
        cells = line.split()
        table[cells[0], cells[1]] = [float(c) for c in cells[-2:]]
    return table


def test_cli_compare_prints_both_force_fields(config, zero_step_fit, tmp_path,  # noqa: F811
                                              monkeypatch):
    from reaxopt.inputs import load_inputs
    from reaxopt.io.ffield import write_ffield
    from reaxopt.io.params import get_value, set_value

    monkeypatch.setenv("REAXOPT_CACHE_DIR", "off")
    inputs = load_inputs(config)
    spec = next(s for s in inputs.params if s.label == "bond H-O De_s")
    perturbed = tmp_path / "ffield_perturbed"
    write_ffield(set_value(inputs.ffield, spec, 1.2 * get_value(inputs.ffield, spec)), perturbed)
    runner = CliRunner()
    same = runner.invoke(main, ["compare", str(config.force_field), str(config.force_field),
                                "--config", str(config.path)])
    assert same.exit_code == 0, same.output
    table = _rmse_table(same.output)
    assert {("training", "energy"), ("training", "forces"), ("validation", "energy"),
            ("training", "loss")} <= set(table)
    for key, (a, b) in table.items():
        assert a == b, key
    # A is the zero-step fit of the same force field
    summary = zero_step_fit.summary
    for part in ("training", "validation"):
        for kind in ("energy", "forces"):
            assert table[part, kind][0] == pytest.approx(summary[part]["rmse"][kind]["fitted"],
                                                         rel=1e-5)
    other = runner.invoke(main, ["compare", str(config.force_field), str(perturbed),
                                 "--config", str(config.path)])
    assert other.exit_code == 0, other.output
    changed = _rmse_table(other.output)
    assert changed["training", "energy"][0] == table["training", "energy"][0]
    assert changed["training", "energy"][1] != pytest.approx(changed["training", "energy"][0],
                                                             rel=1e-3)
    assert changed["training", "forces"][1] != pytest.approx(changed["training", "forces"][0],
                                                             rel=1e-3)
    missing = runner.invoke(main, ["compare", str(tmp_path / "nope"), str(perturbed),
                                   "--config", str(config.path)])
    assert missing.exit_code == 2 and "not found" in missing.output
