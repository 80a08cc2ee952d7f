"""Host-side lists for the bonded ReaxFF terms: bond candidates, angles, torsions, hydrogen bonds.

Everything here is numpy and geometry-only; the energy applies LAMMPS's bond-order thresholds
with masks. A list must therefore hold every interaction LAMMPS could count: bond candidates are
all pairs closer than the distance at which the uncorrected bond order of that type pair drops
below the bond-order cutoff (``bond_cutoffs``; capped at LAMMPS's 5 Å bonded neighbourhood), and
angles/torsions/hydrogen bonds are built from those candidates.

Bond ends. Pair p joins atom ``i[p]`` to the image ``images[p]`` of atom ``j[p]``. Seen from a
centre atom, a bond is (p, sign): sign +1 when the centre is ``i[p]`` (the bond vector is
+r_p = x_j + images @ cell - x_i), -1 when the centre is ``j[p]`` (vector -r_p).

* angles: centre j and two distinct bond ends of j (pair1, sign1) -> i and (pair2, sign2) -> k.
* torsions: a central bond j-k (pair jk, j = i[jk], k = j[jk] at its image), a bond end of j
  other than jk (pair_ij, sign_ij: vector j->i) and a bond end of k other than jk (pair_kl,
  sign_kl: vector k->l), i and l not the same atom image. Each central bond once.
* hydrogen bonds: a hydrogen atom h (p_hbond 1), a bond end of h (pair_xh, sign_xh: vector h->x)
  to an acceptor-type atom x (p_hbond 2), and an acceptor-type atom z != x (another atom, not an
  image of x) at ``acceptor_images`` with |x_z + images @ cell - x_h| <= hbond_cut (7.5 Å).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from reaxopt.cluster.neighbours import PairList, half_pair_images, pad_pairs
from reaxopt.energy.bond_order import BOND_CUT
from reaxopt.energy.hbond import HBOND_CUT


@jax.tree_util.register_dataclass
@dataclass
class BondedLists:
    """Padded lists for one structure (numpy on the host; jnp arrays once on the device)."""

    pairs: PairList
    angle_center: Any
    angle_pair1: Any
    angle_sign1: Any
    angle_pair2: Any
    angle_sign2: Any
    angle_mask: Any
    torsion_jk: Any
    torsion_ij: Any
    torsion_sign_ij: Any
    torsion_kl: Any
    torsion_sign_kl: Any
    torsion_mask: Any
    hbond_xh: Any
    hbond_sign_xh: Any
    hbond_acceptor: Any
    hbond_acceptor_images: Any
    hbond_mask: Any

    def sizes(self) -> dict:
        """The padded sizes (for choosing a common padding over structures)."""
        return {"pairs": len(self.pairs.mask), "angles": len(self.angle_mask),
                "torsions": len(self.torsion_mask), "hbonds": len(self.hbond_mask)}

    def counts(self) -> dict:
        """The numbers of real (unpadded) entries."""
        return {"pairs": int(np.sum(self.pairs.mask)), "angles": int(np.sum(self.angle_mask)),
                "torsions": int(np.sum(self.torsion_mask)),
                "hbonds": int(np.sum(self.hbond_mask))}


def bond_cutoffs(ff, margin: float = 0.0, bond_cut: float = BOND_CUT,
                 step: float = 1e-3) -> np.ndarray:
    """(T,T) Å: beyond this distance no pair of these types can be a bond (uncorrected bond
    order < bo_cut), plus ``margin`` (room for parameter changes during a fit), at most bond_cut.

    ff: an expanded ``ForceField`` (its values are read on the host).
    """
    r = np.arange(step, bond_cut + step, step)
    bo_cut = float(ff.bo_cut)
    rs_atom, rp_atom, rpp_atom = (np.asarray(x) for x in (ff.r_s_atom, ff.r_pi_atom,
                                                          ff.r_pipi_atom))
    T = len(rs_atom)
    table = np.zeros((T, T))
    with np.errstate(all="ignore"):
        for a in range(T):
            for b in range(T):
                total = np.zeros_like(r)
                for atom_r, pair_r, pa, pb, scale in (
                        (rs_atom, ff.r_s, ff.p_bo1, ff.p_bo2, 1.0 + bo_cut),
                        (rp_atom, ff.r_p, ff.p_bo3, ff.p_bo4, 1.0),
                        (rpp_atom, ff.r_pp, ff.p_bo5, ff.p_bo6, 1.0)):
                    if atom_r[a] > 0 and atom_r[b] > 0:
                        ratio = r / float(np.asarray(pair_r)[a, b])
                        total = total + scale * np.exp(float(np.asarray(pa)[a, b])
                                                       * ratio ** float(np.asarray(pb)[a, b]))
                on = np.nonzero(np.nan_to_num(total, nan=np.inf) >= bo_cut)[0]
                table[a, b] = r[on[-1]] + step if len(on) else 0.0
    return np.minimum(table + margin, bond_cut)


def _ends_by_atom(i, j, n_atoms):
    """For each atom, its bond ends as (pair index, sign), by pair index (+1 before -1)."""
    atoms = np.stack([np.asarray(i, int), np.asarray(j, int)], axis=1).ravel()
    order = np.argsort(atoms, kind="stable")  # keeps pair order within an atom
    bounds = np.searchsorted(atoms[order], np.arange(n_atoms + 1)).tolist()
    pairs, signs = (order // 2).tolist(), (1 - 2 * (order % 2)).tolist()
    return [list(zip(pairs[a:b], signs[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


def _pad(values, size, dtype, fill=0):
    values = np.asarray(values, dtype=dtype)
    if len(values) > size:
        raise ValueError(f"{len(values)} entries do not fit in {size} slots")
    shape = (size - len(values),) + values.shape[1:]
    return np.concatenate([values, np.full(shape, fill, dtype=dtype)])


def _pairs_within(x, cell, cutoff: float, pairs=None):
    """``half_pair_images(x, cell, cutoff)`` (none for a lone atom without a cell), or, from
    ``pairs`` (i, j, images): such a list at a cutoff >= ``cutoff``, the pairs closer than it."""
    if pairs is None:
        if len(x) > 1 or cell is not None:
            return half_pair_images(x, cell, cutoff)
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3), int)
    i, j, images = pairs
    cell_m = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    keep = np.linalg.norm(x[j] + images @ cell_m - x[i], axis=1) < cutoff
    return i[keep], j[keep], images[keep]


def build_bonded_lists(positions, cell, types, topology, cutoffs: np.ndarray,
                       sizes: dict | None = None, hbond_cut: float = HBOND_CUT,
                       bond_cut: float = BOND_CUT, pairs=None) -> BondedLists:
    """Bond candidates, angles, torsions and hydrogen bonds of one structure (numpy, padded).

    positions (N,3) Å; cell (3,3) row vectors Å or None; types (N,) 0-based; topology: the
    force field's ``Topology`` (angles, torsions and hydrogen bonds whose type tuple has no
    parameters are left out: LAMMPS counts nothing for them); cutoffs (T,T) Å from
    ``bond_cutoffs``; sizes: padded sizes {"pairs", "angles", "torsions", "hbonds"} (default:
    the exact counts, at least 1); pairs: this structure's ``half_pair_images`` (i, j, images)
    at a cutoff >= bond_cut and hbond_cut, to take the candidates from (default: searched).
    """
    has_angle = (np.asarray(topology.angle_rows) >= 0).any(axis=-1)
    has_torsion = np.asarray(topology.torsion_row) >= 0
    has_hbond = np.asarray(topology.hbond_row) >= 0
    p_hbond = topology.p_hbond
    x = np.asarray(positions, float)
    types = np.asarray(types, int)
    n = len(x)
    cell_m = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    pi, pj, pimg = _pairs_within(x, cell, bond_cut, pairs)
    r = np.linalg.norm(x[pj] + pimg @ cell_m - x[pi], axis=1) if len(pi) else np.zeros(0)
    keep = r <= cutoffs[types[pi], types[pj]]
    pi, pj, pimg = pi[keep], pj[keep], pimg[keep]
    ends = _ends_by_atom(pi, pj, n)

    def neighbour(p, s):
        return (pj[p], s * pimg[p]) if s > 0 else (pi[p], s * pimg[p])

    centre_has_angle = has_angle.any(axis=(0, 2))
    angles = [(c, p1, s1, p2, s2) for c in range(n) if centre_has_angle[types[c]]
              for a, (p1, s1) in enumerate(ends[c]) for (p2, s2) in ends[c][a + 1:]
              if has_angle[types[neighbour(p1, s1)[0]], types[c], types[neighbour(p2, s2)[0]]]]

    torsions = []
    bond_has_torsion = has_torsion.any(axis=(0, 3))
    for c in np.nonzero(bond_has_torsion[types[pi], types[pj]])[0].tolist():
        j, k = pi[c], pj[c]
        for (pa, sa) in ends[j]:
            if pa == c and sa == 1:
                continue
            atom_i, img_i = neighbour(pa, sa)
            if not has_torsion[types[atom_i], types[j], types[k]].any():
                continue
            for (pb, sb) in ends[k]:
                if pb == c and sb == -1:
                    continue
                atom_l, img_l = neighbour(pb, sb)
                if not has_torsion[types[atom_i], types[j], types[k], types[atom_l]]:
                    continue
                if atom_i == atom_l and np.array_equal(img_i, pimg[c] + img_l):
                    continue
                torsions.append((c, pa, sa, pb, sb))

    hbonds = []
    flags = np.asarray(p_hbond)[types]
    if np.any(flags == 1) and np.any(flags == 2):
        hi, hj, himg = _pairs_within(x, cell, hbond_cut, pairs)
        hr = np.linalg.norm(x[hj] + himg @ cell_m - x[hi], axis=1) if len(hi) else np.zeros(0)
        acceptors = [[] for _ in range(n)]
        for a, b, img, d in zip(hi, hj, himg, hr):
            if d > hbond_cut:
                continue
            if flags[a] == 1 and flags[b] == 2:
                acceptors[a].append((b, img))
            if flags[b] == 1 and flags[a] == 2:
                acceptors[b].append((a, -img))
        for h in np.nonzero(flags == 1)[0]:
            for (p, s) in ends[h]:
                atom_x, _ = neighbour(p, s)
                if flags[atom_x] != 2:
                    continue
                for (z, img) in acceptors[h]:
                    if z != atom_x and has_hbond[types[atom_x], types[h], types[z]]:
                        hbonds.append((p, s, z, img))

    counts = {"pairs": len(pi), "angles": len(angles), "torsions": len(torsions),
              "hbonds": len(hbonds)}
    sizes = {k: max(1, v) for k, v in counts.items()} if sizes is None else sizes
    A = np.array(angles, dtype=np.int64).reshape(-1, 5)
    Q = np.array(torsions, dtype=np.int64).reshape(-1, 5)
    H = hbonds
    return BondedLists(
        pairs=pad_pairs(pi, pj, pimg, sizes["pairs"]),
        angle_center=_pad(A[:, 0], sizes["angles"], np.int32),
        angle_pair1=_pad(A[:, 1], sizes["angles"], np.int32),
        angle_sign1=_pad(A[:, 2], sizes["angles"], np.float64, 1.0),
        angle_pair2=_pad(A[:, 3], sizes["angles"], np.int32),
        angle_sign2=_pad(A[:, 4], sizes["angles"], np.float64, 1.0),
        angle_mask=_pad(np.ones(len(A), bool), sizes["angles"], bool, False),
        torsion_jk=_pad(Q[:, 0], sizes["torsions"], np.int32),
        torsion_ij=_pad(Q[:, 1], sizes["torsions"], np.int32),
        torsion_sign_ij=_pad(Q[:, 2], sizes["torsions"], np.float64, 1.0),
        torsion_kl=_pad(Q[:, 3], sizes["torsions"], np.int32),
        torsion_sign_kl=_pad(Q[:, 4], sizes["torsions"], np.float64, 1.0),
        torsion_mask=_pad(np.ones(len(Q), bool), sizes["torsions"], bool, False),
        hbond_xh=_pad([h[0] for h in H], sizes["hbonds"], np.int32),
        hbond_sign_xh=_pad([h[1] for h in H], sizes["hbonds"], np.float64, 1.0),
        hbond_acceptor=_pad([h[2] for h in H], sizes["hbonds"], np.int32),
        hbond_acceptor_images=_pad(np.array([h[3] for h in H], float).reshape(-1, 3),
                                   sizes["hbonds"], np.float64),
        hbond_mask=_pad(np.ones(len(H), bool), sizes["hbonds"], bool, False),
    )
