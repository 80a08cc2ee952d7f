"""Single points of many structures packed into one system: one compiled shape per file.

The structures' unpadded host systems (``reaxopt.evaluate.host_systems``) are packed
(``reaxopt.packed.pack``; into more than one system only past a memory budget, ``pack_groups``)
and each packed system is evaluated by one call of ``packed_single_points``, whose executable is
kept on disk (``reaxopt.executables``): a later process on the same file neither traces nor
compiles it. Units: Å, kcal/mol, kcal/mol/Å, e.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.energy.segments import charges_vanish
from reaxopt.energy.total import TERMS, System, energy_at_charges, equilibrate_charges
from reaxopt.executables import cached_executable, static_text
from reaxopt.forcefield import Params, Topology, expand
from reaxopt.packed import Packed, pack, pack_counts

QEQ_BUDGET = 20_000_000  # dense QEq matrix entries (charged structures x block^2) per pack


@functools.partial(jax.jit, static_argnames="topology")
def packed_single_points(positions, system: System, segments, params: Params,
                         topology: Topology):
    """(energy (S,), terms (12, S) in ``TERMS`` order, forces (N, 3) at fixed charges, charges
    (N,)) of a packed system (``reaxopt.packed.pack``): kcal/mol, kcal/mol/Å, e."""
    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff, segments)

    def total(x, q):
        terms = energy_at_charges(x, q, system, ff, topology, segments)
        return jnp.sum(sum(terms.values())), terms

    (_, terms), gradient = jax.value_and_grad(total, has_aux=True)(positions, charges)
    return (sum(terms.values()), jnp.stack([terms[name] for name in TERMS]),
            jnp.where(system.atom_mask[:, None], -gradient, 0.0), charges)


def pack_groups(systems: list[System], budget: int, qeq_budget: int = QEQ_BUDGET
                ) -> list[list[int]]:
    """Indices of the (unpadded) systems each packed system holds, in order: all in one, unless
    its list entries (atoms + pairs + angles + ...) would pass ``budget`` or its dense QEq
    blocks (charged structures x largest atom count^2) ``qeq_budget``; then a new one starts."""
    groups: list[list[int]] = []
    entries = charged = block = 0
    for k, system in enumerate(systems):
        size = sum(pack_counts([(None, system)]))
        charges = int(not charges_vanish(system.types, float(system.total_charge)))
        grown = max(block, len(system.types))
        if not groups or entries + size > budget or (charged + charges) * grown ** 2 > qeq_budget:
            groups.append([])
            entries, charged, grown = 0, 0, len(system.types)
        groups[-1].append(k)
        entries, charged, block = entries + size, charged + charges, grown
    return groups


def single_points_executable(packed: Packed, params: Params, topology: Topology) -> Callable:
    """``packed_single_points`` compiled for ``packed``'s shape: call it with
    ``packed_arguments(packed, params)``; loaded from disk when an earlier run stored it."""
    return cached_executable(packed_single_points, packed_arguments(packed, params),
                             name="single_points", n_outputs=4, static={"topology": topology},
                             static_key=static_text(topology))


def packed_arguments(packed: Packed, params: Params) -> tuple:
    """The arguments of ``packed_single_points`` for ``packed`` (its static topology aside)."""
    return (packed.positions, packed.system, packed.segments, params)


def split_outputs(outputs, n_atoms: list[int]) -> list[dict[str, Any]]:
    """Per structure of a packed system, from ``packed_single_points``'s host outputs:
    dict(energy float, terms {name: float}, forces (n, 3), charges (n,)); n_atoms: the
    structures' atom counts in packing order."""
    energy, terms, forces, charges = outputs
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    return [{"energy": float(energy[s]),
             "terms": {name: float(terms[t, s]) for t, name in enumerate(TERMS)},
             "forces": forces[offsets[s]:offsets[s + 1]],
             "charges": charges[offsets[s]:offsets[s + 1]]} for s in range(len(n_atoms))]


def packed_evaluation(built: list[tuple[np.ndarray, System]], params: Params,
                      topology: Topology, budget: int = 2_000_000) -> list[dict[str, Any]]:
    """``split_outputs``'s dict for every (positions (n, 3) Å, unpadded System) in ``built``, in
    order: one ``packed_single_points`` call per ``pack_groups`` group."""
    results: list = [None] * len(built)
    for members in pack_groups([system for _, system in built], budget):
        packed = pack([built[k] for k in members])
        run = single_points_executable(packed, params, topology)
        outputs = jax.device_get(run(*packed_arguments(packed, params)))
        n_atoms = [len(built[k][1].types) for k in members]
        for k, result in zip(members, split_outputs(outputs, n_atoms)):
            results[k] = result
    return results
