"""What made a loss non-finite: the structures, the items and the energy terms, in words.

Host-side and only run when an evaluation is not finite: the terms of a structure are computed
once more, alone, at the geometry the loss saw (one small compilation per padded size).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import numpy as np

from reaxopt.cluster.neighbours import pairs_within
from reaxopt.energy.total import energy_terms
from reaxopt.packed import row_systems

MAX_NAMED = 5  # structures and items named in one message


@partial(jax.jit, static_argnames="topology")
def _terms(positions, system, params, topology):
    pairs = pairs_within(system.pairs, positions, system.cell, params.general[12])
    return energy_terms(positions, dataclasses.replace(system, pairs=pairs), params, topology)


def structure_terms(model, row: int, params) -> str:
    """Which energy terms (or charges, or the geometry) of model row ``row`` are not finite."""
    positions, system = row_systems(model)[row]
    mask = np.asarray(system.atom_mask, bool)
    if not np.all(np.isfinite(np.asarray(positions)[mask])):
        return "its geometry is not finite (the relaxation diverged)"
    terms, charges = jax.device_get(_terms(positions, system, params, model.topology))
    bad = [name for name, value in terms.items() if not np.isfinite(value)]
    if bad:
        return f"non-finite energy terms: {', '.join(bad)}"
    if not np.all(np.isfinite(np.asarray(charges)[mask])):
        return "non-finite charges (charge equilibration)"
    return "its energy terms and charges are finite: its forces are not"


def items_named(info: list, residuals) -> list[str]:
    """'source: item' of every item whose residual is not finite."""
    if residuals is None:
        return []
    bad = np.flatnonzero(~np.isfinite(np.asarray(residuals, float)))
    return [f"{info[k].source}: {info[k].kind} {info[k].what}" for k in bad]


def describe(rows: list[int], names, items: list[str], model, params) -> str:
    """One sentence naming the non-finite structures (with their terms) and items."""
    parts = []
    if rows:
        named = []
        for row in rows[:MAX_NAMED]:
            try:
                terms = structure_terms(model, row, params)
            except Exception as exc:  # naming must never cost the fit
                terms = f"terms not computed: {type(exc).__name__}"
            named.append(f"{names[row]} ({terms})")
        more = f" and {len(rows) - MAX_NAMED} more" if len(rows) > MAX_NAMED else ""
        parts.append("structures with non-finite energy, forces or charges: "
                     + "; ".join(named) + more)
    if items:
        more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
        parts.append("items with a non-finite value: " + "; ".join(items[:MAX_NAMED]) + more)
    return ". ".join(parts) or "no structure or item is non-finite: the gradient is not"
