"""Lists that move with the geometry: FIRE rebuilds and re-pads them, and still matches LAMMPS.

Three water molecules with both O-H bonds stretched to 2 Å: their lists (built with the fit's
skin) hold six O-H bond candidates and three angles, and no H-H pair (3.2 Å apart). Relaxing
them moves hydrogens by about 1 Å, far beyond skin/2, and brings the hydrogens of each molecule
to 1.6 Å: new bond candidates and angles appear, more than the padded lists hold. ``relax``
must rebuild the lists, grow the batch's padded sizes, and end with energies, forces and charges
that agree with LAMMPS at the relaxed geometry; the lists built at the start do not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from lammps_oracle import lammps_evaluate
from reaxopt.cluster.padding import moved_beyond_skin, pad_system_sizes, stack_trees, unstack_tree
from reaxopt.evaluate import pad_system
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.minimize import relax
from reaxopt.model import build_model
from reaxopt.structure import Structure

FFIELD = Path(__file__).resolve().parents[1] / "datasets" / "cho" / "ffield_cho"


def _water(centre, bond: float, angle: float = 104.5):
    half = np.radians(angle) / 2.0
    centre = np.asarray(centre, float)
    return [("O", centre), ("H", centre + bond * np.array([np.sin(half), np.cos(half), 0.0])),
            ("H", centre + bond * np.array([-np.sin(half), np.cos(half), 0.0]))]


@pytest.fixture(scope="module")
def relaxation():
    atoms = (_water([0.0, 0.0, 0.0], 2.0) + _water([7.0, 0.0, 0.0], 2.0)
             + _water([0.0, 7.0, 1.0], 2.0))
    structure = Structure(name="stretched_waters", symbols=[a for a, _ in atoms],
                          positions=np.array([x for _, x in atoms]), run_type="minimize")
    params, topology = build_forcefield(read_ffield(FFIELD))
    model = build_model([structure], params, topology)
    relaxed, steps, rms = relax(model, params, [0], [2000], 0.05)
    return structure, params, model, relaxed, int(steps[0]), float(rms[0])


def test_relaxation_moves_beyond_the_skin_and_converges(relaxation):
    structure, _, model, relaxed, steps, rms = relaxation
    n = structure.n_atoms
    final = np.asarray(relaxed.batches[0][0][0])[:n]
    assert rms < 0.05 and 0 < steps < 2000
    assert moved_beyond_skin(final, structure.positions, model.skins[0])
    # the lists were rebuilt where the atoms went
    anchors = np.asarray(relaxed.anchors[0][0])[:n]
    assert not np.allclose(anchors, structure.positions)
    assert not moved_beyond_skin(final, anchors, model.skins[0])


def test_new_bonds_and_angles_grow_the_padded_lists(relaxation):
    _, _, model, relaxed, _, _ = relaxation
    before = model.batches[0][1].lists.counts()
    after = relaxed.batches[0][1].lists.counts()
    assert after["pairs"] > before["pairs"] and after["angles"] > before["angles"]
    grown_sizes, old_sizes = relaxed.sizes[0], model.sizes[0]
    assert grown_sizes.bonded_pairs > old_sizes.bonded_pairs >= before["pairs"]
    assert grown_sizes.angles > old_sizes.angles
    assert after["pairs"] > old_sizes.bonded_pairs  # would have overflowed the old padding
    assert relaxed.batches[0][1].lists.pairs.mask.shape[1] == grown_sizes.bonded_pairs


def test_rebuilt_lists_match_lammps_and_stale_ones_do_not(relaxation):
    structure, params, model, relaxed, _, _ = relaxation
    n = structure.n_atoms
    final = np.asarray(relaxed.batches[0][0][0])[:n]
    reference = lammps_evaluate(FFIELD, structure.symbols, final)
    ours = relaxed.predict(params)
    assert float(ours.energy[0]) == pytest.approx(reference["energy"], rel=1e-8, abs=1e-6)
    np.testing.assert_allclose(np.asarray(ours.forces[0])[:n], reference["forces"], atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours.charges[0])[:n], reference["charges"], atol=1e-7)
    assert np.max(np.abs(reference["forces"])) > 0.01  # converged, but not vacuous
    # the same positions with the lists built at the start (padded like the rebuilt ones, so
    # that nothing compiles again) lose the new interactions
    start = unstack_tree(jax.tree_util.tree_map(np.asarray, model.batches[0][1]), 0)
    padding = pad_system_sizes(relaxed.sizes[0])
    stale_system = stack_trees([pad_system(np.zeros((len(start.types), 3)), start, padding)[1]])
    stale = dataclasses.replace(relaxed, batches=((relaxed.batches[0][0], jax.tree_util.tree_map(
        jnp.asarray, stale_system)),))
    assert abs(float(stale.predict(params).energy[0]) - reference["energy"]) > 1.0
