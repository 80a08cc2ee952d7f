"""Torsion and 4-body conjugation energies (LAMMPS ``reaxff_torsion_angles.cpp``; compute pair
reaxff ``et``, ``eco``), kcal/mol.

For each torsion i-j-k-l over a central bond j-k (each bond once) with parameters for
(type_i, type_j, type_k, type_l), i and l not the same atom image, all three BO > thb_cut and
BO_ij BO_jk BO_kl > thb_cut (LAMMPS compares the product with thb_cut, not thb_cutsq), with
BOA = BO - thb_cut, s1 = sin(theta_ijk), s2 = sin(theta_jkl) (each at least 1e-10) and omega
the dihedral angle:
  E_tor = fn10 s1 s2 (V1 (1 + cos w) + V2 exp(p_tor1 (2 - BO_pi_jk - f11)^2) (1 - cos 2w)
          + V3 (1 + cos 3w)) / 2, fn10 = prod over the three bonds of (1 - exp(-p_tor2 BOA)),
  f11 = (2 + exp(-p_tor3 (D_j + D_k))) / (1 + exp(-p_tor3 (D_j + D_k)) + exp(p_tor4 (D_j + D_k))),
  D = Delta_boc;
  E_con = p_cot1 prod over the bonds of exp(-p_cot2 (BOA - 1.5)^2) (1 + (cos^2 w - 1) s1 s2).
"""

from __future__ import annotations

import jax.numpy as jnp

from reaxopt.energy.angles import cos_angle, end_atoms, end_vectors
from reaxopt.energy.bond_order import BondOrders
from reaxopt.energy.safe_math import safe_sqrt, two_plus_ratio
from reaxopt.energy.segments import summed
from reaxopt.energy.valence import THB_CUT
from reaxopt.forcefield import ForceField

MIN_SINE = 1e-10  # LAMMPS floors sin(theta) of the torsion's two angles here


def torsion_gate(bo: BondOrders, lists):
    """(T,) bool: the torsion's three bonds are bonds passing LAMMPS's thresholds."""
    pa, c, pb = lists.torsion_ij, lists.torsion_jk, lists.torsion_kl
    bo_ij, bo_jk, bo_kl = bo.bo[pa], bo.bo[c], bo.bo[pb]
    return (bo.bond[pa] & bo.bond[c] & bo.bond[pb]
            & (bo_ij > THB_CUT) & (bo_jk > THB_CUT) & (bo_kl > THB_CUT)
            & (bo_ij * bo_jk * bo_kl > THB_CUT))


def torsion_energies(ff: ForceField, topology, types, atom_mask, pairs, bo: BondOrders, lists,
                     segments=None, gate=None):
    """(E_torsion, E_conjugation) in kcal/mol (per structure with ``segments``).
    gate: (T,) bool in place of ``torsion_gate`` (``reaxopt.energy.gates``; None: computed)."""
    c = lists.torsion_jk
    pa, sa = lists.torsion_ij, lists.torsion_sign_ij
    pb, sb = lists.torsion_kl, lists.torsion_sign_kl
    j, k = pairs.i[c], pairs.j[c]
    i, l = end_atoms(pairs, pa, sa), end_atoms(pairs, pb, sb)
    ti, tj, tk, tl = types[i], types[j], types[k], types[l]
    bo_ij, bo_jk, bo_kl = bo.bo[pa], bo.bo[c], bo.bo[pb]
    valid = (lists.torsion_mask & atom_mask[j] & ff.torsion_mask[ti, tj, tk, tl]
             & (torsion_gate(bo, lists) if gate is None else gate))
    boa_ij = bo_ij - THB_CUT
    boa_jk = bo_jk - THB_CUT
    boa_kl = bo_kl - THB_CUT

    a, r_ij = end_vectors(bo.disp, bo.r, pa, sa)  # j -> i
    b, r_jk = bo.disp[c], bo.r[c]  # j -> k
    v_kl, r_kl = end_vectors(bo.disp, bo.r, pb, sb)  # k -> l
    cos_ijk = cos_angle(a, r_ij, b, r_jk, valid)
    cos_jkl = cos_angle(-b, r_jk, v_kl, r_kl, valid)
    sin_ijk = jnp.maximum(safe_sqrt(1.0 - cos_ijk ** 2), MIN_SINE)
    sin_jkl = jnp.maximum(safe_sqrt(1.0 - cos_jkl ** 2), MIN_SINE)

    dot = lambda u, v: jnp.sum(u * v, axis=-1)  # noqa: E731
    unnorm_cos = -dot(a, b) * dot(b, v_kl) + r_jk ** 2 * dot(a, v_kl)
    unnorm_sin = -r_jk * dot(a, jnp.cross(b, v_kl))
    norm2 = unnorm_cos ** 2 + unnorm_sin ** 2
    ok = valid & (norm2 > 0.0)
    cos_w = jnp.where(ok, unnorm_cos / safe_sqrt(jnp.where(ok, norm2, 1.0)), 1.0)
    cos_2w = 2.0 * cos_w ** 2 - 1.0
    cos_3w = cos_w * (4.0 * cos_w ** 2 - 3.0)

    p_tor2, p_tor3, p_tor4, p_cot2 = ff.g(23), ff.g(24), ff.g(25), ff.g(27)
    dsum = bo.delta_boc[j] + bo.delta_boc[k]
    f11 = two_plus_ratio(-p_tor3 * dsum, p_tor4 * dsum)
    fn10 = ((1.0 - jnp.exp(-p_tor2 * boa_ij)) * (1.0 - jnp.exp(-p_tor2 * boa_jk))
            * (1.0 - jnp.exp(-p_tor2 * boa_kl)))
    prm = lambda table: table[ti, tj, tk, tl]  # noqa: E731
    exp_tor1 = jnp.exp(prm(ff.p_tor1) * (2.0 - bo.bo_pi[c] - f11) ** 2)
    cv = 0.5 * (prm(ff.V1) * (1.0 + cos_w) + prm(ff.V2) * exp_tor1 * (1.0 - cos_2w)
                + prm(ff.V3) * (1.0 + cos_3w))
    e_tor = fn10 * sin_ijk * sin_jkl * cv

    fn12 = (jnp.exp(-p_cot2 * (boa_ij - 1.5) ** 2) * jnp.exp(-p_cot2 * (boa_jk - 1.5) ** 2)
            * jnp.exp(-p_cot2 * (boa_kl - 1.5) ** 2))
    e_con = prm(ff.p_cot1) * fn12 * (1.0 + (cos_w ** 2 - 1.0) * sin_ijk * sin_jkl)
    return (summed(jnp.where(valid, e_tor, 0.0), j, segments),
            summed(jnp.where(valid, e_con, 0.0), j, segments))
