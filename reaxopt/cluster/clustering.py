"""Group structures into a few padded shapes: little padded work, few compilations.

Every structure of a cluster is padded to the cluster's shape (the elementwise maximum of its
members' list sizes, rounded up to a SIMD-friendly multiple), and the jitted energy compiles once
per cluster shape. The padded work of a cluster is (members) x cost(padded sizes); clustering
minimises the total over clusters for a given number of clusters K.

Cost model (``CostModel``): the work of one energy + gradient evaluation of one structure, in
units of one nonbonded pair (vdW + Coulomb + taper + its QEq matrix element, forward and
backward), is linear in the list sizes plus the dense QEq solve:

    cost = atom*atoms + nonbonded_pair*pairs + bonded_pair*bond_candidates + angle*angles
           + torsion*torsions + hbond*hbonds + qeq_cubic*atoms^3

The per-entry weights reflect the relative arithmetic of each term in ``reaxopt.energy`` (a bond
candidate carries the bond order with its corrections and the bond energy; a torsion entry the
most trigonometry); qeq_cubic ~ (N^3/3 flops of an LU solve, x3 with its adjoint) / (~100 flops
of a pair). They are estimates to rank partitions, not timings; all are parameters.

Algorithm (deterministic): for each of a few orderings of the structures (by total cost and by
each size dimension), dynamic programming gives the optimal partition of that ordering into K
contiguous groups (exact when the sizes are ordered alike in every dimension); the best one is
then improved by moving single structures between clusters while the padded cost drops.

Automatic K (``choose_k``): the K <= max_clusters that minimises the estimated time of a fit,
evaluations * (seconds_per_unit * padded_cost(K) + call_seconds * K) + compile_seconds * K
(``AutoK``: every cluster is one call per evaluation and one compilation), among the K whose
padded/unpadded cost ratio is at most max_ratio (the target of issue 4); if no K up to the cap
reaches that ratio (small molecules, whose rounding to multiples of 8 alone exceeds it), among
all K: more compilations would not buy the target, only time. ``ONE_PASS`` is the choice for a
single evaluation of every structure (``reaxopt.evaluate.batch_structures``; ``reaxopt
evaluate`` packs its structures instead): compile time then outweighs
padding, so K stays 1 unless the padded work alone would cost more than another compilation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from reaxopt.cluster.sizes import InteractionSizes

MULTIPLE = 8  # pad every size up to a multiple of this (SIMD width of float64 x AVX-512)


@dataclass(frozen=True)
class CostModel:
    """Relative work per padded entry (one nonbonded pair = 1); see the module docstring."""

    atom: float = 2.0
    nonbonded_pair: float = 1.0
    bonded_pair: float = 4.0
    angle: float = 2.0
    torsion: float = 3.0
    hbond: float = 2.0
    qeq_cubic: float = 0.01

    def linear_weights(self) -> np.ndarray:
        """Weights in ``InteractionSizes.fields()`` order."""
        return np.array([self.atom, self.nonbonded_pair, self.bonded_pair, self.angle,
                         self.torsion, self.hbond], float)

    def cost(self, sizes) -> np.ndarray:
        """Cost of each row of ``sizes`` ((..., 6) counts in ``InteractionSizes`` order)."""
        sizes = np.asarray(sizes, float)
        return sizes @ self.linear_weights() + self.qeq_cubic * sizes[..., 0] ** 3


@dataclass(frozen=True)
class AutoK:
    """How K is chosen when the user does not set it (see the module docstring).

    The time constants are orders of magnitude measured with ``benchmarks/bench_clustering.py
    --energy 8`` on the disulfide set (CPU, 2 shared cores): ~1.7e-7 s per cost unit in the
    steady state, 15-70 s per compilation of the full energy with forces, ~1 ms per call.
    """

    max_clusters: int = 10
    max_ratio: float = 1.3
    evaluations: float = 1.0e4  # energy + gradient evaluations of every structure over a fit
    seconds_per_unit: float = 2.0e-7  # steady-state time of one cost unit
    call_seconds: float = 1.0e-3  # fixed cost of one call (one per cluster per evaluation)
    compile_seconds: float = 30.0  # one compilation of the energy and its gradients

    def fit_seconds(self, padded_cost: float, k: int) -> float:
        """Estimated time of a fit with K clusters of this total padded cost."""
        steady = self.seconds_per_unit * padded_cost + self.call_seconds * k
        return self.evaluations * steady + self.compile_seconds * k


ONE_PASS = AutoK(evaluations=1.0, max_ratio=math.inf)


@dataclass(frozen=True, eq=False)
class Clustering:
    """Structures grouped into clusters of one padded shape each.

    assignment: (S,) cluster index of every structure (clusters ordered by their padded cost per
    structure, smallest first); padded: each cluster's padded sizes; cluster_costs: each
    cluster's padded cost (members x cost(padded)); cluster_unpadded_costs: the sum of its
    members' own costs; padded_cost, unpadded_cost: totals. Equal (and hashed) by content, so
    that it can be static data of a jitted pytree.
    """

    assignment: np.ndarray
    padded: tuple[InteractionSizes, ...]
    cluster_costs: tuple[float, ...]
    cluster_unpadded_costs: tuple[float, ...]
    padded_cost: float
    unpadded_cost: float
    multiple: int = MULTIPLE
    candidates: dict = field(default_factory=dict)  # K -> padded cost, when K was chosen

    @property
    def n_clusters(self) -> int:
        return len(self.padded)

    @property
    def ratio(self) -> float:
        return self.padded_cost / self.unpadded_cost if self.unpadded_cost > 0 else 1.0

    def members(self, cluster: int) -> np.ndarray:
        """Indices of the structures of ``cluster``, in input order."""
        return np.nonzero(self.assignment == cluster)[0]

    @functools.cached_property
    def _key(self):
        return (self.assignment.tobytes(), self.padded, self.cluster_costs,
                self.cluster_unpadded_costs, self.multiple, tuple(sorted(self.candidates.items())))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, Clustering) and self._key == other._key


def round_up(counts, multiple: int = MULTIPLE) -> np.ndarray:
    """Each count rounded up to a multiple of ``multiple``, at least one multiple."""
    counts = np.asarray(counts, np.int64)
    return np.maximum(-(-counts // multiple), 1) * multiple


def _matrix(sizes) -> np.ndarray:
    return np.array([s.as_tuple() for s in sizes], np.int64).reshape(len(sizes), 6)


def _partition_cost(matrix, labels, model, multiple):
    total = 0.0
    for c in np.unique(labels):
        members = matrix[labels == c]
        total += len(members) * float(model.cost(round_up(members.max(axis=0), multiple)))
    return total


def _contiguous_partitions(matrix, order, k_max, model, multiple):
    """For K = 1..k_max: (cost, labels) of the best split of ``order`` into K contiguous runs."""
    n = len(order)
    sorted_sizes = matrix[order]
    best = np.full((k_max + 1, n + 1), np.inf)  # best[k, b]: first b structures in k groups
    best[0, 0] = 0.0
    split = np.zeros((k_max + 1, n + 1), np.int64)
    for b in range(1, n + 1):
        # segment a..b-1 for every start a: running maximum from b-1 backwards
        maxima = np.maximum.accumulate(sorted_sizes[b - 1::-1], axis=0)[::-1]
        segment = (b - np.arange(b)) * model.cost(round_up(maxima, multiple))
        top = min(k_max, b)
        total = best[:top, :b] + segment[None, :]  # row k-1: the first a in k-1 groups
        split[1:top + 1, b] = np.argmin(total, axis=1)
        best[1:top + 1, b] = total[np.arange(top), split[1:top + 1, b]]
    results = {}
    for k in range(1, min(k_max, n) + 1):
        labels = np.empty(n, np.int64)
        b = n
        for group in range(k, 0, -1):
            a = split[group, b]
            labels[order[a:b]] = group - 1
            b = a
        results[k] = (float(best[k, n]), labels)
    return results


def _improve(matrix, labels, model, multiple, max_passes=50):
    """Move single structures between clusters while the total padded cost drops."""
    labels = labels.copy()
    index = np.arange(len(labels))

    def cluster_cost(members):
        return len(members) * float(model.cost(round_up(members.max(axis=0), multiple)))

    groups = list(np.unique(labels))
    maxima = {c: matrix[labels == c].max(axis=0) for c in groups}
    counts = {c: int(np.sum(labels == c)) for c in groups}
    cost = {c: cluster_cost(matrix[labels == c]) for c in groups}
    for _ in range(max_passes):
        moved = False
        for s in range(len(labels)):
            source = labels[s]
            rest = (labels == source) & (index != s)
            if not rest.any():
                continue  # never empty a cluster here (K stays what was asked)
            source_after = cluster_cost(matrix[rest])
            best_delta, best_target = -1e-9 * cost[source], None
            for t in groups:
                if t == source:
                    continue
                target_after = (counts[t] + 1) * float(
                    model.cost(round_up(np.maximum(maxima[t], matrix[s]), multiple)))
                delta = target_after - cost[t] + source_after - cost[source]
                if delta < best_delta:
                    best_delta, best_target = delta, t
            if best_target is not None:
                labels[s] = best_target
                for c in (source, best_target):
                    members = matrix[labels == c]
                    maxima[c], counts[c], cost[c] = (members.max(axis=0), len(members),
                                                     cluster_cost(members))
                moved = True
        if not moved:
            break
    return labels


def _orderings(matrix, model):
    """A few deterministic orderings: by total cost, then by each size dimension."""
    index = np.arange(len(matrix))
    total = model.cost(matrix)
    keys = [total] + [matrix[:, d] for d in range(matrix.shape[1])]
    orders = []
    for key in keys:
        order = np.lexsort((index, total, key))
        if not any(np.array_equal(order, o) for o in orders):
            orders.append(order)
    return orders


def _best_partitions(matrix, ks, model, multiple):
    """K -> labels of the best partition found into K clusters, for every K in ``ks``."""
    best = {}
    for order in _orderings(matrix, model):
        for k, (cost, labels) in _contiguous_partitions(matrix, order, max(ks), model,
                                                        multiple).items():
            if k in ks and (k not in best or cost < best[k][0]):
                best[k] = (cost, labels)
    return {k: _improve(matrix, labels, model, multiple) for k, (_, labels) in best.items()}


def _result(matrix, labels, model, multiple, candidates=None) -> Clustering:
    groups = np.unique(labels)
    padded = {c: round_up(matrix[labels == c].max(axis=0), multiple) for c in groups}
    costs = {c: int(np.sum(labels == c)) * float(model.cost(padded[c])) for c in groups}
    own = model.cost(matrix)
    unpadded = {c: float(np.sum(own[labels == c])) for c in groups}
    per_structure = {c: costs[c] / np.sum(labels == c) for c in groups}
    first = {c: int(np.argmax(labels == c)) for c in groups}
    ranked = sorted(groups, key=lambda c: (per_structure[c], first[c]))
    renumber = {c: n for n, c in enumerate(ranked)}
    return Clustering(
        assignment=np.array([renumber[c] for c in labels], np.int64),
        padded=tuple(InteractionSizes.from_array(padded[c]) for c in ranked),
        cluster_costs=tuple(costs[c] for c in ranked),
        cluster_unpadded_costs=tuple(unpadded[c] for c in ranked),
        padded_cost=float(sum(costs.values())),
        unpadded_cost=float(np.sum(model.cost(matrix))),
        multiple=multiple, candidates=dict(candidates or {}))


def choose_k(padded_costs: dict[int, float], unpadded_cost: float, auto: AutoK) -> int:
    """The automatic K from the best padded cost found for each K (module docstring)."""
    ks = sorted(padded_costs)
    ratio = {k: padded_costs[k] / unpadded_cost if unpadded_cost > 0 else 1.0 for k in ks}
    good = [k for k in ks if ratio[k] <= auto.max_ratio] or ks
    return min(good, key=lambda k: (auto.fit_seconds(padded_costs[k], k), k))


def cluster_structures(sizes: list[InteractionSizes], k: int | None = None, *,
                       multiple: int = MULTIPLE, model: CostModel = CostModel(),
                       auto: AutoK = AutoK()) -> Clustering:
    """Group structures (their ``InteractionSizes``) into K padded shapes.

    k: the number of clusters (at most the number of structures), or None to choose it
    (``choose_k``); multiple: padded sizes are multiples of it.
    """
    if k is not None and k < 1:
        raise ValueError(f"the number of clusters must be at least 1, got {k}")
    matrix = _matrix(sizes)
    n = len(matrix)
    if n == 0:
        return Clustering(np.zeros(0, np.int64), (), (), (), 0.0, 0.0, multiple)
    if k is not None and k >= n:  # one structure per cluster
        return _result(matrix, np.arange(n), model, multiple)
    if k is not None:
        labels = _best_partitions(matrix, [k], model, multiple)[k]
        return _result(matrix, labels, model, multiple)
    partitions = _best_partitions(matrix, list(range(1, min(auto.max_clusters, n) + 1)), model,
                                  multiple)
    costs = {kk: _partition_cost(matrix, labels, model, multiple)
             for kk, labels in partitions.items()}
    chosen = choose_k(costs, float(np.sum(model.cost(matrix))), auto)
    return _result(matrix, partitions[chosen], model, multiple, candidates=costs)


def clustering_summary(clustering: Clustering, names: list[str]) -> dict:
    """A JSON-ready description: per cluster its structures (names and 0-based indices), padded
    sizes, padded and unpadded cost; the totals, their ratio and the compile count."""
    clusters = []
    for c, padded in enumerate(clustering.padded):
        members = clustering.members(c)
        clusters.append({
            "index": c,
            "structures": [names[s] for s in members],
            "indices": [int(s) for s in members],
            "padded": padded.as_dict(),
            "padded_cost": clustering.cluster_costs[c],
            "unpadded_cost": clustering.cluster_unpadded_costs[c],
            "cost_share": (clustering.cluster_costs[c] / clustering.padded_cost
                           if clustering.padded_cost else 0.0),
        })
    return {"structures": len(clustering.assignment), "clusters": clusters,
            "padded_cost": clustering.padded_cost, "unpadded_cost": clustering.unpadded_cost,
            "ratio": clustering.ratio, "compile_count": clustering.n_clusters,
            "multiple": clustering.multiple,
            "candidates": {str(k): cost for k, cost in sorted(clustering.candidates.items())}}


def summary_lines(summary: dict, chosen: str) -> list[str]:
    """``clustering_summary`` as a table: one row per cluster (structures, padded sizes, cost
    share), then the padded/unpadded cost and the compile count. chosen: how K was set."""
    fields = InteractionSizes.fields()
    header = ["cluster", "structures"] + [f.replace("_", " ") for f in fields] + ["cost share"]
    rows = [[str(c["index"]), str(len(c["structures"]))] + [str(c["padded"][f]) for f in fields]
            + [f"{100 * c['cost_share']:.1f} %"] for c in summary["clusters"]]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    k = len(summary["clusters"])
    lines = [f"{summary['structures']} structures in {k} cluster{'s' if k != 1 else ''} "
             f"({chosen}); padded sizes per cluster:"]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header] + rows]
    lines.append(f"padded cost {summary['padded_cost']:.4g}, unpadded cost "
                 f"{summary['unpadded_cost']:.4g}: ratio {summary['ratio']:.3f}")
    return lines
