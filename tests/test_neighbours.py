"""Half pair lists: brute force and ASE agree, for molecules and periodic cells of any shape."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from reaxopt.cluster.neighbours import half_pair_images, half_pairs, perpendicular_widths


def brute_force(x, cell, cutoff):
    """Every (i, j, n) with i < j, or i == j and n lexicographically positive, by enumeration."""
    found = set()
    if cell is None:
        for i, j in itertools.combinations(range(len(x)), 2):
            if np.linalg.norm(x[j] - x[i]) < cutoff:
                found.add((i, j, 0, 0, 0))
        return found
    reach = np.ceil(cutoff / perpendicular_widths(cell)).astype(int) + 2
    ranges = [range(-m, m + 1) for m in reach]
    for n in itertools.product(*ranges):
        shift = np.array(n) @ cell
        for i in range(len(x)):
            for j in range(i, len(x)):
                if i == j and not (n > (0, 0, 0)):
                    continue
                if np.linalg.norm(x[j] + shift - x[i]) < cutoff:
                    found.add((i, j) + tuple(n))
    return found


def as_set(i, j, images):
    return {(a, b) + tuple(int(v) for v in n) for a, b, n in zip(i, j, images)}


CELLS = {
    "cubic": np.diag([7.0, 7.0, 7.0]),
    "orthorhombic_small": np.diag([3.1, 4.0, 5.5]),
    "triclinic": np.array([[6.0, 0.0, 0.0], [2.5, 5.0, 0.0], [-1.5, 1.2, 4.5]]),
    "skewed_general": np.array([[4.0, 1.0, 0.5], [-2.0, 3.5, 0.3], [0.7, -0.4, 3.2]]),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_periodic_pairs_match_brute_force_and_ase(name):
    rng = np.random.default_rng(1)
    cell = CELLS[name]
    # positions partly outside the cell: the list must hold for unwrapped coordinates too
    x = rng.uniform(-0.5, 1.5, (7, 3)) @ cell
    cutoff = 6.0
    i, j, images = half_pair_images(x, cell, cutoff)
    assert as_set(i, j, images) == brute_force(x, cell, cutoff)
    assert len(set(zip(i, j, map(tuple, images)))) == len(i)

    atoms = Atoms("H7", positions=x, cell=cell, pbc=True)
    ai, aj, shifts = neighbor_list("ijS", atoms, cutoff)
    full = {(a, b) + tuple(s) for a, b, s in zip(ai, aj, shifts)}
    half = {p for p in full if p[0] < p[1] or (p[0] == p[1] and p[2:] > (0, 0, 0))}
    assert as_set(i, j, images) == half
    # each directed ASE pair is one of ours or the reverse of one of ours
    ours = as_set(i, j, images)
    for a, b, *s in full:
        assert (a, b, *s) in ours or (b, a, *(-v for v in s)) in ours

    _, _, shift = half_pairs(x, cell, cutoff)
    r = np.linalg.norm(x[j] + shift - x[i], axis=1)
    assert np.all(r < cutoff)
    np.testing.assert_allclose(shift, images @ cell)


def test_molecule_pairs_match_brute_force():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 12.0, (30, 3))
    i, j, images = half_pair_images(x, None, 5.0)
    assert as_set(i, j, images) == brute_force(x, None, 5.0)
    assert np.all(images == 0)
    assert np.all(i < j)


def test_cell_much_smaller_than_cutoff_counts_self_images():
    # one atom in a 2 Å cube: images within 10 Å, each +-n pair once
    cell = np.eye(3) * 2.0
    i, j, images = half_pair_images(np.zeros((1, 3)), cell, 10.0)
    expected = sum(1 for n in itertools.product(range(-5, 6), repeat=3)
                   if n > (0, 0, 0) and 2.0 * np.linalg.norm(n) < 10.0)
    assert len(i) == expected
    assert np.all(i == 0) and np.all(j == 0)
