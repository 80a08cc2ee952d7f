"""Interaction counts, clustering into padded shapes, padding helpers and the ``cluster`` command.

Counts are checked against the lists themselves (``build_bonded_lists`` enumerates every angle,
torsion and hydrogen bond with explicit loops; ``half_pair_images`` is checked against brute force
in test_neighbours.py). Clustering is checked for its invariants, against exhaustive search on
small one-dimensional cases, and for the padded/unpadded target of issue 4 on the published sets.
"""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import reaxopt  # noqa: F401  (x64)
from reaxopt.cli import main
from reaxopt.cluster.clustering import (AutoK, CostModel, choose_k, cluster_structures,
                                        round_up)
from reaxopt.cluster.lists import build_bonded_lists
from reaxopt.cluster.neighbours import half_pair_images
from reaxopt.cluster.padding import (grown, moved_beyond_skin, needs_rebuild, overflowing,
                                     pad_rows, pad_system_sizes, padding_mask, stack_padded,
                                     stack_trees, system_interaction_sizes, unstack_tree)
from reaxopt.cluster.sizes import InteractionSizes, count_interactions, cutoffs_for
from reaxopt.evaluate import atom_types, build_system
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.structure import Structure

DATASETS = ("cobalt", "disulfide")


@pytest.fixture(scope="module")
def forcefields(shared_datasets):
    return {name: build_forcefield(read_ffield(shared_datasets / name / "ffield_lit"))
            for name in DATASETS}


@pytest.fixture(scope="module")
def dataset_sizes(shared_datasets, forcefields):
    """name -> (structures, their InteractionSizes) for the published geo files."""
    out = {}
    for name in DATASETS:
        structures = read_geometries(shared_datasets / name / "geo")
        out[name] = (structures, count_interactions(structures, *forcefields[name]))
    return out


def _structure(symbols, positions, cell=None, name="s"):
    return Structure(name=name, symbols=list(symbols), positions=np.asarray(positions, float),
                     cell=None if cell is None else np.asarray(cell, float))


def _random_structures():
    """(dataset, structure): molecules and cells, small cells with many images and self-bonds."""
    rng = np.random.default_rng(7)
    out = []
    # a water dimer, H2S and a C-O fragment, jittered: O-H / S-H donors and many acceptors
    molecule = [("O", 0.0, 0.0, 0.0), ("H", 0.96, 0.0, 0.0), ("H", -0.24, 0.93, 0.0),
                ("O", 2.9, 0.1, 0.0), ("H", 3.3, 0.9, 0.3), ("H", 3.2, -0.6, 0.5),
                ("S", 0.5, -3.0, 0.2), ("H", 0.4, -1.66, 0.2), ("C", 1.8, -3.6, 0.0),
                ("H", 2.6, -3.0, 0.3), ("H", 1.9, -4.6, 0.3), ("C", 5.0, 2.0, 1.0),
                ("O", 5.2, 3.2, 1.2), ("H", 4.3, 1.6, 1.4)]
    symbols = [a[0] for a in molecule]
    x = np.array([a[1:] for a in molecule]) + rng.normal(0.0, 0.05, (len(molecule), 3))
    out.append(("disulfide", _structure(symbols, x)))
    # the same kinds in a triclinic cell smaller than the hydrogen-bond cutoff (acceptor images)
    cell = np.array([[6.0, 0.0, 0.0], [1.5, 5.5, 0.0], [-1.0, 0.8, 5.0]])
    periodic = [("O", 0.5, 0.5, 0.5), ("H", 1.45, 0.5, 0.5), ("H", 0.26, 1.43, 0.5),
                ("S", 3.0, 2.5, 2.0), ("H", 3.0, 2.5, 3.34), ("C", 1.5, 3.5, 3.0),
                ("H", 2.0, 4.2, 3.5), ("O", 4.5, 0.8, 3.8)]
    x = np.array([a[1:] for a in periodic]) + rng.normal(0.0, 0.05, (len(periodic), 3))
    out.append(("disulfide", _structure([a[0] for a in periodic], x, cell)))
    # cobalt: one atom in a cell narrower than the bond cutoff (bonds to its own images)
    out.append(("cobalt", _structure(["Co"], [[0.3, 0.2, 0.1]], np.diag([2.6, 2.8, 3.0]))))
    cell = np.array([[4.0, 0.0, 0.0], [1.2, 3.8, 0.0], [0.5, -0.7, 4.2]])
    out.append(("cobalt", _structure(["Co"] * 3, rng.uniform(0.0, 1.0, (3, 3)) @ cell, cell)))
    out.append(("cobalt", _structure(["Co"] * 5, rng.uniform(0.0, 5.0, (5, 3)))))
    out.append(("cobalt", _structure(["Co"], [[0.0, 0.0, 0.0]])))  # a lone atom
    return out


