"""Faults during a fit and its output directory: a loss that turns non-finite, a second run
into the same directory, an earlier run's files, changed inputs on --resume, an internal error.

One small problem for the whole module (water and ethanol, energies only, two H-O bond
parameters fitted and a third held fixed by equal bounds), so the fits share their compiled
functions. Its reference energies lie 20
kcal/mol below what the starting force field gives, which pulls the H-O bond's p_be2 down
towards negative values, where ethanol's energy is not finite (checked below, not assumed).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
import time
from pathlib import Path

import pytest
from ase.io import read, write

import reaxopt  # noqa: F401  (float64)
from input_helpers import assert_input_error, run
from reaxopt.config import load_config
from reaxopt.errors import InputError
from reaxopt.fit import FitInterrupted, run_fit

# the parameter sensitivity every fit reports has its own tests (test_sensitivity.py)
run_fit = functools.partial(run_fit, sensitivity=False)

CHO = Path(__file__).resolve().parents[1] / "datasets" / "cho"
P_BE2 = "  3   6   9  0.0100    -1.5000     1.6237 ! bond H-O p_be2\n"
DE_S = "  3   6   1  0.0100   135.3280   225.5466 ! bond H-O De_s\n"
FIXED = "  3   6   4  0.0100    -0.8000    -0.8000 ! bond H-O p_be1, held at -0.8 (ffield -0.8074)\n"
OUTPUTS = ("ffield", "report.csv", "report.txt", "history.csv", "summary.json", "summary.md",
           "config.yaml", "run.log", "checkpoint.json", "parity.png", "convergence.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from reaxopt.evaluate import evaluate_structures
    from reaxopt.io.ase_io import read_ase

    folder = tmp_path_factory.mktemp("safety")
    frames = [a for a in read(CHO / "cho.extxyz", ":") if a.info.get("name") in ("water",
                                                                                 "ethanol")]
    write(folder / "start.extxyz", frames, format="extxyz")
    start = evaluate_structures(CHO / "ffield_cho", read_ase(folder / "start.extxyz"))
    for atoms, result in zip(frames, start):
        atoms.calc = None
        for key in ("forces", "REF_forces"):
            atoms.arrays.pop(key, None)
        atoms.info.update(energy=result["energy"] - 20.0, energy_unit="kcal/mol")
    write(folder / "data.extxyz", frames, format="extxyz")
    (folder / "params").write_text(DE_S + P_BE2 + FIXED)
    return folder


def config_in(folder: Path, output: str, *, steps: int = 2, extra: str = ""):
    path = folder / f"{output}.yaml"
    path.write_text(f"force_field: {CHO / 'ffield_cho'}\nparams: params\n"
                    f"structures: [data.extxyz]\noutput_dir: {output}\n"
                    f"loss: {{energy_mode: absolute}}\n"
                    f"optimizer: {{steps: {steps}, max_iterations: 6}}\n{extra}")
    return load_config(path)


def test_a_loss_that_turns_non_finite_is_named_and_the_fit_finishes(folder):
    from reaxopt.evaluate import evaluate_structures
    from reaxopt.io.ffield import read_ffield, write_ffield
    from reaxopt.io.params import read_params, set_values

    # the premise: ethanol's energy is not finite at the lower bound of p_be2, water's is
    ff = read_ffield(CHO / "ffield_cho")
    spec = [p for p in read_params(folder / "params", ff) if p.label.endswith("p_be2")]
    write_ffield(set_values(ff, spec, [-1.5]), folder / "ffield_low")
    from reaxopt.io.ase_io import read_ase

    low = evaluate_structures(folder / "ffield_low", read_ase(folder / "data.extxyz"))
    assert [r["name"] for r in low if not math.isfinite(r["energy"])] == ["ethanol"]

    result = run_fit(config_in(folder, "nan"), stream=False)
    out = result.output_dir
    assert all((out / name).is_file() for name in OUTPUTS)
    log = (out / "run.log").read_text()
    warning = next(line for line in log.splitlines() if "non-finite loss or gradient" in line)
    assert "ethanol (non-finite energy terms:" in warning and "water" not in warning
    assert "steered away" in warning
    # the fit ends where ethanol's energy is finite (the lower p_be2 is non-finite)
    fitted = next(p for p in json.loads((out / "summary.json").read_text())["parameters"]
                  if p["label"].endswith("p_be2"))
    assert -1.5 < fitted["fitted"]
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["loss"]["final"])
    assert summary["loss"]["final"] < summary["loss"]["initial"]
    assert "n/a" not in (out / "report.txt").read_text()
    # the parameter of equal bounds is not fitted, and is held exactly at them
    assert [p["label"] for p in summary["parameters"]] == ["bond H-O De_s", "bond H-O p_be2"]
    bond = next(b for b in read_ffield(out / "ffield").bonds if b.types == (2, 3))
    assert bond.values[3] == -0.8 and bond.values[0] != 180.4373


def _hold_the_directory(config):
    """Start a fit in a thread; return (thread, its outcome) once it holds the lock."""
    outcome = {}

    def fit():
        try:
            outcome["result"] = run_fit(config, stream=False)
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    lock = Path(config.output_dir) / ".reaxopt.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return thread, outcome


def test_a_second_fit_into_a_locked_directory_is_refused(folder, monkeypatch):
    monkeypatch.setenv("REAXOPT_CACHE_DIR", "off")
    config = config_in(folder, "twice", steps=1)
    thread, outcome = _hold_the_directory(config)
    try:
        message = assert_input_error(run("fit", folder / "twice.yaml"),
                                     "another reaxopt run is writing into this directory",
                                     "pid ")
        assert str(config.output_dir) in message
    finally:
        thread.join()
    assert "error" not in outcome, outcome
    out = config.output_dir
    assert all((out / name).is_file() for name in OUTPUTS)
    assert json.loads((out / "summary.json").read_text())["evaluations"] > 1
    assert not (out / ".reaxopt.lock").read_text()  # released


def test_an_earlier_run_is_never_overwritten_without_resume_or_overwrite(folder, monkeypatch):
    monkeypatch.setenv("REAXOPT_CACHE_DIR", "off")
    config = config_in(folder, "earlier", steps=2)
    with pytest.raises(FitInterrupted):
        run_fit(config, stream=False, stop_after_steps=1)
    out = config.output_dir
    saved = (out / "checkpoint.json").read_bytes()
    (out / "ffield_lowest_training").write_text("stale\n")
    message = assert_input_error(run("fit", folder / "earlier.yaml"), "earlier run",
                                 "checkpoint is of an unfinished run after 1 outer steps",
                                 "--resume", "--overwrite")
    assert "ffield_lowest_training" in message
    assert (out / "checkpoint.json").read_bytes() == saved
    assert_input_error(run("fit", folder / "earlier.yaml", "--resume", "--overwrite"),
                       "expected one of them")
    result = run("fit", folder / "earlier.yaml", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "ffield_lowest_training").exists()  # the earlier run's, deleted
    assert "trial 1 step 2/2 done" in (out / "run.log").read_text()
    assert "resuming" not in (out / "run.log").read_text()


def test_resume_refuses_changed_inputs_unless_accepted(folder):
    config = config_in(folder, "changed", steps=2)
    with pytest.raises(FitInterrupted):
        run_fit(config, stream=False, stop_after_steps=1)
    data = folder / "changed.extxyz"
    frames = read(folder / "data.extxyz", ":")
    for atoms in frames:
        energy = atoms.get_potential_energy()
        atoms.calc = None
        atoms.info["energy"] = energy - 5.0
    write(data, frames, format="extxyz")
    changed = config_in(folder, "changed", steps=2, extra="")
    changed = dataclasses.replace(
        changed, training=dataclasses.replace(changed.training, structures=(
            dataclasses.replace(changed.training.structures[0], path=data, weight_energy=0.1),)))
    with pytest.raises(InputError) as caught:
        run_fit(changed, resume=True, stream=False)
    message = str(caught.value)
    assert "the inputs changed since the checkpoint" in message
    assert f"structures[0]: the contents of {data} changed" in message
    assert "structures[0].weight_energy: (unset) -> 0.1" in message
    assert "--accept-changed-inputs" in message
    result = run_fit(changed, resume=True, accept_changed_inputs=True, stream=False)
    log = (result.output_dir / "run.log").read_text()
    assert "inputs changed since the checkpoint (--accept-changed-inputs)" in log
    assert "scored again under the new inputs" in log
    # the kept best is judged under the new inputs: a zero-step run of the written ffield on
    # them gives the loss the summary reports
    check = dataclasses.replace(changed, force_field=result.output_dir / "ffield",
                                output_dir=folder / "changed_check",
                                optimizer=dataclasses.replace(changed.optimizer, steps=0))
    again = run_fit(check, stream=False)
    assert again.summary["loss"]["final"] == pytest.approx(result.summary["loss"]["final"],
                                                           rel=1e-12)


def test_an_internal_error_is_logged_and_reported_in_one_paragraph(folder, monkeypatch):
    import reaxopt.fit.driver

    def broken(*args, **kwargs):
        raise RuntimeError("a defect in the driver")

    monkeypatch.setattr(reaxopt.fit.driver, "trust_update", broken)
    monkeypatch.setenv("REAXOPT_CACHE_DIR", "off")
    config_in(folder, "internal", steps=1)
    result = run("fit", folder / "internal.yaml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    out = folder / "internal"
    assert result.stderr.count("\n") == 1
    assert "internal error (RuntimeError: a defect in the driver" in result.stderr
    assert str(out / "run.log") in result.stderr
    log = (out / "run.log").read_text()
    assert "Traceback" in log and "a defect in the driver" in log


def test_report_reads_whatever_a_fit_leaves_behind(folder):
    out = folder / "left"
    out.mkdir()
    (out / "checkpoint.json").write_text("{}")
    assert_input_error(run("report", out), "lacks", "checkpoint", "--resume")
    done = run_fit(config_in(folder, "truncated", steps=0), stream=False).output_dir
    text = (done / "summary.json").read_text()
    (done / "summary.json").write_text(text[:len(text) // 2])
    assert_input_error(run("report", done), "summary.json", "cannot read", "truncated")


def test_tables_show_missing_values_as_missing():
    from reaxopt.compare import compare_text
    from reaxopt.report.markdown import summary_markdown

    kinds = {"energy": {"initial": None, "fitted": 1.5}}
    summary = {"loss": {"initial": None, "final": 2.0}, "validation_loss": None,
               "training": {"items": {"energy": 3}, "rmse": kinds}}
    text = compare_text([Path("a"), Path("b")], [summary, summary])
    assert "2" in text and "1.5" in text
    markdown = summary_markdown({**summary, "wall_seconds": 3.0, "compile_seconds": None,
                                 "evaluations": 4}, [], {}, [], [])
    assert "n/a → 2" in markdown and "compilation n/a s" in markdown


def test_a_full_disk_mid_run_names_the_file_and_keeps_the_checkpoint(folder, monkeypatch):
    """The second checkpoint cannot be written (ENOSPC as the temporary file is renamed)."""
    import errno
    import os

    import reaxopt.io.files

    renames = []

    class FullDisk:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, source, target):
            renames.append(Path(target).name)
            if Path(target).name == "checkpoint.json" and renames.count("checkpoint.json") > 1:
                raise OSError(errno.ENOSPC, "No space left on device", str(source))
            os.replace(source, target)

    monkeypatch.setattr(reaxopt.io.files, "os", FullDisk())
    monkeypatch.setenv("REAXOPT_CACHE_DIR", "off")
    config_in(folder, "full", steps=3)
    result = run("fit", folder / "full.yaml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    out = folder / "full"
    assert f"cannot write {out / 'checkpoint.json'}: No space left" in result.stderr
    assert ".tmp" not in result.stderr and result.stderr.count("\n") == 1
    saved = json.loads((out / "checkpoint.json").read_text())  # the first one, intact
    assert saved["trials"][0]["step"] == 1, result.stderr
    assert "Traceback" in (out / "run.log").read_text(), result.stderr
