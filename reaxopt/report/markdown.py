"""``summary.md`` and the figures of a fit, written from the files of its output directory.

``write_report(out, structures=None)`` reads ``report.csv``, ``history.csv`` and
``summary.json``, draws ``parity.png``, ``convergence.png``, ``scans.png`` and
``sensitivity.png`` (``reaxopt.report.plots``) and writes ``summary.md``: RMSE and MAE per item
kind and per structure family (initial -> fitted), the parameter sensitivity table
(``reaxopt.report.sensitivity``, from ``summary.json``'s ``sensitivity``), and links to the
figures. Family and scan coordinate come from the structures' extended-XYZ info (``family``,
``coordinate``, ``coordinate_unit``); without ``structures`` they are read through the output
directory's ``config.yaml``. Classic trainset inputs carry no family: their summary has no
family table and no scan figure (a note says so).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from reaxopt.errors import InputError
from reaxopt.io.files import write_text_atomic
from reaxopt.report import plots
from reaxopt.report.sensitivity import TABLE_HEADER, direction_lines, table_rows

REQUIRED = ("report.csv", "history.csv", "summary.json")
FIGURES = (("parity.png", "Parity: computed vs reference"),
           ("convergence.png", "Convergence of the loss"),
           ("scans.png", "Energy along the scans"),
           ("sensitivity.png", "Parameter correlations"))
NO_FAMILY = "(no family)"


def missing_files(out: Path) -> list[str]:
    """The files ``write_report`` needs that ``out`` lacks."""
    return [name for name in REQUIRED if not (Path(out) / name).is_file()]


def read_outputs(out: Path) -> tuple[list[dict], list[dict], dict]:
    """(report.csv rows, history.csv rows, summary.json) of a fit's output directory;
    InputError naming the file that cannot be read (truncated, or not a fit's)."""
    import csv

    def read(name, parse):
        path = Path(out) / name
        try:
            return parse(path)
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
            raise InputError(f"cannot read {name} of a fit's outputs ({' '.join(str(exc).split())})"
                             "; expected the file as `reaxopt fit` writes it (is it truncated? "
                             "run the fit again, or resume it, to write it anew)",
                             file=path) from None

    summary = read("summary.json", lambda path: json.loads(path.read_text()))
    if not isinstance(summary, dict):
        raise InputError("expected a JSON object as `reaxopt fit` writes it",
                         file=Path(out) / "summary.json")
    return read("report.csv", plots.read_rows), read("history.csv", plots.read_rows), summary


def structures_from_config(out: Path):
    """The training and validation structures the run in ``out`` used (via its config.yaml)."""
    from reaxopt.config import load_config
    from reaxopt.inputs import load_inputs

    inputs = load_inputs(load_config(Path(out) / "config.yaml"))
    return inputs.training.structures + (inputs.validation.structures if inputs.validation
                                         else [])


def error_stats(rows: list[dict]) -> dict:
    """{n, rmse/mae initial, rmse/mae fitted} of report rows (fitted/initial minus reference)."""
    reference = np.array([plots.to_float(r["reference"]) for r in rows])
    out = {"n": len(rows)}
    for column in ("initial", "fitted"):
        error = np.array([plots.to_float(r[column]) for r in rows]) - reference
        out[f"rmse_{column}"] = plots.rmse(error)
        out[f"mae_{column}"] = float(np.mean(np.abs(error))) if error.size else math.nan
    return out


def _g(value, digits: int = 4) -> str:
    """A number for the summary; 'n/a' where it does not exist or is not finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.{digits}g}" if math.isfinite(value) else "n/a"


def _arrow(before, after) -> str:
    return f"{_g(before)} → {_g(after)}"


def _stats_table(groups: dict[tuple, list[dict]], first: list[str]) -> list[str]:
    header = first + ["items", "RMSE (initial → fitted)", "MAE (initial → fitted)"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * len(first) + ["---:"] * 3) + "|"]
    for key, rows in groups.items():
        s = error_stats(rows)
        lines.append("| " + " | ".join(list(key) + [str(s["n"]),
                                                    _arrow(s["rmse_initial"], s["rmse_fitted"]),
                                                    _arrow(s["mae_initial"], s["mae_fitted"])])
                     + " |")
    return lines


def sensitivity_markdown(section: dict) -> list[str]:
    """The "Parameter sensitivity" part of summary.md: how it was estimated, the table
    (``reaxopt.report.sensitivity.table_rows``) and the worst-determined directions."""
    cutoff = section.get("cutoff") or {}
    lines = ["## Parameter sensitivity", "",
             "At the best force field (`ffield`), from the Jacobian J of the "
             f"{section.get('items')} training items' weighted residuals (Gauss-Newton): "
             "covariance s² (JᵀJ)⁺ with "
             f"s² = loss / {section.get('degrees_of_freedom')} = {_g(section.get('s2'))}, "
             f"pseudo-inverse cutoff {cutoff.get('relative_eigenvalue')} x the largest "
             f"eigenvalue of the column-scaled JᵀJ ({cutoff.get('dropped')} dropped). Values "
             "and standard errors in the parameters' own units (as in the ffield); the "
             "contributors are the items with the largest share of (JᵀJ)_jj.", "",
             "| " + " | ".join(TABLE_HEADER) + " |", "|---|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
              for row in table_rows(section)]
    lines += ["", "Worst-determined directions (smallest eigenvalues of the column-scaled JᵀJ; "
              "components in units of each parameter's 1/sqrt((JᵀJ)_jj)):", ""]
    lines += [f"- {line}" for line in direction_lines(section)]
    return lines


def summary_markdown(summary: dict, rows: list[dict], labels: dict[str, dict],
                     figures: list[str], notes: list[str]) -> str:
    """The text of summary.md."""
    lines = ["# reaxopt fit summary", "", f"Configuration: `{summary.get('config', '?')}`", ""]
    loss = summary.get("loss") or {}
    if loss:
        lines.append(f"- training loss: {_arrow(loss.get('initial'), loss.get('final'))}")
    validation = summary.get("validation_loss")
    if validation:
        lines.append("- validation loss: "
                     + _arrow(validation.get("initial"), validation.get("final")))
    if "wall_seconds" in summary:
        lines.append(f"- wall time {_g(summary['wall_seconds'], 5)} s, of which the first "
                     f"evaluation with compilation {_g(summary.get('compile_seconds'), 5)} s; "
                     f"{summary.get('evaluations', '?')} evaluations")
    lines += ["", "Units: energy kcal/mol, forces kcal/mol/Å, charge e, geometry and cell Å or "
              "degrees.", "", "## Errors per item kind", ""]
    by_kind: dict[tuple, list[dict]] = {}
    for r in rows:
        by_kind.setdefault((r["set"], r["kind"]), []).append(r)
    lines += _stats_table(by_kind, ["set", "kind"])
    if labels:
        by_family: dict[tuple, list[dict]] = {}
        for r in sorted(rows, key=lambda r: (r["set"], r["kind"])):
            label = labels.get(plots.first_structure(r["item"]))
            family = label["family"] if label else NO_FAMILY
            by_family.setdefault((r["set"], r["kind"], family), []).append(r)
        lines += ["", "## Errors per family", ""]
        lines += _stats_table(dict(sorted(by_family.items())), ["set", "kind", "family"])
    if summary.get("sensitivity"):
        lines += [""] + sensitivity_markdown(summary["sensitivity"])
    lines += ["", "## Figures", ""]
    titles = dict(FIGURES)
    for name in figures:
        lines += [f"### {titles.get(name, name)}", "", f"![{titles.get(name, name)}]({name})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(out: Path, structures=None, warn=None) -> list[Path]:
    """Draw the figures and write summary.md into ``out``; returns the paths written.

    A figure that fails is skipped with a warning (``warn``, a callable taking one line; default
    ``warnings.warn``) and a note in summary.md. Raises FileNotFoundError naming the missing
    files when ``out`` lacks report.csv, history.csv or summary.json.
    """
    import warnings

    out = Path(out)
    warn = warn or (lambda line: warnings.warn(line, stacklevel=2))
    missing = missing_files(out)
    if missing:
        raise FileNotFoundError(f"{out} is not a reaxopt fit output directory: it lacks "
                                f"{', '.join(missing)}")
    rows, history, summary = read_outputs(out)
    notes: list[str] = []
    if structures is None:
        try:
            structures = structures_from_config(out)
        except Exception as exc:  # the data may have moved since the fit
            structures = []
            notes.append(f"families and scans are not shown: reading the structures through "
                         f"config.yaml failed ({' '.join(str(exc).split())})")
    labels = plots.structure_labels(structures)
    if structures and not labels:
        notes.append("the structures carry no `family` info (classic trainset inputs): no "
                     "per-family table and no scan figure")
    draw = {"parity.png": lambda p: plots.parity_plot(rows, p),
            "convergence.png": lambda p: plots.convergence_plot(history, p),
            "scans.png": lambda p: plots.scan_plot(rows, labels, p),
            "sensitivity.png": lambda p: plots.correlation_plot(summary.get("sensitivity"), p)}
    written, figures = [], []
    for name, _ in FIGURES:
        try:
            path = draw[name](out / name)
        except Exception as exc:  # a figure must never cost the fit its outputs
            warn(f"could not draw {name}: {type(exc).__name__}: {exc}")
            notes.append(f"{name} could not be drawn ({type(exc).__name__}: {exc})")
            continue
        if path is None:
            if name == "convergence.png":
                notes.append("no convergence figure: the run made no optimizer iterations")
            elif name == "scans.png" and labels:
                notes.append("no scan figure: no family has energies at three or more "
                             "scan coordinates")
            elif name == "sensitivity.png" and "sensitivity" in summary:
                (out / name).unlink(missing_ok=True)  # an earlier run's, of other parameters
                notes.append("no parameter sensitivity: it could not be computed (run.log "
                             "says why)")
            continue
        written.append(path)
        figures.append(name)
    text = summary_markdown(summary, rows, labels, figures, notes)
    write_text_atomic(out / "summary.md", text)
    return written + [out / "summary.md"]