def _permissive(topology):
    """A topology whose every angle, torsion and hydrogen-bond type tuple has parameters, so
    that ``build_bonded_lists`` keeps every geometric candidate."""
    return SimpleNamespace(symbols=topology.symbols, p_hbond=topology.p_hbond,
                           angle_rows=np.zeros_like(topology.angle_rows),
                           torsion_row=np.zeros_like(topology.torsion_row),
                           hbond_row=np.zeros_like(topology.hbond_row))


def _list_sizes(structure, topology, cutoffs):
    """InteractionSizes of the lists themselves (built with explicit loops)."""
    lists = build_bonded_lists(structure.positions, structure.cell,
                               atom_types(structure, topology), topology, cutoffs.bond).counts()
    n_pairs = len(half_pair_images(structure.positions, structure.cell, cutoffs.nonbonded)[0])
    return InteractionSizes(structure.n_atoms, n_pairs, lists["pairs"], lists["angles"],
                            lists["torsions"], lists["hbonds"])


@pytest.mark.parametrize("case", range(len(_random_structures())))
def test_counts_match_the_built_lists(forcefields, case):
    dataset, structure = _random_structures()[case]
    params, topology = forcefields[dataset]
    cutoffs = cutoffs_for(params, topology)
    (counted,) = count_interactions([structure], params, topology, cutoffs=cutoffs)
    assert counted == _list_sizes(structure, topology, cutoffs)
    _, system = build_system(structure, params, topology, cutoffs=cutoffs.bond)
    assert system_interaction_sizes(system) == counted
    (everything,) = count_interactions([structure], params, topology, cutoffs=cutoffs,
                                       parameterised_only=False)
    assert everything == _list_sizes(structure, _permissive(topology), cutoffs)


