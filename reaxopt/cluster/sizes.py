"""How many interactions each structure has: the list sizes that padding and clustering need.

``count_interactions`` counts, per structure, exactly the entries the list builders produce
(``reaxopt.cluster.neighbours.half_pair_images`` for nonbonded pairs within the taper radius
swb, ``reaxopt.cluster.lists.build_bonded_lists`` for bond candidates, valence angles, torsions
and hydrogen bonds), without building the lists: the angle, torsion and hydrogen-bond counts
follow from the bond graph combinatorially (vectorised numpy, no Python loop over atoms or
bonds), so a 100-atom metal cell with millions of torsion candidates counts in milliseconds.

Counting rules (the semantics of ``build_bonded_lists``; see its module docstring):

* angles: unordered pairs of distinct bond ends at a centre atom: sum_c d_c (d_c - 1) / 2, with
  d_c the number of bond ends (bonds, images included) at atom c;
* torsions: per central bond j-k, (d_j - 1)(d_k - 1) end pairs, less the triangles: ends
  j->i and k->l that reach the same atom image (i == l);
* hydrogen bonds: per hydrogen h, per bond end h->x to an acceptor-type x, every acceptor-type
  atom image z within the hydrogen-bond cutoff of h that is not (an image of) x.

With ``parameterised_only`` (the default, as ``build_bonded_lists`` does) only the angles,
torsions and hydrogen bonds whose type tuple has force-field parameters count (the only ones
LAMMPS gives energy); a cobalt file without angle or torsion lines then has none of them, where
a 108-atom cobalt cell has 3.8 million geometric torsion candidates. The counts bound the lists
only if both follow the same rule: ``LISTS_FILTER_BY_PARAMETERS`` states the list builder's.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from reaxopt.cluster.lists import BOND_CUT, HBOND_CUT, bond_cutoffs
from reaxopt.cluster.neighbours import half_pair_images

# The list builder leaves out angles, torsions and hydrogen bonds without parameters.
LISTS_FILTER_BY_PARAMETERS = True


@dataclass(frozen=True)
class InteractionSizes:
    """Entry counts of one structure's lists (or padded sizes of a cluster's arrays)."""

    atoms: int
    nonbonded_pairs: int
    bonded_pairs: int
    angles: int
    torsions: int
    hbonds: int

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in self.fields())

    def as_dict(self) -> dict[str, int]:
        return dict(zip(self.fields(), self.as_tuple()))

    @classmethod
    def from_array(cls, values) -> InteractionSizes:
        return cls(*(int(v) for v in values))


@dataclass(frozen=True, eq=False)
class Cutoffs:
    """Distances (Å) the lists use: nonbonded (taper radius swb), bond candidates per type pair
    (T, T) (at most ``bond_max``, the distance beyond which the energy counts no bond),
    hydrogen-bond acceptor distance. Equal (and hashed) by value."""

    nonbonded: float
    bond: np.ndarray
    hbond: float = HBOND_CUT
    bond_max: float = BOND_CUT

    def widened(self, skin: float) -> Cutoffs:
        """Every cutoff plus ``skin`` Å: lists that stay complete while no atom moves more than
        skin/2. A bond cutoff at the cap grows too (a pair just beyond ``bond_max`` may move
        within it)."""
        return Cutoffs(nonbonded=self.nonbonded + skin,
                       bond=np.minimum(np.asarray(self.bond, float), self.bond_max) + skin,
                       hbond=self.hbond + skin, bond_max=self.bond_max + skin)

    @functools.cached_property
    def _key(self):
        return (float(self.nonbonded), np.asarray(self.bond, float).tobytes(),
                np.shape(self.bond), float(self.hbond), float(self.bond_max))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, Cutoffs) and self._key == other._key


def cutoffs_for(params, topology, bond_margin: float = 0.0) -> Cutoffs:
    """The cutoffs of a force field (``build_forcefield``'s params and topology)."""
    from reaxopt.forcefield import expand

    ff = expand(params, topology)
    return Cutoffs(nonbonded=float(ff.swb), bond=bond_cutoffs(ff, margin=bond_margin))


@dataclass(frozen=True)
class _Allowed:
    """Which type tuples have parameters: angle (T,T,T) [i, centre, k], torsion (T,T,T,T),
    hbond (T,T,T) [X, H, Z]; all True when counting every geometric candidate."""

    angle: np.ndarray
    torsion: np.ndarray
    hbond: np.ndarray


def _allowed(topology, parameterised_only: bool) -> _Allowed:
    t = topology.n_types
    if not parameterised_only:
        return _Allowed(np.ones((t,) * 3, bool), np.ones((t,) * 4, bool), np.ones((t,) * 3, bool))
    return _Allowed(angle=np.any(np.asarray(topology.angle_rows) >= 0, axis=-1),
                    torsion=np.asarray(topology.torsion_row) >= 0,
                    hbond=np.asarray(topology.hbond_row) >= 0)


def _pairs(x, cell, cutoff):
    if len(x) < 2 and cell is None:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3), int)
    return half_pair_images(x, cell, cutoff)


