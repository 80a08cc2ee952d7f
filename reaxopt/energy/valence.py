"""Valence-angle, penalty and coalition (3-body conjugation) energies (LAMMPS
``reaxff_valence_angles.cpp``; compute pair reaxff ``ev``, ``epen``, ``ecoa``), kcal/mol.

For each angle i-j-k (centre j) whose bonds satisfy LAMMPS's thresholds (BO > thb_cut = 0.001
for both, BO_ij BO_jk > thb_cutsq = 1e-5) and each parameter slot of (type_i, type_j, type_k)
with |p_val1| > 0.001, with BOA = BO - thb_cut:
  E_val = f7(BOA_ij) f7(BOA_jk) f8(Delta_boc_j) p_val1 (1 - exp(-p_val2 (theta0 - theta)^2))
          (p_val1 < 0: -p_val1 exp(-p_val2 (theta0 - theta)^2) in place of the last factors),
  theta0 = (180 - theta_00 (1 - exp(-p_val10 (2 - SBO2)))) in radians with LAMMPS's pi
  (3.14159265), SBO2 LAMMPS's piecewise function of the sum of pi bond orders and the lone-pair
  corrected Delta_boc of j;
  E_pen = p_pen1 f9(Delta_j) exp(-p_pen2 (BOA_ij - 2)^2) exp(-p_pen2 (BOA_jk - 2)^2);
  E_coa = p_coa1 / (1 + exp(p_coa2 Delta_val_j)) exp(-p_coa3 (S_i - BOA_ij)^2)
          exp(-p_coa3 (S_k - BOA_jk)^2) exp(-p_coa4 (BOA_ij - 1.5)^2) exp(-p_coa4 (BOA_jk - 1.5)^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reaxopt.energy.angles import cos_angle, end_atoms, end_vectors, lammps_acos
from reaxopt.energy.bond_order import BondOrders
from reaxopt.energy.safe_math import logistic, safe_pow, two_plus_ratio
from reaxopt.energy.segments import summed
from reaxopt.forcefield import ForceField

THB_CUT = 0.001  # LAMMPS control thb_cut
THB_CUTSQ = 0.00001  # LAMMPS control thb_cutsq
LAMMPS_PI = 3.14159265  # constPI in reaxff_defs.h


def _sbo2(ff: ForceField, types, pairs, bo: BondOrders):
    """LAMMPS's SBO2 per atom (N,) from the pi bond orders and lone pairs around it."""
    n = types.shape[0]
    pi_sum = jnp.where(bo.bond, bo.bo_pi + bo.bo_pi2, 0.0)
    bo8 = jnp.where(bo.bond, bo.bo ** 8, 0.0)
    sbop = jax.ops.segment_sum(pi_sum, pairs.i, n) + jax.ops.segment_sum(pi_sum, pairs.j, n)
    prod_sbo = jnp.exp(-(jax.ops.segment_sum(bo8, pairs.i, n)
                         + jax.ops.segment_sum(bo8, pairs.j, n)))
    vlpadj = jnp.where(bo.vlpex >= 0.0, 0.0, bo.nlp)
    sbo = sbop + (1.0 - prod_sbo) * (-bo.delta_boc - ff.g(33) * vlpadj)
    p_val9 = ff.g(16)
    low = (sbo > 0.0) & (sbo <= 1.0)
    mid = (sbo > 1.0) & (sbo < 2.0)
    return jnp.where(low, safe_pow(sbo, p_val9, low),
                     jnp.where(mid, 2.0 - safe_pow(2.0 - sbo, p_val9, mid),
                               jnp.where(sbo <= 0.0, 0.0, 2.0)))


def angle_gate(bo: BondOrders, lists):
    """(A,) bool: both bonds of the angle are bonds passing LAMMPS's thresholds."""
    p1, p2 = lists.angle_pair1, lists.angle_pair2
    bo_ij, bo_jk = bo.bo[p1], bo.bo[p2]
    return (bo.bond[p1] & bo.bond[p2] & (bo_ij > THB_CUT) & (bo_jk > THB_CUT)
            & (bo_ij * bo_jk > THB_CUTSQ))