def test_random_cases_are_not_trivial(forcefields):
    """The cases above exercise images, self-image bonds, torsion triangles and hbonds."""
    found = {}
    for dataset, structure in _random_structures():
        (s,) = count_interactions([structure], *forcefields[dataset], parameterised_only=False)
        found[structure.n_atoms, dataset, structure.cell is None] = s
    assert found[1, "cobalt", False].bonded_pairs > 0  # bonds to its own images
    assert found[14, "disulfide", True].hbonds > 0
    assert found[8, "disulfide", False].hbonds > 0
    assert found[3, "cobalt", False].torsions > 0
    assert found[1, "cobalt", True] == InteractionSizes(1, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("name", DATASETS)
def test_counts_match_the_lists_on_the_published_sets(forcefields, dataset_sizes, name):
    params, topology = forcefields[name]
    cutoffs = cutoffs_for(params, topology)
    structures, sizes = dataset_sizes[name]
    small = [(s, c) for s, c in zip(structures, sizes) if s.n_atoms <= 12][:40]
    assert len(small) >= 20
    for structure, counted in small:
        assert counted == _list_sizes(structure, topology, cutoffs), structure.name


def test_skin_counts_bound_the_lists_after_small_moves(forcefields, dataset_sizes):
    params, topology = forcefields["cobalt"]
    structures = [s for s in dataset_sizes["cobalt"][0] if s.cell is not None][:6]
    skin = 0.6
    rng = np.random.default_rng(3)
    with_skin = count_interactions(structures, params, topology, skin=skin)
    moved = []
    for s in structures:
        step = rng.normal(size=s.positions.shape)
        step *= (0.49 * skin * rng.uniform(size=(len(step), 1))
                 / np.linalg.norm(step, axis=1, keepdims=True))
        moved.append(_structure(s.symbols, s.positions + step, s.cell))
        assert not moved_beyond_skin(moved[-1].positions, s.positions, skin)
    after = count_interactions(moved, params, topology)
    for bound, now in zip(with_skin, after):
        assert not needs_rebuild(now, bound)
    assert moved_beyond_skin(structures[0].positions + [0.31, 0, 0], structures[0].positions,
                             skin)


# ------------------------------------------------------------------------------ clustering


def _synthetic_sizes(n, seed=0):
    rng = np.random.default_rng(seed)
    atoms = rng.integers(2, 120, n)
    pairs = atoms * rng.integers(1, 60, n)
    bonds = atoms * rng.integers(1, 6, n)
    angles = bonds * rng.integers(0, 8, n)
    torsions = angles * rng.integers(0, 12, n)
    hbonds = rng.integers(0, 50, n) * (rng.uniform(size=n) < 0.3)
    return [InteractionSizes(*map(int, row))
            for row in np.stack([atoms, pairs, bonds, angles, torsions, hbonds], 1)]


def _check_invariants(sizes, result, model=CostModel(), multiple=8):
    matrix = np.array([s.as_tuple() for s in sizes])
    k = result.n_clusters
    assert result.assignment.shape == (len(sizes),)
    assert set(result.assignment.tolist()) == set(range(k))  # every cluster used, nothing else
    total = 0.0
    for c, padded in enumerate(result.padded):
        members = matrix[result.members(c)]
        room = np.array(padded.as_tuple())
        assert np.all(room >= members.max(axis=0))
        assert np.all(room % multiple == 0) and np.all(room > 0)
        largest = members.max(axis=0)
        assert np.all((room - largest < multiple) | ((largest == 0) & (room == multiple)))
        total += len(members) * float(model.cost(room))
    assert result.padded_cost == pytest.approx(total, rel=1e-12)
    assert result.unpadded_cost == pytest.approx(float(np.sum(model.cost(matrix))), rel=1e-12)
    assert result.padded_cost >= result.unpadded_cost


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9, None])
def test_clustering_invariants(k):
    sizes = _synthetic_sizes(40, seed=k or 0)
    result = cluster_structures(sizes, k)
    _check_invariants(sizes, result)
    if k is not None:
        assert result.n_clusters == k
    assert cluster_structures(sizes, k).assignment.tolist() == result.assignment.tolist()


def test_one_cluster_pads_everything_to_the_largest():
    sizes = _synthetic_sizes(25, seed=4)
    model = CostModel()
    matrix = np.array([s.as_tuple() for s in sizes])
    result = cluster_structures(sizes, 1)
    assert result.padded_cost == pytest.approx(
        len(sizes) * float(model.cost(round_up(matrix.max(axis=0)))), rel=1e-12)


def test_one_cluster_per_structure_costs_only_the_rounding():
    sizes = _synthetic_sizes(25, seed=5)
    matrix = np.array([s.as_tuple() for s in sizes])
    result = cluster_structures(sizes, len(sizes))
    assert result.padded_cost == pytest.approx(float(np.sum(CostModel().cost(round_up(matrix)))),
                                               rel=1e-12)
    assert cluster_structures(sizes, 10 * len(sizes)).n_clusters == len(sizes)


def _exhaustive_best(sizes, k, model):
    """Cheapest partition into exactly k clusters, by enumerating every labelling."""
    matrix = np.array([s.as_tuple() for s in sizes])
    best = np.inf
    for labels in itertools.product(range(k), repeat=len(sizes)):
        labels = np.array(labels)
        if len(set(labels.tolist())) != k or labels[0] != 0:
            continue
        cost = sum(np.sum(labels == c) * float(model.cost(round_up(matrix[labels == c].max(0))))
                   for c in range(k))
        best = min(best, cost)
    return best


@pytest.mark.parametrize("k", [2, 3])
def test_clustering_is_optimal_for_sizes_ordered_alike(k):
    """Sizes that grow together in every dimension: contiguous DP is exact."""
    rng = np.random.default_rng(11 + k)
    atoms = np.sort(rng.integers(2, 60, 8))
    sizes = [InteractionSizes(int(a), int(a * 20), int(a * 2), int(a * 5), int(a * 11), 0)
             for a in rng.permutation(atoms)]
    model = CostModel()
    result = cluster_structures(sizes, k, model=model)
    assert result.padded_cost == pytest.approx(_exhaustive_best(sizes, k, model), rel=1e-12)


