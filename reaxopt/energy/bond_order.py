"""ReaxFF bond orders as LAMMPS computes them (``reaxff_bond_orders.cpp``, ``BOp`` and ``BO``).

Pairs come as a half list: pair p joins atom ``i[p]`` to the image of atom ``j[p]`` at
``positions[j] + shift[p]``. A pair is a bond when it is within ``bond_cut`` (LAMMPS default 5 Å)
and its uncorrected bond order BO' = BO'_s + BO'_pi + BO'_pipi reaches ``bo_cut``; BO'_s and BO'
are then lowered by bo_cut. Corrections (f1 over-coordination where ovc >= 0.001; f4 f5 1-3
corrections where v13cor >= 0.001) give BO, BO_pi, BO_pipi, BO_s = BO - BO_pi - BO_pipi, each
set to 0 below 1e-10. Per-atom sums run over both ends of every bond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from reaxopt.energy.safe_math import logistic, safe_norm, safe_pow
from reaxopt.forcefield import ForceField

BOND_CUT = 5.0  # Å, LAMMPS's default bonded neighbourhood (control bond_cut / nbrhood_cutoff)
BO_ZERO = 1e-10  # corrected bond orders below this are set to 0


@jax.tree_util.register_dataclass
@dataclass
class BondOrders:
    """Bond orders per pair (P,) and valence deviations per atom (N,), all unitless.

    bond: pair is a bond; kept (4, P): whether BO, BO_s, BO_pi, BO_pipi passed BO_ZERO;
    bo, bo_s, bo_pi, bo_pi2: corrected bond orders (0 for non-bonds);
    total: sum of bo over an atom's bonds; delta = total - valency; delta_e = total - valency_e;
    delta_boc = total - valency_boc; delta_val = total - valency_val; vlpex, nlp: lone-pair
    excess and number of lone pairs; delta_lp = nlp_opt - nlp; delta_lp_temp: delta_lp for atoms
    of mass <= 21 and 0 for heavier ones (LAMMPS's Delta_lp_temp).
    """

    r: Any
    disp: Any
    bond: Any
    kept: Any
    bo: Any
    bo_s: Any
    bo_pi: Any
    bo_pi2: Any
    total: Any
    delta: Any
    delta_e: Any
    delta_boc: Any
    delta_val: Any
    vlpex: Any
    nlp: Any
    delta_lp: Any
    delta_lp_temp: Any


def bond_vectors(positions, cell, pairs):
    """Pair vectors x_j + images @ cell - x_i (P,3) Å and lengths (P,) Å (0 for padding)."""
    disp = positions[pairs.j] + pairs.images @ cell - positions[pairs.i]
    disp = jnp.where(pairs.mask[:, None], disp, 0.0)
    return disp, safe_norm(disp)


def per_atom_sum(values, pair_i, pair_j, n_atoms):
    """Sum of a per-pair quantity onto both end atoms."""
    return (jax.ops.segment_sum(values, pair_i, n_atoms)
            + jax.ops.segment_sum(values, pair_j, n_atoms))


def has_bonds(bo: BondOrders, pairs, n_atoms):
    """(N,) bool: the atom is an end of at least one bond (LAMMPS's ``numbonds > 0``)."""
    return per_atom_sum(bo.bond.astype(jnp.int32), pairs.i, pairs.j, n_atoms) > 0


def uncorrected_bond_orders(ff: ForceField, ti, tj, r, candidate):
    """BO'_s (incl. the (1 + bo_cut) factor), BO'_pi, BO'_pipi per pair; 0 where an atom's
    radius is <= 0 (LAMMPS checks the atoms' own r_s, r_pi, r_pipi)."""

    def term(radius_atom, radius_pair, p_a, p_b):
        on = candidate & (radius_atom[ti] > 0) & (radius_atom[tj] > 0)
        ratio = r / jnp.where(on, radius_pair[ti, tj], 1.0)
        return jnp.where(on, jnp.exp(p_a[ti, tj] * safe_pow(ratio, p_b[ti, tj], on)), 0.0)

    bo_s = (1.0 + ff.bo_cut) * term(ff.r_s_atom, ff.r_s, ff.p_bo1, ff.p_bo2)
    bo_pi = term(ff.r_pi_atom, ff.r_p, ff.p_bo3, ff.p_bo4)
    bo_pi2 = term(ff.r_pipi_atom, ff.r_pp, ff.p_bo5, ff.p_bo6)
    return bo_s, bo_pi, bo_pi2


def bond_orders(ff: ForceField, topology, positions, cell, types, atom_mask, pairs,
                bond_cut: float = BOND_CUT, gate=None, kept=None) -> BondOrders:
    """Corrected bond orders and per-atom valence deviations (see the module docstring).

    pairs: the bond candidates (a ``PairList``); cell (3,3) row vectors Å (zeros: molecule);
    gate: (P,) bool, which pairs count as bonds in place of the bo_cut test; kept: (4, P) bool,
    which of BO, BO_s, BO_pi, BO_pipi are kept in place of the BO_ZERO test
    (``reaxopt.energy.gates``; None: the tests).
    """
    n = positions.shape[0]
    pair_i, pair_j = pairs.i, pairs.j
    ti, tj = types[pair_i], types[pair_j]
    disp, r = bond_vectors(positions, cell, pairs)
    candidate = pairs.mask & atom_mask[pair_i] & atom_mask[pair_j] & (r <= bond_cut)

    bo_s_raw, bo_pi, bo_pi2 = uncorrected_bond_orders(ff, ti, tj, r, candidate)
    bond = candidate & ((bo_s_raw + bo_pi + bo_pi2 >= ff.bo_cut) if gate is None else gate)
    bo_prime = jnp.where(bond, bo_s_raw + bo_pi + bo_pi2 - ff.bo_cut, 0.0)
    bo_pi = jnp.where(bond, bo_pi, 0.0)
    bo_pi2 = jnp.where(bond, bo_pi2, 0.0)

    total_prime = per_atom_sum(bo_prime, pair_i, pair_j, n)
    deltap = total_prime - ff.valency[types]
    deltap_boc = total_prime - ff.valency_val[types]

    p_boc1, p_boc2 = ff.g(0), ff.g(1)
    val_i, val_j = ff.valency[ti], ff.valency[tj]
    dp_i, dp_j = deltap[pair_i], deltap[pair_j]
    f2 = jnp.exp(-p_boc1 * dp_i) + jnp.exp(-p_boc1 * dp_j)
    f3 = -1.0 / p_boc2 * (jnp.logaddexp(-p_boc2 * dp_i, -p_boc2 * dp_j) - jnp.log(2.0))
    f1 = 0.5 * ((val_i + f2) / (val_i + f2 + f3) + (val_j + f2) / (val_j + f2 + f3))
    f1 = jnp.where(ff.ovc[ti, tj] >= 0.001, f1, 1.0)

    p_boc3, p_boc4, p_boc5 = ff.p_boc3[ti, tj], ff.p_boc4[ti, tj], ff.p_boc5[ti, tj]
    f4 = logistic((p_boc4 * bo_prime ** 2 - deltap_boc[pair_i]) * p_boc3 - p_boc5)
    f5 = logistic((p_boc4 * bo_prime ** 2 - deltap_boc[pair_j]) * p_boc3 - p_boc5)
    f45 = jnp.where(ff.v13cor[ti, tj] >= 0.001, f4 * f5, 1.0)

    a0 = f1 * f45
    bo = bo_prime * a0
    bo_pi = bo_pi * a0 * f1
    bo_pi2 = bo_pi2 * a0 * f1
    bo_s = bo - (bo_pi + bo_pi2)

    orders = (bo, bo_s, bo_pi, bo_pi2)
    kept = jnp.stack([x >= BO_ZERO for x in orders]) if kept is None else kept
    bo, bo_s, bo_pi, bo_pi2 = (jnp.where(bond & keep, x, 0.0) for x, keep in zip(orders, kept))

    total = per_atom_sum(bo, pair_i, pair_j, n)
    delta = total - ff.valency[types]
    delta_e = total - ff.valency_e[types]
    half = jnp.trunc(delta_e / 2.0)  # C's (int) cast: towards zero
    vlpex = delta_e - 2.0 * half
    nlp = jnp.exp(-ff.g(15) * (2.0 + vlpex) ** 2) - half
    delta_lp = ff.nlp_opt[types] - nlp
    heavy = jnp.asarray(topology.heavy)[types]
    return BondOrders(
        r=r, disp=disp, bond=bond, kept=kept, bo=bo, bo_s=bo_s, bo_pi=bo_pi, bo_pi2=bo_pi2,
        total=total, delta=delta, delta_e=delta_e, delta_boc=total - ff.valency_boc[types],
        delta_val=total - ff.valency_val[types], vlpex=vlpex, nlp=nlp, delta_lp=delta_lp,
        delta_lp_temp=jnp.where(heavy, 0.0, delta_lp))
