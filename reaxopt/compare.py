"""Two force fields side by side on one configuration's data: RMSE per item kind.

Each force field is evaluated as ``reaxopt fit`` with ``optimizer.steps: 0`` would evaluate it
(``reaxopt.fit.run_fit``: the same model, loss items and geometry optimisations), into a
temporary output directory, and the summaries' RMSEs are tabulated.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from reaxopt.config import Config
from reaxopt.loss import KINDS

UNITS = {"energy": "kcal/mol", "forces": "kcal/mol/Å", "charge": "e", "geometry": "Å/°",
         "cell": "Å/°", "heatfo": "kcal/mol"}


def evaluate_force_field(config: Config, ffield: Path) -> dict:
    """The summary (``summary.json`` content) of a zero-step fit of ``ffield`` on ``config``'s
    data; the parameter selection and bounds stay the config's."""
    from reaxopt.fit import run_fit

    with tempfile.TemporaryDirectory(prefix="reaxopt-compare-") as folder:
        run = dataclasses.replace(
            config, force_field=Path(ffield).resolve(), output_dir=Path(folder),
            optimizer=dataclasses.replace(config.optimizer, steps=0))
        return run_fit(run, stream=False, sensitivity=False).summary


def _g(value) -> str:
    """A table entry: '-' where a value does not exist (null: not finite, or no such item)."""
    return "-" if value is None else f"{value:.6g}"


def compare_rows(summaries: list[dict]) -> list[list]:
    """[set, kind, items, rmse per summary...] for every set and kind some item has."""
    rows = []
    for part in ("training", "validation"):
        first = summaries[0].get(part)
        if not first:
            continue
        for kind in KINDS:
            if not first["items"].get(kind):
                continue
            rows.append([part, kind, first["items"][kind]]
                        + [s[part]["rmse"][kind]["fitted"] for s in summaries])
    return rows


def compare_text(ffields: list[Path], summaries: list[dict]) -> str:
    """The side-by-side table (columns A, B, ...): RMSE per data set and item kind, losses."""
    names = [chr(ord("A") + k) for k in range(len(ffields))]
    header = ["set", "kind", "unit", "items"] + [f"RMSE {n}" for n in names]
    body = [[part, kind, UNITS[kind], str(n)] + [_g(v) for v in values]
            for part, kind, n, *values in compare_rows(summaries)]
    body.append(["training", "loss", "", ""] + [_g(s["loss"]["final"]) for s in summaries])
    if summaries[0].get("validation_loss"):
        body.append(["validation", "loss", "", ""]
                    + [_g((s.get("validation_loss") or {}).get("final")) for s in summaries])
    widths = [max(len(r[k]) for r in [header] + body) for k in range(len(header))]
    lines = ["  ".join(c.rjust(w) if k >= 3 else c.ljust(w)
                       for k, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    legend = [f"{n}: {p}" for n, p in zip(names, ffields)]
    return "\n".join(legend + [""] + lines) + "\n"