def test_choose_k_trades_compile_time_against_padding():
    costs = {1: 200.0, 2: 125.0, 3: 120.0, 4: 119.0}
    unpadded = 100.0
    cheap_compile = AutoK(evaluations=1.0, seconds_per_unit=1.0, call_seconds=0.0,
                          compile_seconds=0.5)
    costly_compile = AutoK(evaluations=1.0, seconds_per_unit=1.0, call_seconds=0.0,
                           compile_seconds=50.0)
    assert choose_k(costs, unpadded, cheap_compile) == 4
    assert choose_k(costs, unpadded, costly_compile) == 2  # the first K within max_ratio
    # none reaches 1.1: the estimated time decides among all K
    strict_cheap = AutoK(max_ratio=1.1, evaluations=1.0, seconds_per_unit=1.0,
                         call_seconds=0.0, compile_seconds=0.5)
    assert choose_k(costs, unpadded, strict_cheap) == 4
    strict_costly = AutoK(max_ratio=1.1, evaluations=1.0, seconds_per_unit=1.0,
                          call_seconds=0.0, compile_seconds=50.0)
    assert choose_k(costs, unpadded, strict_costly) == 2


def test_clustering_rejects_no_clusters():
    with pytest.raises(ValueError, match="at least 1"):
        cluster_structures(_synthetic_sizes(3), 0)


@pytest.mark.parametrize("name", DATASETS)
def test_automatic_k_meets_the_padding_target_on_the_published_sets(dataset_sizes, name):
    structures, sizes = dataset_sizes[name]
    auto = AutoK()
    result = cluster_structures(sizes)
    _check_invariants(sizes, result)
    assert 1 <= result.n_clusters <= auto.max_clusters
    assert result.ratio <= auto.max_ratio
    one = cluster_structures(sizes, 1)
    assert one.padded_cost > result.padded_cost  # these sets are far from uniform


# ------------------------------------------------------------------------------ padding


def test_pad_rows_and_stacking():
    values = pad_rows(np.array([[1, 2], [3, 4]]), 5, fill=-1)
    assert values.tolist() == [[1, 2], [3, 4], [-1, -1], [-1, -1], [-1, -1]]
    assert padding_mask(2, 5).tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="do not fit"):
        pad_rows(np.zeros(4), 3)
    stacked, masks = stack_padded([np.arange(3), np.arange(1), np.arange(0)], 4)
    assert stacked.shape == (3, 4) and masks.sum(axis=1).tolist() == [3, 1, 0]
    trees = [{"x": np.full((2, 3), k), "m": np.array([True, k > 0])} for k in range(3)]
    batch = stack_trees(trees)
    assert batch["x"].shape == (3, 2, 3) and batch["m"].shape == (3, 2)
    assert unstack_tree(batch, 2)["x"].tolist() == trees[2]["x"].tolist()


def test_overflow_detection_and_growth():
    padded = InteractionSizes(8, 64, 16, 32, 64, 8)
    fits = InteractionSizes(8, 60, 16, 1, 0, 8)
    over = InteractionSizes(9, 60, 16, 40, 0, 8)
    assert overflowing(fits, padded) == () and not needs_rebuild([fits], padded)
    assert overflowing(over, padded) == ("atoms", "angles") and needs_rebuild([fits, over], padded)
    bigger = grown(padded, [fits, over])
    assert bigger == InteractionSizes(16, 64, 16, 40, 64, 8)
    assert not needs_rebuild([fits, over], bigger)
    assert pad_system_sizes(bigger) == {"atoms": 16, "nonbonded_pairs": 64, "pairs": 16,
                                        "angles": 40, "torsions": 64, "hbonds": 8}


# ------------------------------------------------------------------------------ energies