def _keys(centre, other, image, n_atoms):
    """One int64 per (centre atom, other atom, image) (images within +-1000)."""
    image = np.asarray(image, np.int64) + 1024
    return (((np.asarray(centre, np.int64) * n_atoms + other) * 2048 + image[:, 0]) * 2048
            + image[:, 1]) * 2048 + image[:, 2]


def _grouped(centre, n_atoms):
    """Bond ends sorted by centre atom: (order, start offset per atom, count per atom)."""
    order = np.argsort(centre, kind="stable")
    degree = np.bincount(centre, minlength=n_atoms)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    return order, start, degree


def _expand_ends(atoms, order, start, degree):
    """For each entry of ``atoms``, every bond end of that atom: (entry index, end index)."""
    counts = degree[atoms]
    entry = np.repeat(np.arange(len(atoms)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    within = np.arange(len(entry)) - first
    return entry, order[start[atoms[entry]] + within]


def count_structure(positions, cell, types, cutoffs: Cutoffs, p_hbond,
                    allowed: _Allowed) -> InteractionSizes:
    """Entry counts of one structure's lists (positions (N,3) Å, cell rows Å or None, types
    0-based (N,), p_hbond (T,) hydrogen-bond flags: 1 hydrogen, 2 acceptor)."""
    x = np.asarray(positions, float)
    types = np.asarray(types, int)
    n = len(x)
    cell_m = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    n_nonbonded = len(_pairs(x, cell, cutoffs.nonbonded)[0])

    pi, pj, pimg = _pairs(x, cell, cutoffs.bond_max)
    r = np.linalg.norm(x[pj] + pimg @ cell_m - x[pi], axis=1)
    keep = r <= np.asarray(cutoffs.bond)[types[pi], types[pj]]
    pi, pj, pimg = pi[keep], pj[keep], pimg[keep]
    n_bonds = len(pi)
    T = len(allowed.hbond)

    # bond ends: centre -> other at image (relative to the centre's own image)
    centre = np.concatenate([pi, pj])
    other = np.concatenate([pj, pi])
    image = np.concatenate([pimg, -pimg])
    other_type = types[other]
    by_type = np.zeros((n, T), np.int64)  # bond ends of each atom, by the other end's type
    np.add.at(by_type, (centre, other_type), 1)

    # angles: 1/2 (sum_ab A[a,c,b] H_a H_b - sum_a A[a,c,a] H_a), H = by_type of the centre c
    a_c = allowed.angle.transpose(1, 0, 2)[types]  # (N, T, T)
    diag = np.diagonal(a_c, axis1=1, axis2=2)
    n_angles = (np.einsum("na,nab,nb->", by_type, a_c, by_type)
                - np.sum(diag * by_type)) // 2

    # torsions: per bond c = (j, k), sum_ab A[a,tj,tk,b] (H_j - e_tk)_a (H_k - e_tj)_b, less the
    # triangles (ends of j and of k reaching the same atom image, i == l)
    tj, tk = types[pi], types[pj]
    h_j = by_type[pi] - np.eye(T, dtype=np.int64)[tk]
    h_k = by_type[pj] - np.eye(T, dtype=np.int64)[tj]
    a_jk = allowed.torsion[:, tj, tk, :].transpose(1, 0, 2)  # (P, T, T)
    n_torsions = int(np.einsum("pa,pab,pb->", h_j, a_jk, h_k))
    if n_bonds:
        order, start, degree = _grouped(centre, n)
        bond, end = _expand_ends(pi, order, start, degree)
        # is the point reached by end (from j) also bonded to k (at the bond's image)?
        wanted = _keys(pj[bond], other[end], image[end] - pimg[bond], n)
        present = np.sort(_keys(centre, other, image, n))
        found = np.searchsorted(present, wanted)
        hit = present[np.minimum(found, len(present) - 1)] == wanted
        tp = other_type[end[hit]]
        n_torsions -= int(np.sum(allowed.torsion[tp, tj[bond[hit]], tk[bond[hit]], tp]))

    n_hbonds = 0
    flags = np.asarray(p_hbond)[types]
    if np.any(flags == 1) and np.any(flags == 2):
        hi, hj, himg = _pairs(x, cell, cutoffs.hbond)
        d = np.linalg.norm(x[hj] + himg @ cell_m - x[hi], axis=1)
        near = d <= cutoffs.hbond
        hi, hj = hi[near], hj[near]
        fwd = (flags[hi] == 1) & (flags[hj] == 2)
        back = (flags[hj] == 1) & (flags[hi] == 2)
        h_of = np.concatenate([hi[fwd], hj[back]])
        z_of = np.concatenate([hj[fwd], hi[back]])
        acceptors_by_type = np.zeros((n, T), np.int64)
        np.add.at(acceptors_by_type, (h_of, types[z_of]), 1)
        # acceptor entries of h that are (images of) a given atom: counted per (h, z) key
        keys, per_key = np.unique(h_of.astype(np.int64) * n + z_of, return_counts=True)
        ends = (flags[centre] == 1) & (flags[other] == 2)
        h, xa = centre[ends], other[ends]
        th, tx = types[h], types[xa]
        wanted = h.astype(np.int64) * n + xa
        at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        same_atom = np.where(keys[at] == wanted, per_key[at], 0) if len(keys) else 0 * wanted
        a_h = allowed.hbond[tx, th, :]  # (E, T) over the acceptor's type
        n_hbonds = int(np.sum(a_h * acceptors_by_type[h])
                       - np.sum(allowed.hbond[tx, th, tx] * same_atom))

    return InteractionSizes(atoms=n, nonbonded_pairs=n_nonbonded, bonded_pairs=n_bonds,
                            angles=int(n_angles), torsions=n_torsions, hbonds=n_hbonds)


def count_interactions(structures, params, topology, *, cutoffs: Cutoffs | None = None,
                       skin: float = 0.0,
                       parameterised_only: bool | None = None) -> list[InteractionSizes]:
    """Entry counts of every structure's lists, in order.

    params, topology: ``build_forcefield``'s; cutoffs: default ``cutoffs_for(params, topology)``;
    skin (Å): count with every cutoff widened by it (room for atoms to move before the lists
    must be rebuilt; the counts then bound the lists of any geometry within skin/2 per atom);
    parameterised_only: count only angles/torsions/hbonds with parameters (default: what the
    list builder does, ``LISTS_FILTER_BY_PARAMETERS``).
    """
    from reaxopt.evaluate import atom_types

    cutoffs = cutoffs_for(params, topology) if cutoffs is None else cutoffs
    if skin:
        cutoffs = cutoffs.widened(skin)
    if parameterised_only is None:
        parameterised_only = LISTS_FILTER_BY_PARAMETERS
    allowed = _allowed(topology, parameterised_only)
    p_hbond = np.asarray(topology.p_hbond)
    return [count_structure(s.positions, s.cell, atom_types(s, topology), cutoffs, p_hbond,
                            allowed) for s in structures]


def list_counts(bonded_lists) -> dict[str, int]:
    """The real entry counts of built lists (``BondedLists.counts()``), under our names."""
    c = bonded_lists.counts()
    return {"bonded_pairs": c["pairs"], "angles": c["angles"], "torsions": c["torsions"],
            "hbonds": c["hbonds"]}
