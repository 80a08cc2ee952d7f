"""Figures of a fit (PNG, matplotlib's Agg backend), drawn from the files of its output dir.

``parity_plot``      computed vs reference energies and forces, starting and fitted force field.
``convergence_plot`` training and validation loss against the optimizer iteration (log scale).
``scan_plot``        energy along each scan family's coordinate: reference, initial, fitted.
``correlation_plot`` the fitted parameters' correlation matrix (``summary.json`` → sensitivity).

Each takes the rows of ``report.csv`` / ``history.csv`` as dicts of strings (``read_rows``), or
the summary's section, and returns the path written, or None when there is nothing to draw.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

UNITS = {"energy": "kcal/mol", "forces": "kcal/mol/Å", "charge": "e", "geometry": "Å or °",
         "cell": "Å or °", "heatfo": "kcal/mol"}
LABELS = {"energy": "Energy", "forces": "Force component", "charge": "Charge",
          "geometry": "Geometry", "cell": "Cell parameter", "heatfo": "Heat of formation"}
COORDINATE_UNITS = {"angstrom": "Å", "degree": "°", "path_fraction": "path fraction"}
PARITY_KINDS = ("energy", "forces")
MIN_SCAN_POINTS = 3  # a family with fewer points is not drawn as a curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def to_float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def first_structure(item: str) -> str:
    """The structure a structured-input report item is about: ``"A - B"`` -> A,
    ``"A atom 3 fx"`` -> A, ``"A"`` -> A."""
    return item.split(" - ", 1)[0].split(" atom ", 1)[0].strip()


def structure_labels(structures) -> dict[str, dict]:
    """name -> {family, coordinate, unit} from each structure's extended-XYZ info (``extra``);
    structures without a family are left out; coordinate is None when absent."""
    labels = {}
    for s in structures:
        extra = getattr(s, "extra", None) or {}
        if extra.get("family") is None:
            continue
        coordinate = to_float(extra.get("coordinate"))
        labels[s.name] = {"family": str(extra["family"]),
                          "coordinate": None if math.isnan(coordinate) else coordinate,
                          "unit": str(extra.get("coordinate_unit", ""))}
    return labels


def rmse(values) -> float:
    values = np.asarray(values, float)
    return float(np.sqrt(np.mean(values ** 2))) if values.size else math.nan


def parity_plot(rows: list[dict], path: Path) -> Path | None:
    """Computed vs reference for energies and forces (one panel each; other kinds when those
    are absent), starting force field in grey, fitted in colour per data set, y = x dashed."""
    present = [k for k in PARITY_KINDS if any(r["kind"] == k for r in rows)]
    if not present:
        present = list(dict.fromkeys(r["kind"] for r in rows))[:2]
    if not present:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 5.0), squeeze=False)
    for ax, kind in zip(axes[0], present):
        selected = [r for r in rows if r["kind"] == kind]
        reference = np.array([to_float(r["reference"]) for r in selected])
        initial = np.array([to_float(r["initial"]) for r in selected])
        ax.scatter(reference, initial, s=10, facecolors="none", edgecolors="0.6", linewidths=0.7,
                   label=f"initial, all sets (RMSE {rmse(initial - reference):.3g})")
        for label, colour in (("training", "tab:blue"), ("validation", "tab:orange")):
            part = [r for r in selected if r["set"] == label]
            if not part:
                continue
            ref = np.array([to_float(r["reference"]) for r in part])
            fit = np.array([to_float(r["fitted"]) for r in part])
            ax.scatter(ref, fit, s=10, color=colour, alpha=0.8,
                       label=f"fitted, {label} (RMSE {rmse(fit - ref):.3g})")
        finite = np.concatenate([reference, initial,
                                 [to_float(r["fitted"]) for r in selected]])
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low, high = finite.min(), finite.max()
            pad = 0.05 * (high - low or 1.0)
            ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8,
                    label="y = x")
            ax.set_xlim(low - pad, high + pad)
            ax.set_ylim(low - pad, high + pad)
        ax.set_aspect("equal", adjustable="box")
        unit = UNITS.get(kind, "")
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"ReaxFF ({unit})")
        ax.set_title(f"{LABELS.get(kind, kind)}: {len(selected)} items (RMSE in {unit})")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def convergence_plot(history: list[dict], path: Path) -> Path | None:
    """Training and validation loss at every recorded optimizer iteration (log scale)."""
    rows = [h for h in history if h.get("event") == "iteration"] or list(history)
    if not rows:
        return None
    plt = _pyplot()
    x = np.arange(1, len(rows) + 1)
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    for key, label, colour in (("loss", "training loss", "tab:blue"),
                               ("validation_loss", "validation loss", "tab:orange")):
        y = np.array([to_float(h.get(key)) for h in rows])
        keep = np.isfinite(y) & (y > 0)
        if keep.any():
            ax.plot(x[keep], y[keep], marker="o", ms=3, lw=1.2, color=colour, label=label)
    # where each outer step (or trial) starts again
    starts = [k + 1 for k in range(1, len(rows))
              if (rows[k]["trial"], rows[k]["step"]) != (rows[k - 1]["trial"], rows[k - 1]["step"])]
    for k, s in enumerate(starts):
        ax.axvline(s - 0.5, color="0.7", lw=0.8, ls=":",
                   label="new outer step" if k == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer iteration (all trials and outer steps)")
    ax.set_ylabel("loss (sum of scaled squared residuals)")
    ax.set_title("Convergence")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def scan_points(rows: list[dict], labels: dict[str, dict]) -> dict[str, dict]:
    """family -> {unit, points: [(coordinate, reference, initial, fitted, set)]}, sorted by
    coordinate, from the energy items whose structure has a family and a coordinate.

    A relative item ``"A - B"`` places A's energy above the group's reference structure B; B
    itself is added at 0 when it belongs to the same family. Each series is then shifted to 0
    at the family's lowest reference point, so absolute and relative energies read alike."""
    families: dict[str, dict] = {}
    for r in rows:
        if r["kind"] != "energy":
            continue
        names = [n.strip() for n in r["item"].split(" - ")]
        label = labels.get(names[0])
        if label is None or label["coordinate"] is None:
            continue
        family = families.setdefault(label["family"], {"unit": label["unit"], "points": {}})
        family["points"][names[0]] = (label["coordinate"], to_float(r["reference"]),
                                      to_float(r["initial"]), to_float(r["fitted"]), r["set"])
        if len(names) == 2:
            base = labels.get(names[1])
            if base and base["family"] == label["family"] and base["coordinate"] is not None:
                family["points"].setdefault(names[1], (base["coordinate"], 0.0, 0.0, 0.0,
                                                       r["set"]))
    out = {}
    for name, family in families.items():
        points = sorted(family["points"].values())
        if len(points) < MIN_SCAN_POINTS:
            continue
        lowest = min(points, key=lambda p: p[1])
        points = [(p[0], p[1] - lowest[1], p[2] - lowest[2], p[3] - lowest[3], p[4])
                  for p in points]
        out[name] = {"unit": family["unit"], "points": points}
    return out