def _clustered_vs_single(shared_datasets, dataset, names, bonded):
    """Energies, forces and charges: structures padded to one shared cluster shape (one vmapped
    compilation) against each alone in ``evaluate_structures``."""
    from reaxopt.evaluate import (batched_energy_forces_charges, build_system, pad_system,
                                  evaluate_structures)

    ffield = shared_datasets / dataset / "ffield_lit"
    everything = read_geometries(shared_datasets / dataset / "geo")
    structures = [next(s for s in everything if s.name == n) for n in names]
    params, topology = build_forcefield(read_ffield(ffield))
    sizes = count_interactions(structures, params, topology)
    clustering = cluster_structures(sizes, 1)
    shape = pad_system_sizes(clustering.padded[0])
    built = [build_system(s, params, topology, bonded=bonded) for s in structures]
    if bonded:  # the counts from the built lists are the counted ones
        assert [system_interaction_sizes(b[1]) for b in built] == sizes
    padded = [pad_system(*b, shape) for b in built]
    positions = stack_trees([p[0] for p in padded])
    systems = stack_trees([p[1] for p in padded])
    energy, _, forces, charges = batched_energy_forces_charges(positions, systems, params,
                                                               topology=topology)
    single = evaluate_structures(ffield, structures, bonded=bonded)
    for k, (structure, reference) in enumerate(zip(structures, single)):
        n = structure.n_atoms
        assert float(energy[k]) == pytest.approx(reference["energy"], rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(np.asarray(forces[k])[:n], reference["forces"], rtol=1e-9,
                                   atol=1e-9)
        np.testing.assert_allclose(np.asarray(charges[k])[:n], reference["charges"], rtol=1e-9,
                                   atol=1e-12)
        assert np.all(np.asarray(forces[k])[n:] == 0.0)


# structures of different sizes that evaluate_structures puts in one shape of its own
ENERGY_CASES = [("disulfide", ["dmteBase", "bnz"]),
                ("cobalt", ["Co_3_atom", "bcc_opt", "EOS_diam_1"])]  # periodic, many images


@pytest.mark.parametrize("dataset, names", ENERGY_CASES, ids=[c[0] for c in ENERGY_CASES])
def test_clustered_nonbonded_energies_equal_single_structure(shared_datasets, dataset, names):
    _clustered_vs_single(shared_datasets, dataset, names, bonded=False)


@pytest.mark.slow
@pytest.mark.parametrize("dataset, names", ENERGY_CASES, ids=[c[0] for c in ENERGY_CASES])
def test_clustered_energies_equal_single_structure(shared_datasets, dataset, names):
    _clustered_vs_single(shared_datasets, dataset, names, bonded=True)


# ------------------------------------------------------------------------------ command line


def test_cluster_command_json(shared_datasets):
    folder = shared_datasets / "disulfide"
    result = CliRunner().invoke(main, ["cluster", "--ffield", str(folder / "ffield_lit"),
                                       "--geo", str(folder / "geo"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    names = [s.name for s in read_geometries(folder / "geo")]
    assert sorted(name for c in data["clusters"] for name in c["structures"]) == sorted(names)
    assert sorted(i for c in data["clusters"] for i in c["indices"]) == list(range(len(names)))
    for c in data["clusters"]:
        assert set(c["padded"]) == set(InteractionSizes.fields())
    assert data["padded_cost"] >= data["unpadded_cost"] > 0
    assert data["ratio"] == pytest.approx(data["padded_cost"] / data["unpadded_cost"])
    assert data["ratio"] <= 1.3
    assert data["compile_count"] == len(data["clusters"])


def test_cluster_command_table_and_bad_k(shared_datasets):
    folder = shared_datasets / "cobalt"
    args = ["cluster", "--ffield", str(folder / "ffield_lit"), "--geo", str(folder / "geo")]
    result = CliRunner().invoke(main, args + ["--clusters", "3"])
    assert result.exit_code == 0, result.output
    assert "147 structures in 3 clusters" in result.output
    assert "compile count: 3" in result.output
    bad = CliRunner().invoke(main, args + ["--clusters", "0"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(main, ["cluster", "--ffield", str(folder / "ffield_lit"),
                                        "--geo", str(folder / "nothing_here")])
    assert missing.exit_code == 2 and "error:" in missing.output
