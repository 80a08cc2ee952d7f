"""Many structures as one packed system: which structure each atom belongs to, and the sums
that give each structure its own energy.

A packed system concatenates the atoms and interaction lists of S structures (indices offset,
periodic images premultiplied by each structure's cell), so one compiled energy serves every
structure whatever its size. Every energy term sums per-interaction energies; ``summed`` adds
them per structure (by the structure of the interaction's owner atom) when ``segments`` is
given, and over everything when it is None (one structure, the vmapped path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclass
class Segments:
    """structure: (N,) int, each atom's structure (padding atoms: 0, masked everywhere);
    local: (N,) int, its slot in its structure's QEq block (padding atoms: ``block``, out of
    range); total_charge: (S,) e; charged: (S,) int, each structure's QEq block, or
    ``blocks`` (out of range) for one whose charges vanish (``charges_vanish``); count: S;
    block: the QEq block size (at least the largest atom count); blocks: the number of QEq
    blocks (0: no structure carries charge)."""

    structure: Any
    local: Any
    total_charge: Any
    charged: Any
    count: int = field(metadata=dict(static=True))
    block: int = field(metadata=dict(static=True))
    blocks: int = field(metadata=dict(static=True))


def charges_vanish(types, total_charge: float) -> bool:
    """Whether a structure's QEq charges are zero by symmetry: it is neutral and all its atoms
    share one type (one electronegativity), so q = 0 solves H q = -chi + mu exactly, for any
    positions and parameters (and so do all the charges' derivatives)."""
    return total_charge == 0.0 and len(set(int(t) for t in types)) <= 1


def summed(values, owners, segments: Segments | None):
    """Sum of per-interaction (already masked) energies ``values`` (M,): a scalar, or (S,) per
    structure of the owner atoms ``owners`` (M,) int (None: values are per atom)."""
    if segments is None:
        return jnp.sum(values)
    structure = segments.structure if owners is None else segments.structure[owners]
    return jax.ops.segment_sum(values, structure, num_segments=segments.count)
