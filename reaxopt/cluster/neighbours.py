"""Half pair lists with periodic images (host side, numpy), and their padded device form.

A pair (i, j, n) stands for the vector r_ij = x_j + n @ cell - x_i (n: integer image, cell: row
vectors). Each unordered pair of atoms, images included, appears once: (i, j, n) with i < j, or
i == j with n lexicographically positive (an atom and its own image, once per +-n pair). This is
the pair set LAMMPS's ReaxFF sums its nonbonded terms and QEq matrix over.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

# at most this many point-to-point distances: computed all at once (numpy), beyond it a k-d tree
# (scipy, imported only then: it costs a short command most of a second)
BRUTE_FORCE_DISTANCES = 1_000_000


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances (Å) between opposite faces of the cell: volume / area of each face."""
    cell = np.asarray(cell, float)
    volume = abs(np.linalg.det(cell))
    areas = np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    return volume / areas


def _image_grid(cell: np.ndarray, cutoff: float) -> np.ndarray:
    """All integer images that can hold a neighbour of a wrapped atom within ``cutoff``."""
    reach = np.ceil(cutoff / perpendicular_widths(cell)).astype(int)
    axes = [np.arange(-m, m + 1) for m in reach]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _lex_positive(n: np.ndarray) -> np.ndarray:
    """True where the integer vector n is lexicographically > 0 (first nonzero entry positive)."""
    first = np.where(n[:, 0] != 0, n[:, 0], np.where(n[:, 1] != 0, n[:, 1], n[:, 2]))
    return first > 0


def close_pairs(a: np.ndarray, b: np.ndarray, cutoff: float, allowed=None):
    """(i, j, d): every point a[i] (M, 3) and b[j] (K, 3) at distance d <= cutoff (Å) for which
    ``allowed(i, j)`` (elementwise, broadcasting; default all) holds, in no particular order; d
    as sqrt of the summed squared coordinate differences."""
    # only the points of b within cutoff of a's bounding box can be close to any of a
    low, high = a.min(axis=0) - cutoff, a.max(axis=0) + cutoff
    near = np.nonzero(np.all((b >= low) & (b <= high), axis=1))[0]
    if len(a) * len(near) <= BRUTE_FORCE_DISTANCES:
        squared = np.zeros((len(a), len(near)))
        for axis in range(3):
            difference = a[:, None, axis] - b[None, near, axis]
            squared += difference * difference
        close = squared <= cutoff * cutoff
        if allowed is not None:
            close &= allowed(np.arange(len(a))[:, None], near[None, :])
        i, j = np.nonzero(close)
        return i, near[j], np.sqrt(squared[i, j])
    from scipy.spatial import cKDTree

    found = cKDTree(a).sparse_distance_matrix(cKDTree(b), cutoff, output_type="ndarray")
    i, j, d = found["i"].astype(int), found["j"].astype(int), found["v"]
    if allowed is not None:
        keep = allowed(i, j)
        i, j, d = i[keep], j[keep], d[keep]
    return i, j, d


def half_pair_images(positions, cell, cutoff: float):
    """(i, j, images): every pair with |r_ij| < cutoff once; images (P, 3) int, zero for molecules.

    positions: (N, 3) Å; cell: (3, 3) row vectors Å, or None for a molecule (no images).
    Sorted by (i, j, image).
    """
    x = np.asarray(positions, float)
    if cell is None:
        i, j, _ = close_pairs(x, x, cutoff, allowed=lambda i, j: i < j)
        keep = np.linalg.norm(x[j] - x[i], axis=1) < cutoff
        i, j = i[keep], j[keep]
        images = np.zeros((len(i), 3), int)
    else:
        cell = np.asarray(cell, float)
        # wrap into the cell so that a small image grid suffices; remember each atom's wrap
        frac = x @ np.linalg.inv(cell)
        wrap = np.floor(frac).astype(int)
        xw = (frac - wrap) @ cell
        grid = _image_grid(cell, cutoff)
        copies = (xw[None, :, :] + (grid @ cell)[:, None, :]).reshape(-1, 3)
        n_atoms, positive = len(x), _lex_positive(grid)

        def half(i, copy):  # each pair once: i < j, or an atom and its lex-positive image
            j = copy % n_atoms
            return (i < j) | ((i == j) & positive[copy // n_atoms])

        i, copy, distance = close_pairs(xw, copies, cutoff, allowed=half)
        image_index, j = np.divmod(copy, n_atoms)
        keep = distance < cutoff
        i, j, n = i[keep], j[keep], grid[image_index[keep]]
        images = n - wrap[j] + wrap[i]  # back to the unwrapped positions
        # the distance test again in the caller's frame (roundoff near the cutoff)
        r = np.linalg.norm(x[j] + images @ cell - x[i], axis=1)
        keep = r < cutoff
        i, j, images = i[keep], j[keep], images[keep]
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], j, i))
    return i[order], j[order], images[order]


def half_pairs(positions, cell, cutoff: float):
    """(i, j, shift): every pair with |r_ij| < cutoff once, r_ij = x_j + shift - x_i (shift in Å)."""
    i, j, images = half_pair_images(positions, cell, cutoff)
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    return i, j, images @ cell


@jax.tree_util.register_dataclass
@dataclass
class PairList:
    """A padded half pair list on the device.

    i, j: (P,) int atom indices (padding points at atom 0 with mask False); images: (P, 3) float
    integer images (r_ij = x_j + images @ cell - x_i); mask: (P,) bool.
    """

    i: jax.Array
    j: jax.Array
    images: jax.Array
    mask: jax.Array


def pad_pairs(i, j, images, n_pairs: int) -> PairList:
    """Pad a host pair list to ``n_pairs`` entries (numpy arrays; convert with jnp.asarray)."""
    count = len(i)
    if count > n_pairs:
        raise ValueError(f"{count} pairs do not fit in {n_pairs} slots")
    pad = n_pairs - count
    return PairList(
        i=np.concatenate([np.asarray(i, np.int32), np.zeros(pad, np.int32)]),
        j=np.concatenate([np.asarray(j, np.int32), np.zeros(pad, np.int32)]),
        images=np.concatenate([np.asarray(images, float).reshape(-1, 3), np.zeros((pad, 3))]),
        mask=np.concatenate([np.ones(count, bool), np.zeros(pad, bool)]),
    )


def pair_vectors(positions, cell, pairs: PairList):
    """(r_ij vectors (P, 3), distances (P,)) in Å; masked pairs get a safe unit distance.

    cell: (3, 3) row vectors (zeros for a molecule). Differentiable in positions and cell.
    """
    d = positions[pairs.j] + pairs.images @ cell - positions[pairs.i]
    d = jnp.where(pairs.mask[:, None], d, jnp.array([1.0, 0.0, 0.0]))
    return d, jnp.sqrt(jnp.sum(d * d, axis=-1))


def pairs_within(pairs: PairList, positions, cell, cutoff) -> PairList:
    """``pairs`` without the pairs now at |r_ij| >= cutoff (Å): a list built with a skin reduced
    to the pairs the energy counts at these positions. Jittable; cutoff may be traced."""
    _, r = pair_vectors(positions, cell, pairs)
    return dataclasses.replace(pairs, mask=pairs.mask & (r < cutoff))