def valence_energies(ff: ForceField, topology, types, atom_mask, pairs, bo: BondOrders, lists,
                     segments=None, gate=None):
    """(E_valence, E_penalty, E_coalition) in kcal/mol (per structure with ``segments``).
    gate: (A,) bool in place of ``angle_gate`` (``reaxopt.energy.gates``; None: computed)."""
    c = lists.angle_center
    p1, s1, p2, s2 = lists.angle_pair1, lists.angle_sign1, lists.angle_pair2, lists.angle_sign2
    i, k = end_atoms(pairs, p1, s1), end_atoms(pairs, p2, s2)
    bo_ij, bo_jk = bo.bo[p1], bo.bo[p2]
    valid = (lists.angle_mask & atom_mask[c]
             & (angle_gate(bo, lists) if gate is None else gate))
    boa_ij = jnp.where(valid, bo_ij - THB_CUT, 1.0)
    boa_jk = jnp.where(valid, bo_jk - THB_CUT, 1.0)

    v1, r1 = end_vectors(bo.disp, bo.r, p1, s1)
    v2, r2 = end_vectors(bo.disp, bo.r, p2, s2)
    theta = lammps_acos(cos_angle(v1, r1, v2, r2, valid))

    tj = types[c]
    sbo2 = _sbo2(ff, types, pairs, bo)[c]
    delta_boc, delta, delta_val = bo.delta_boc[c], bo.delta[c], bo.delta_val[c]
    p_val3, p_val5 = ff.p_val3[tj], ff.p_val5[tj]
    p_val6, p_val10 = ff.g(14), ff.g(17)
    p_pen2, p_pen3, p_pen4 = ff.g(19), ff.g(20), ff.g(21)
    p_coa2, p_coa3, p_coa4 = ff.g(2), ff.g(38), ff.g(30)
    f9 = two_plus_ratio(-p_pen3 * delta, p_pen4 * delta)
    pen_bonds = jnp.exp(-p_pen2 * (boa_ij - 2.0) ** 2) * jnp.exp(-p_pen2 * (boa_jk - 2.0) ** 2)
    coa_common = (logistic(-p_coa2 * delta_val)
                  * jnp.exp(-p_coa3 * (bo.total[i] - boa_ij) ** 2)
                  * jnp.exp(-p_coa3 * (bo.total[k] - boa_jk) ** 2)
                  * jnp.exp(-p_coa4 * (boa_ij - 1.5) ** 2)
                  * jnp.exp(-p_coa4 * (boa_jk - 1.5) ** 2))

    ti, tk = types[i], types[k]
    e_val = e_pen = e_coa = 0.0
    for slot in range(ff.p_val1.shape[-1]):
        prm = lambda table: table[ti, tj, tk, slot]  # noqa: E731
        p_val1 = prm(ff.p_val1)
        on = valid & prm(ff.angle_mask) & (jnp.abs(p_val1) > 0.001)
        p_val4 = prm(ff.p_val4)
        f7_ij = 1.0 - jnp.exp(-p_val3 * safe_pow(boa_ij, p_val4, on))
        f7_jk = 1.0 - jnp.exp(-p_val3 * safe_pow(boa_jk, p_val4, on))
        f8 = p_val5 - (p_val5 - 1.0) * two_plus_ratio(p_val6 * delta_boc,
                                                      -prm(ff.p_val7) * delta_boc)
        theta_0 = (180.0 - prm(ff.theta_00) * (1.0 - jnp.exp(-p_val10 * (2.0 - sbo2))))
        theta_0 = theta_0 * LAMMPS_PI / 180.0
        expval2theta = jnp.exp(-prm(ff.p_val2) * (theta_0 - theta) ** 2)
        expval12theta = jnp.where(p_val1 >= 0.0, p_val1 * (1.0 - expval2theta),
                                  -p_val1 * expval2theta)
        e_val += jnp.where(on, f7_ij * f7_jk * f8 * expval12theta, 0.0)
        e_pen += jnp.where(on, prm(ff.p_pen1) * f9 * pen_bonds, 0.0)
        e_coa += jnp.where(on, prm(ff.p_coa1) * coa_common, 0.0)
    return tuple(summed(e, c, segments) for e in (e_val, e_pen, e_coa))
