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
    range); total_charge: (S,) e; count: S; block: the largest atom count (QEq block size)."""

    structure: Any
    local: Any
    total_charge: Any
    count: int = field(metadata=dict(static=True))
    block: int = field(metadata=dict(static=True))


def summed(values, owners, segments: Segments | None):
    """Sum of per-interaction (already masked) energies ``values`` (M,): a scalar, or (S,) per
    structure of the owner atoms ``owners`` (M,) int (None: values are per atom)."""
    if segments is None:
        return jnp.sum(values)
    structure = segments.structure if owners is None else segments.structure[owners]
    return jax.ops.segment_sum(values, structure, num_segments=segments.count)