def scan_plot(rows: list[dict], labels: dict[str, dict], path: Path) -> Path | None:
    """One small panel per scan family: reference, initial and fitted energy along its
    coordinate (kcal/mol, 0 at the lowest reference point)."""
    families = scan_points(rows, labels)
    if not families:
        return None
    plt = _pyplot()
    n = len(families)
    columns = min(4, n)
    lines = math.ceil(n / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(max(3.6 * columns, 6.4), 3.0 * lines + 0.8),
                             squeeze=False, layout="constrained")
    for ax, (name, family) in zip(axes.flat, sorted(families.items())):
        points = family["points"]
        x = [p[0] for p in points]
        ax.plot(x, [p[1] for p in points], "k-o", ms=4, lw=1.5, label="reference")
        ax.plot(x, [p[2] for p in points], "--s", color="0.55", ms=3, lw=1.0, label="initial")
        ax.plot(x, [p[3] for p in points], "-^", color="tab:red", ms=3, lw=1.2, label="fitted")
        held_out = {p[4] for p in points} == {"validation"}
        ax.set_title(name + (" (validation)" if held_out else ""), fontsize=9)
        unit = COORDINATE_UNITS.get(family["unit"], family["unit"])
        ax.set_xlabel(f"coordinate ({unit})" if unit else "coordinate", fontsize=8)
        ax.set_ylabel("ΔE (kcal/mol)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.suptitle("Energy along the scans (0 at each family's lowest reference point)",
                 fontsize=10)
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def correlation_plot(section: dict | None, path: Path) -> Path | None:
    """Heat map of the parameters' correlation matrix (``reaxopt.report.sensitivity.to_json``
    section; -1 blue to +1 red, undetermined parameters grey), values written in the cells for
    up to 12 parameters; saved atomically. None without a section."""
    if not section or not section.get("parameters"):
        return None
    plt = _pyplot()
    labels = [p["label"] for p in section["parameters"]]
    matrix = np.array([[math.nan if v is None else float(v) for v in row]
                       for row in section["correlation"]], float).reshape(len(labels), -1)
    n = len(labels)
    side = min(max(5.0, 0.28 * n + 2.8), 24.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-1.0, vmax=1.0)
    ticks = np.arange(n)
    size = 8 if n <= 20 else max(4, 8 - (n - 20) // 8)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, fontsize=size)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if math.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(matrix[i, j]) > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="correlation")
    ax.set_title(f"Parameter correlations (Gauss-Newton, {section.get('items', '?')} training "
                 "items)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` as a PNG atomically (a temporary file, then a rename) and close
    it; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    finally:
        _pyplot().close(fig)
        if tmp.exists():
            tmp.unlink()
    return path
