"""Write a fit's outputs (see ``reaxopt.report`` for the files and their columns)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from reaxopt.io.files import write_text_atomic
from reaxopt.io.ffield import write_ffield
from reaxopt.io.params import set_values
from reaxopt.loss import KINDS, report_values, rmse_by_kind

REPORT_COLUMNS = ("set", "kind", "item", "reference", "initial", "fitted", "error", "weight",
                  "scale", "contribution", "source")
HISTORY_COLUMNS = ("trial", "step", "iteration", "event", "loss", "validation_loss",
                   "best_selection", "elapsed_s")


def _number(value) -> str:
    if value is None:
        return ""
    return f"{float(value):.10g}"


def _g(value, digits: int = 6) -> str:
    """A number for a text table; 'n/a' where it does not exist or is not finite."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}g}"


def _csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") if not isinstance(row.get(c), float) else
                         _number(row[c]) for c in columns])
    return buffer.getvalue()


def item_rows(label: str, info: list, initial_residuals, fitted_residuals) -> list[dict]:
    """One report row per item of one data set."""
    if not info:
        return []
    initial, _ = report_values(info, initial_residuals)
    fitted, error = report_values(info, fitted_residuals)
    rows = []
    for k, item in enumerate(info):
        residual = float(np.asarray(fitted_residuals)[k])
        rows.append({"set": label, "kind": item.kind, "item": item.what,
                     "reference": float(item.reference), "initial": float(initial[k]),
                     "fitted": float(fitted[k]), "error": float(error[k]),
                     "weight": None if item.weight is None else float(item.weight),
                     "scale": float(item.scale), "contribution": item.scale * residual ** 2,
                     "source": item.source})
    return rows


