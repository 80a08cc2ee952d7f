"""Per-pair values of a force field's type-pair tables, with a derivative that suits the device.

``table[type_i, type_j]`` differentiates in the table as a scatter-add of one update per pair
into n_types² entries. With 10⁵-10⁶ nonbonded pairs and one to a few elements nearly every
update lands on the same entry, which a GPU scatter serialises. On accelerators the derivative
is therefore taken as a one-hot contraction over the pairs (the same sums, as a reduction); on
CPUs XLA's scatter is the faster one and the plain lookup is kept
(``benchmarks/results/gpu.json``, ``benchmarks/profile_kernels.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def type_pair_values(table, type_i, type_j):
    """``table[type_i, type_j]``: one value per pair (shape of ``type_i``) of an
    (n_types, n_types) table, in the table's units."""
    if jax.default_backend() == "cpu":
        return table[type_i, type_j]
    return contracted_type_pair_values(table, type_i, type_j)


@jax.custom_jvp
def contracted_type_pair_values(table, type_i, type_j):
    """``table[type_i, type_j]`` whose derivative in the table is a one-hot contraction over the
    pairs (P x n_types² multiply-adds), not a scatter-add."""
    return table[type_i, type_j]


def _contracted_jvp(primals, tangents):
    table, type_i, type_j = primals
    values = table[type_i, type_j]
    d_table = tangents[0]
    if isinstance(d_table, SymbolicZero):  # the table is not differentiated
        return values, jnp.zeros_like(values)
    one_i = (type_i[..., None] == jnp.arange(table.shape[0])).astype(table.dtype)
    one_j = (type_j[..., None] == jnp.arange(table.shape[1])).astype(table.dtype)
    return values, jnp.einsum("...a,...b,ab->...", one_i, one_j, d_table)


contracted_type_pair_values.defjvp(_contracted_jvp, symbolic_zeros=True)
