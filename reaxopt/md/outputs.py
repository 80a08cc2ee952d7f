"""The MD check's outputs: a text table (stdout), ``md.md``, ``md.json`` and ``md.png``.

Each file is written under a temporary name and renamed over the old one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from reaxopt.io.files import write_text_atomic
from reaxopt.md.analysis import FLAG
from reaxopt.report.plots import save_figure

HEADERS = ("structure", "atoms", "drift (kcal/mol/atom/ps)", "max force (kcal/mol/Å)",
           "connectivity", "status", "why")
OUTPUT_FILES = ("md.md", "md.json", "md.png")
MAX_PANELS = 24  # structures drawn in md.png


def _g(value, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _connectivity(row: dict) -> str:
    """``unchanged``, or the change with the molecule counts (``fragmented 1->5``)."""
    change = row["connectivity"]
    if change is None:
        return "n/a"
    start, end = row["molecules"]
    return change if change == "unchanged" else f"{change} {start}->{end}"


def table_cells(rows: list[dict]) -> list[list[str]]:
    """One list of cell texts per result row, in the order of HEADERS."""
    return [[r["name"], str(r["atoms"]), _g(r["drift"]), _g(r["max_force"], 4),
             _connectivity(r), r["status"], "; ".join(r["reasons"]) or "-"] for r in rows]


def text_table(rows: list[dict]) -> str:
    """The rows as an aligned plain-text table (numbers right-aligned)."""
    cells = [list(HEADERS)] + table_cells(rows)
    widths = [max(len(c[k]) for c in cells) for k in range(len(HEADERS))]
    right = {1, 2, 3}

    def line(row):
        return "  ".join(c.rjust(w) if k in right else c.ljust(w)
                         for k, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(cells[0]), line(["-" * w for w in widths])] + [line(c) for c in cells[1:]]
    return "\n".join(lines) + "\n"


def summary_line(rows: list[dict]) -> str:
    """``N structures: K flagged (names, the first 10)``, or ``..., none flagged``."""
    flagged = [r["name"] for r in rows if r["status"] == FLAG]
    skipped = sum(r["status"] == "skipped" for r in rows)
    names = ", ".join(flagged[:10]) + (", ..." if len(flagged) > 10 else "")
    text = f"{len(rows)} structures: " + (f"{len(flagged)} flagged ({names})" if flagged
                                          else "none flagged")
    return text + (f", {skipped} skipped" if skipped else "")


def markdown(rows: list[dict], settings, ffield) -> str:
    """md.md: what was run, the table, how to read it and the figure."""
    cells = table_cells(rows)
    lines = ["# MD check", "",
             f"Force field `{ffield}`: {settings.steps} steps of {settings.timestep:g} fs "
             f"({settings.steps * settings.timestep / 1000:g} ps) per structure at "
             f"{settings.temperature:g} K, the first half NVT (Nosé–Hoover), the rest NVE, in "
             f"LAMMPS (`pair_style reaxff` + `fix qeq/reaxff`). {summary_line(rows)}.", "",
             "| " + " | ".join(HEADERS) + " |",
             "|" + "|".join("---:" if k in (1, 2, 3) else "---" for k in range(len(HEADERS)))
             + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines += ["", f"Drift: slope of a straight line through the total energy against time over "
              f"the NVE part, per atom; flagged above {settings.max_drift:g} kcal/mol/atom/ps. "
              "Connectivity: molecules joined by bond orders above 0.3 at the start and the "
              "end. A structure is flagged also when LAMMPS fails or the energy or a force is "
              "not finite.", "", "![total energy against time](md.png)", ""]
    return "\n".join(lines)


def json_text(rows: list[dict], settings, ffield, geo=None) -> str:
    """md.json: the settings, the flagged count and every row (series thinned)."""
    data = {"ffield": str(ffield), "geo": None if geo is None else str(geo),
            "settings": dataclasses.asdict(settings), "bond_order_threshold": 0.3,
            "flagged": sum(r["status"] == FLAG for r in rows), "structures": rows}
    return json.dumps(data, indent=1) + "\n"


def energy_plot(rows: list[dict], path: Path) -> Path | None:
    """One small panel per structure: total energy minus its start (kcal/mol) against time
    (ps), the NVT part shaded, red when flagged; at most MAX_PANELS, the flagged first. None
    when nothing ran."""
    ran = [r for r in rows if len(r["time"]) > 1]
    if not ran:
        return None
    drawn = sorted(ran, key=lambda r: r["status"] != FLAG)[:MAX_PANELS]
    from reaxopt.report.plots import _pyplot

    plt = _pyplot()
    columns = min(4, len(drawn))
    lines = math.ceil(len(drawn) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(max(3.6 * columns, 6.4), 2.8 * lines + 0.6),
                             squeeze=False, layout="constrained")
    for ax, row in zip(axes.flat, drawn):
        t = [x for x, e in zip(row["time"], row["energy"]) if x is not None and e is not None]
        e = [y for x, y in zip(row["time"], row["energy"]) if x is not None and y is not None]
        if e:
            colour = "tab:red" if row["status"] == FLAG else "tab:blue"
            ax.plot(t, [y - e[0] for y in e], "-", color=colour, lw=1.0)
        if row.get("nve_start") is not None:
            ax.axvspan(0.0, row["nve_start"], color="0.9", zorder=0)
        ax.set_title(f"{row['name']}: {row['status']}", fontsize=9)
        ax.set_xlabel("time (ps)", fontsize=8)
        ax.set_ylabel("E - E(0) (kcal/mol)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(drawn):]:
        ax.set_visible(False)
    more = (f"; {len(drawn)} of {len(ran)} structures drawn, the flagged first"
            if len(ran) > len(drawn) else "")
    fig.suptitle(f"Total energy (NVT shaded, then NVE{more})", fontsize=10)
    return save_figure(fig, path)


def write_md_outputs(out: Path, rows: list[dict], settings, ffield, geo=None, warn=None
                     ) -> list[Path]:
    """Write md.md, md.json and md.png into ``out`` (created); returns the paths written.
    A figure that cannot be drawn only calls ``warn(line)``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "md.json", json_text(rows, settings, ffield, geo))
    write_text_atomic(out / "md.md", markdown(rows, settings, ffield))
    written = [out / "md.md", out / "md.json"]
    try:
        figure = energy_plot(rows, out / "md.png")
    except Exception as exc:  # the table is written; the figure is an extra
        if warn is not None:
            warn(f"could not draw md.png: {type(exc).__name__}: {exc}")
        figure = None
    if figure is not None:
        written.append(figure)
    return written