def _rmse(info, initial_residuals, fitted_residuals) -> dict:
    """{kind: {initial, fitted}} for every kind; None where the data set has no such item."""
    before = rmse_by_kind(info, initial_residuals) if info else {}
    after = rmse_by_kind(info, fitted_residuals) if info else {}
    return {k: {"initial": before.get(k), "fitted": after.get(k)} for k in KINDS}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _table(headers, rows, right) -> list[str]:
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.rjust(w) if k in right else c.ljust(w)
                         for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _report_text(summary: dict, parameters: list[dict], rows: list[dict]) -> str:
    lines = [f"reaxopt fit report: {summary['config']}",
             f"loss (training): initial {_g(summary['loss']['initial'])}, "
             f"final {_g(summary['loss']['final'])}"]
    if summary.get("validation_loss"):
        v = summary["validation_loss"]
        lines.append(f"loss (validation): initial {_g(v['initial'])}, final {_g(v['final'])}")
    lines.append(f"wall time {summary['wall_seconds']:.1f} s (first evaluation with compilation "
                 f"{summary['compile_seconds']:.1f} s), {summary['evaluations']} evaluations")
    for label in ("training", "validation"):
        part = summary.get(label)
        if not part:
            continue
        lines.append("")
        lines.append(f"{label} RMSE (kcal/mol, kcal/mol/Å, e, Å or degrees):")
        lines += ["  " + x for x in _table(
            ["kind", "items", "initial", "fitted"],
            [[k, str(part["items"].get(k, 0)), _g(v["initial"]), _g(v["fitted"])]
             for k, v in part["rmse"].items() if k in part["items"]], right={1, 2, 3})]
    lines += ["", "parameters:"]
    lines += ["  " + x for x in _table(
        ["parameter", "initial", "fitted", "lower", "upper"],
        [[p["label"], _number(p["initial"]), _number(p["fitted"]), _number(p["lower"]),
          _number(p["upper"])] for p in parameters], right={1, 2, 3, 4})]
    for label in ("training", "validation"):
        for kind in KINDS:
            selected = [r for r in rows if r["set"] == label and r["kind"] == kind]
            if not selected:
                continue
            lines += ["", f"{label} {kind} items:"]
            lines += ["  " + x for x in _table(
                ["item", "reference", "initial", "fitted", "error", "contribution"],
                [[r["item"], _g(r["reference"]), _g(r["initial"]), _g(r["fitted"]),
                  _g(r["error"], 4), _g(r["contribution"], 4)]
                 for r in selected], right={1, 2, 3, 4, 5})]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, *, config, inputs, problem, initial, fitted, theta_initial,
                  theta_best, best, history, wall_seconds, compile_seconds, evaluations,
                  log=None, lowest_training=None, sensitivity=None) -> dict:
    """Write every output file into ``out``; returns the summary dict.

    sensitivity: the ``sensitivity`` section (``reaxopt.report.sensitivity.to_json``) at the
    best force field; None where it was not computed.

    lowest_training: (its Evaluation, its trial/step record) of the force field with the lowest
    training loss when the best one, selected on validation, is another: written as
    ``ffield_lowest_training`` and summarised under ``lowest_training``."""
    out = Path(out)
    write_ffield(set_values(inputs.ffield, inputs.params, [float(v) for v in theta_best]),
                 out / "ffield")
    if lowest_training is not None:
        evaluation = lowest_training[0]
        write_ffield(set_values(inputs.ffield, inputs.params,
                                [float(v) for v in evaluation.theta]),
                     out / "ffield_lowest_training")
    elif (out / "ffield_lowest_training").exists():  # an earlier run's, of a resumed run
        (out / "ffield_lowest_training").unlink()
    rows = item_rows("training", problem.training_info, initial.training_residuals,
                     fitted.training_residuals)
    if problem.validation_info:
        rows += item_rows("validation", problem.validation_info, initial.validation_residuals,
                          fitted.validation_residuals)
    write_text_atomic(out / "report.csv", _csv_text(REPORT_COLUMNS, rows))
    write_text_atomic(out / "history.csv", _csv_text(HISTORY_COLUMNS, history))

    def counts(info):
        return {k: sum(i.kind == k for i in info) for k in KINDS if any(i.kind == k for i in info)}

    parameters = [{"label": spec.label, "section": spec.section, "entry": spec.entry,
                   "parameter": spec.parameter, "initial": float(a), "fitted": float(b),
                   "lower": spec.lower, "upper": spec.upper}
                  for spec, a, b in zip(inputs.params, theta_initial, theta_best)]
    summary = {
        "config": str(config.path),
        "output_dir": str(out),
        "loss": {"initial": initial.loss, "final": fitted.loss},
        "validation_loss": (None if fitted.validation_loss is None else
                            {"initial": initial.validation_loss, "final": fitted.validation_loss}),
        "selected_on": "validation" if fitted.validation_loss is not None else "training",
        "best": {k: best[k] for k in ("trial", "step", "iteration")},
        "lowest_training": None if lowest_training is None else {
            "loss": lowest_training[0].loss,
            "validation_loss": lowest_training[0].validation_loss,
            **{k: lowest_training[1][k] for k in ("trial", "step", "iteration")}},
        "training": {"structures": sum(n.startswith("training:") for n in problem.names),
                     "items": counts(problem.training_info),
                     "rmse": _rmse(problem.training_info, initial.training_residuals,
                                   fitted.training_residuals)},
        "validation": (None if not problem.validation_info else {
            "structures": sum(n.startswith("validation:") for n in problem.names),
            "items": counts(problem.validation_info),
            "rmse": _rmse(problem.validation_info, initial.validation_residuals,
                          fitted.validation_residuals)}),
        "energy_mode": config.loss.energy_mode,
        "parameters": parameters,
        "evaluations": evaluations,
        "wall_seconds": wall_seconds,
        "compile_seconds": compile_seconds,
        "sensitivity": sensitivity,
    }
    summary = _json_safe(summary)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(out / "report.txt", _report_text(summary, parameters, rows))
    if not (out / "config.yaml").exists() or not (out / "config.yaml").samefile(config.path):
        config.dump(out / "config.yaml")  # (a run of the output's own config keeps it as is)
    _write_figures(out, inputs, log)
    return summary


def _write_figures(out: Path, inputs, log) -> None:
    """The figures and summary.md (``reaxopt.report.markdown``); a failure only warns."""
    from reaxopt.report.markdown import write_report

    warn = log if log is not None else (lambda line: print(line))
    structures = inputs.training.structures + (inputs.validation.structures
                                               if inputs.validation else [])
    try:
        write_report(out, structures, warn=lambda line: warn(f"warning: {line}"))
    except Exception as exc:  # the fit's results are written; the figures are extras
        warn(f"warning: could not write the figures and summary.md: {type(exc).__name__}: {exc}")
