"""Every structure of the two shared training sets against LAMMPS (ffield_lit): finite energy,
forces and charges that agree with ``pair_style reaxff`` + ``fix qeq/reaxff``.

Default run: all 232 disulfide structures and a deterministic sample of the cobalt set (the
first and last structure of every kind: clusters, dimers, EOS and elastic cells, surfaces,
stacking faults, vacancies, amorphous cells), each set padded to ONE shape and evaluated by one
vmapped call (one compilation per set). Slow run: all 147 cobalt structures through
``evaluate_structures`` (grouped by size, one batched call per group).
"""

from __future__ import annotations

import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from lammps_oracle import lammps_evaluate
from reaxopt.evaluate import (batched_energy_forces_charges, bond_cutoffs_for, build_system,
                              evaluate_structures, pad_system, shared_sizes, stack_systems)
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries


def _kind(name: str) -> str:
    return name.split("_")[0]


def cobalt_sample(structures):
    """First and last structure of every kind (name up to its first underscore), file order."""
    chosen: dict[str, list[int]] = {}
    for k, s in enumerate(structures):
        chosen.setdefault(_kind(s.name), []).append(k)
    picks = sorted({k for members in chosen.values() for k in (members[0], members[-1])})
    return [structures[k] for k in picks]


def evaluate_in_one_shape(ffield, structures) -> list[dict]:
    """Energies, forces, charges of all structures, padded to one shape, one vmapped call."""
    params, topology = build_forcefield(read_ffield(ffield))
    cutoffs = bond_cutoffs_for(params, topology)
    built = [build_system(s, params, topology, cutoffs=cutoffs) for s in structures]
    sizes = shared_sizes([system for _, system in built])
    positions, systems = stack_systems([pad_system(*b, sizes) for b in built])
    energy, _, forces, charges = batched_energy_forces_charges(positions, systems, params,
                                                               topology=topology)
    return [{"energy": float(energy[k]), "forces": np.asarray(forces[k])[:s.n_atoms],
             "charges": np.asarray(charges[k])[:s.n_atoms]}
            for k, s in enumerate(structures)]


def compare_with_lammps(ffield, structures, results):
    """Failure messages (empty if all agree) and the largest deviations seen."""
    failures, worst = [], {"energy": 0.0, "forces": 0.0, "charges": 0.0, "largest_force": 0.0}
    for s, ours in zip(structures, results):
        values = np.concatenate([[ours["energy"]], ours["forces"].ravel(), ours["charges"]])
        if not np.all(np.isfinite(values)):
            failures.append(f"{s.name}: non-finite energy, forces or charges")
            continue
        ref = lammps_evaluate(ffield, s.symbols, s.positions, s.cell, s.total_charge)
        de = abs(ours["energy"] - ref["energy"])
        df = float(np.max(np.abs(ours["forces"] - ref["forces"])))
        dq = float(np.max(np.abs(ours["charges"] - ref["charges"])))
        worst["energy"] = max(worst["energy"], de)
        worst["forces"] = max(worst["forces"], df)
        worst["charges"] = max(worst["charges"], dq)
        worst["largest_force"] = max(worst["largest_force"], float(np.max(np.abs(ref["forces"]))))
        if not de <= max(1e-6, 1e-8 * abs(ref["energy"])):
            failures.append(f"{s.name}: energy {ours['energy']!r}, LAMMPS {ref['energy']!r}")
        if not df <= 1e-5:
            failures.append(f"{s.name}: forces deviate by {df:.3g} kcal/mol/Å")
        if not dq <= 1e-7:
            failures.append(f"{s.name}: charges deviate by {dq:.3g} e")
    return failures, worst


def _check(ffield, structures, results):
    assert len(results) == len(structures)
    failures, worst = compare_with_lammps(ffield, structures, results)
    assert not failures, "\n".join(failures)
    assert worst["largest_force"] > 1.0  # the force comparison is not vacuous
    print(f"{len(structures)} structures; largest deviations: energy {worst['energy']:.2e} "
          f"kcal/mol, forces {worst['forces']:.2e} kcal/mol/Å, charges {worst['charges']:.2e} e")


def test_every_disulfide_structure_matches_lammps(shared_datasets):
    folder = shared_datasets / "disulfide"
    structures = read_geometries(folder / "geo")
    assert len(structures) == 232
    results = evaluate_in_one_shape(folder / "ffield_lit", structures)
    _check(folder / "ffield_lit", structures, results)


def test_cobalt_sample_of_every_kind_matches_lammps(shared_datasets):
    folder = shared_datasets / "cobalt"
    everything = read_geometries(folder / "geo")
    structures = cobalt_sample(everything)
    assert {_kind(s.name) for s in structures} == {_kind(s.name) for s in everything}
    assert any(s.cell is None for s in structures) and any(s.cell is not None for s in structures)
    results = evaluate_in_one_shape(folder / "ffield_lit", structures)
    _check(folder / "ffield_lit", structures, results)


@pytest.mark.slow
def test_every_cobalt_structure_matches_lammps(shared_datasets):
    folder = shared_datasets / "cobalt"
    structures = read_geometries(folder / "geo")
    assert len(structures) == 147
    results = evaluate_structures(folder / "ffield_lit", structures)
    assert [r["name"] for r in results] == [s.name for s in structures]
    _check(folder / "ffield_lit", structures, results)


def test_batches_cover_every_structure_in_equal_chunks(shared_datasets):
    from reaxopt.cluster.clustering import cluster_structures
    from reaxopt.cluster.sizes import count_interactions
    from reaxopt.evaluate import batch_structures

    folder = shared_datasets / "disulfide"
    structures = read_geometries(folder / "geo")
    params, topology = build_forcefield(read_ffield(folder / "ffield_lit"))
    budget = 40_000  # small enough to split the two large clusters
    batches = batch_structures(structures, params, topology, batch_budget=budget, clusters=3)
    clustering = cluster_structures(count_interactions(structures, params, topology), 3)
    seen = [k for members, _, _ in batches for k in members]
    assert sorted(set(seen)) == list(range(len(structures)))
    by_shape: dict = {}
    for members, positions, systems in batches:
        assert positions.shape[0] == len(members) == systems.types.shape[0]
        assert len({int(clustering.assignment[k]) for k in members}) == 1
        shape = (positions.shape, systems.lists.torsion_mask.shape)
        by_shape.setdefault(shape, []).append(members)
        entries = positions.shape[1] + systems.pairs.mask.shape[1] + sum(
            getattr(systems.lists, name).shape[1] for name in
            ("angle_mask", "torsion_mask", "hbond_mask")) + systems.lists.pairs.mask.shape[1]
        assert len(members) == 1 or len(members) * entries <= budget
    assert len(by_shape) == 3  # one shape per cluster, however many chunks
    assert len(batches) > 3
    # only a group's last chunk repeats a member (its final one)
    repeats = [k for k in set(seen) if seen.count(k) > 1]
    for k in repeats:
        holders = [m for m, _, _ in batches if k in m]
        assert holders[-1][-1] == k
