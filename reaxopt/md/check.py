"""The MD check of a force field over structures: one result row each, LAMMPS's failures
included, and its use at the end of a fit (``validation.md_check``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from reaxopt.errors import InputError
from reaxopt.io.files import write_text_atomic
from reaxopt.md.analysis import FLAG, judge, skipped
from reaxopt.md.engine import MDSettings, import_lammps, run_trajectory
from reaxopt.md.outputs import summary_line, write_md_outputs


def skip_reason(structure) -> str | None:
    """Why a structure cannot be run (a single atom, a net charge), or None."""
    if structure.n_atoms < 2:
        return "a single atom: no motion to check"
    if abs(structure.total_charge) > 1e-9:
        return (f"net charge {structure.total_charge:g} e: LAMMPS's fix qeq/reaxff keeps every "
                "structure neutral")
    return None


def _check_elements(ff, structures) -> None:
    """InputError naming the structures whose elements the force field lacks."""
    known = {s.lower() for s in ff.symbols}
    problems = [f"{s.name}: {', '.join(sorted({e for e in s.symbols if e.lower() not in known}))}"
                for s in structures if any(e.lower() not in known for e in s.symbols)]
    if problems:
        raise InputError("elements that are not atom types of the force field ("
                         + "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else "")
                         + f"); expected only {', '.join(ff.symbols)}", file=ff.source)


def check_structure(ffield_path, structure, settings: MDSettings, ff=None) -> dict:
    """The result row of one structure (``reaxopt.md.analysis.judge``), or a ``skipped`` row."""
    reason = skip_reason(structure)
    if reason is not None:
        return skipped(structure.name, structure.n_atoms, reason)
    trajectory = run_trajectory(ffield_path, structure, settings, ff)
    return judge(structure.name, structure.n_atoms, trajectory, settings.max_drift)


def md_check(ffield_path, structures, settings: MDSettings = MDSettings(), progress=None
             ) -> list[dict]:
    """Run every structure (a list of ``reaxopt.structure.Structure``) under the force field
    file ``ffield_path``; returns their result rows in order. progress(line) hears of each
    structure as it ends. LammpsMissing when LAMMPS cannot be loaded, InputError when a
    structure has an element the force field lacks, before anything runs."""
    from reaxopt.io.ffield import read_ffield

    import_lammps()
    ff = read_ffield(ffield_path)
    _check_elements(ff, structures)
    rows = []
    for k, structure in enumerate(structures, start=1):
        start = time.perf_counter()
        row = check_structure(ffield_path, structure, settings, ff)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if progress is not None:
            progress(f"md {k}/{len(structures)} {structure.name} ({structure.n_atoms} atoms): "
                     f"{row['status']} in {row['seconds']:.1f} s"
                     + (f" ({'; '.join(row['reasons'])})" if row["reasons"] else ""))
    return rows


def pick_structures(structures) -> list:
    """One structure per composition (and periodicity) among those that can run: the one
    with the lowest reference energy where energies are given, else the first. A data set's
    rattled copies and scans of a molecule thus give one trajectory, from its most relaxed
    geometry."""
    chosen: dict[tuple, object] = {}
    for s in structures:
        if skip_reason(s) is not None:
            continue
        key = (tuple(sorted((e, s.symbols.count(e)) for e in set(s.symbols))), s.cell is None)
        held = chosen.get(key)
        if held is None or (s.energy is not None and held.energy is not None
                            and s.energy < held.energy):
            chosen[key] = s
    return list(chosen.values())


def _summary(rows: list[dict]) -> dict:
    """What summary.json keeps of the check: counts, the flagged names and a short row each."""
    keep = ("name", "atoms", "status", "drift", "max_force", "connectivity", "reasons")
    return {"structures": len(rows), "flagged": [r["name"] for r in rows if r["status"] == FLAG],
            "files": ["md.md", "md.json", "md.png"],
            "rows": [{k: r[k] for k in keep} for r in rows]}


def _run_for_fit(out: Path, inputs, log) -> dict:
    """Run the check on ``out/ffield`` over the fit's structures and write its files."""
    structures = inputs.training.structures + (inputs.validation.structures
                                               if inputs.validation else [])
    picked = pick_structures(structures)
    settings = MDSettings(lgvdw=inputs.lgvdw, enobonds=inputs.config.energy.enobonds)
    log(f"MD check (validation.md_check) of {out / 'ffield'}: {len(picked)} structures "
        f"(one per composition), {settings.steps} steps of {settings.timestep:g} fs at "
        f"{settings.temperature:g} K in LAMMPS")
    start = time.perf_counter()
    rows = md_check(out / "ffield", picked, settings)
    write_md_outputs(out, rows, settings, out / "ffield", warn=lambda line: log(f"warning: {line}"))
    log(f"MD check: {summary_line(rows)} in {time.perf_counter() - start:.1f} s; see "
        f"{out / 'md.md'}")
    return _summary(rows)


def fit_md_check(out: Path, inputs, log, summary: dict) -> dict:
    """The MD check of a fit's written ``out/ffield`` over its training and validation
    structures (one per composition: ``pick_structures``), written beside it; returns
    ``summary`` with ``md_check`` added (``{"error": ...}`` when it failed) and rewrites
    ``out/summary.json``. A failure is logged in one line and never raised: the fit's other
    outputs are already written."""
    try:
        summary["md_check"] = _run_for_fit(Path(out), inputs, log)
    except Exception as exc:  # the fit's own outputs are written: this check only reports
        what = " ".join(str(exc).split()) or type(exc).__name__
        log(f"warning: the MD check (validation.md_check) did not run to the end: {what}; "
            "the fit's other outputs are written")
        summary["md_check"] = {"error": what}
    try:
        write_text_atomic(Path(out) / "summary.json", json.dumps(summary, indent=1) + "\n")
    except OSError as exc:
        log(f"warning: could not add the MD check to summary.json: {exc}")
    return summary
