"""Judging a trajectory: NVE energy drift, molecules from bond orders, and the verdict.

Pure functions on ``reaxopt.md.engine.Trajectory`` data; no LAMMPS here.
"""

from __future__ import annotations

import math

import numpy as np

OK, FLAG, SKIPPED = "ok", "FLAG", "skipped"
SERIES_POINTS = 400  # points of the energy series kept in a result row (for md.json)


def nve_drift(time_ps, energy, n_atoms: int) -> float:
    """Slope of a least-squares line through total energy (kcal/mol) against time (ps), per
    atom: kcal/mol/atom/ps. NaN with fewer than 3 samples or a non-finite one."""
    t, e = np.asarray(time_ps, float), np.asarray(energy, float)
    if len(t) < 3 or not (np.all(np.isfinite(t)) and np.all(np.isfinite(e))):
        return math.nan
    slope = np.polyfit(t - t.mean(), e - e.mean(), 1)[0]
    return float(slope) / n_atoms


def molecules(n_atoms: int, pairs) -> list[frozenset[int]]:
    """The connected components of ``n_atoms`` atoms joined by ``pairs`` ((B, 2) 0-based),
    each a frozenset of atom indices, ordered by their lowest index."""
    parent = list(range(n_atoms))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.asarray(pairs, int).reshape(-1, 2):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, set[int]] = {}
    for i in range(n_atoms):
        groups.setdefault(root(i), set()).add(i)
    return sorted((frozenset(g) for g in groups.values()), key=min)


def connectivity_change(before: list[frozenset], after: list[frozenset]) -> str:
    """``unchanged`` when both partitions of the atoms are the same; ``fragmented`` when a
    molecule of ``before`` is split over several of ``after`` (and none merged),
    ``fused`` when a molecule of ``after`` holds atoms of several of ``before`` (and none
    split), ``rearranged`` when both happened."""
    home = {atom: k for k, group in enumerate(before) for atom in group}
    merged = any(len({home[a] for a in group}) > 1 for group in after)
    later = {atom: k for k, group in enumerate(after) for atom in group}
    broken = any(len({later[a] for a in group}) > 1 for group in before)
    if broken and merged:
        return "rearranged"
    if broken:
        return "fragmented"
    if merged:
        return "fused"
    return "unchanged"


def thinned(values, points: int = SERIES_POINTS) -> list:
    """At most ``points`` evenly spaced values of a series, the first and last included; None
    for a non-finite value (JSON has no NaN)."""
    values = list(values)
    if len(values) > points:
        keep = np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))
        values = [values[k] for k in keep]
    return [float(v) if math.isfinite(v) else None for v in values]


def _reasons(trajectory, drift: float, change: str | None, max_drift: float) -> list[str]:
    """Why a trajectory is flagged, in words (empty: it is not)."""
    reasons = []
    if trajectory.error is not None:
        reasons.append(f"LAMMPS failed: {trajectory.error}")
    if not trajectory.finite:
        k = next(k for k, (e, f) in enumerate(zip(trajectory.energy, trajectory.max_force))
                 if not (math.isfinite(e) and math.isfinite(f)))
        reasons.append(f"non-finite energy or forces at {trajectory.time[k]:.4g} ps")
    if math.isfinite(drift) and abs(drift) > max_drift:
        reasons.append(f"NVE drift {drift:.3g} kcal/mol/atom/ps exceeds {max_drift:g}")
    if change not in (None, "unchanged"):
        reasons.append(f"connectivity {change}")
    return reasons


def judge(name: str, n_atoms: int, trajectory, max_drift: float) -> dict:
    """A result row for one trajectory: name, atoms, status (``ok`` or ``FLAG``), reasons,
    drift (kcal/mol/atom/ps over the NVE part, None when not measured), max_force (kcal/mol/Å,
    the largest over the samples), connectivity (``unchanged``, ``fragmented``, ``fused``,
    ``rearranged``, or None when the run did not end), molecules [start, end] counts, the
    mean temperature (K) of the NVE part, nve_start (ps, None when NVE was not reached), and
    the series time (ps) and energy (kcal/mol)."""
    t = trajectory
    drift = (nve_drift(t.time[t.nve_from:], t.energy[t.nve_from:], n_atoms)
             if t.nve_from is not None else math.nan)
    start = None if t.bonds_start is None else molecules(n_atoms, t.bonds_start)
    end = None if t.bonds_end is None else molecules(n_atoms, t.bonds_end)
    change = None if start is None or end is None else connectivity_change(start, end)
    reasons = _reasons(t, drift, change, max_drift)
    forces = [f for f in t.max_force if math.isfinite(f)]
    nve_temperature = t.temperature[t.nve_from:] if t.nve_from is not None else []
    return {"name": name, "atoms": n_atoms, "status": FLAG if reasons else OK,
            "reasons": reasons, "drift": drift if math.isfinite(drift) else None,
            "max_force": max(forces) if forces else None, "connectivity": change,
            "molecules": [None if start is None else len(start),
                          None if end is None else len(end)],
            "temperature": float(np.mean(nve_temperature)) if nve_temperature else None,
            "nve_start": None if t.nve_from is None else t.time[t.nve_from],
            "time": thinned(t.time), "energy": thinned(t.energy)}


def skipped(name: str, n_atoms: int, reason: str) -> dict:
    """A result row for a structure that was not run, saying why."""
    return {"name": name, "atoms": n_atoms, "status": SKIPPED, "reasons": [reason],
            "drift": None, "max_force": None, "connectivity": None,
            "molecules": [None, None], "temperature": None, "nve_start": None, "time": [],
            "energy": []}
