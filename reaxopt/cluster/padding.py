"""Fixed shapes for a cluster of structures: padded arrays with masks, stacking, overflow checks.

Padding never drops anything: a padded array holds every real entry first, then padding entries
whose mask is False. Padding entries of index arrays point at a valid index (``fill``, by default
0) so that gathers stay in bounds; the energy must gate every padded contribution with
``jnp.where(mask, value, 0)`` (not a product, which lets NaN through and spoils gradients), so
that padding contributes exactly zero to energies and derivatives.

Lists that move with the geometry: build them with every cutoff widened by a skin (``Cutoffs.
widened``) and pad the cluster to the counts at that skin. They stay complete while no atom has
moved more than skin/2 from where they were built (``moved_beyond_skin``). Past that, rebuild the
lists on the host and check whether they still fit (``needs_rebuild`` / ``overflowing``); if not,
re-pad the cluster to ``grown`` sizes (one new compilation) instead of losing interactions.
"""

from __future__ import annotations

import jax
import numpy as np

from reaxopt.cluster.clustering import MULTIPLE, round_up
from reaxopt.cluster.sizes import InteractionSizes


def pad_rows(values, size: int, fill=0) -> np.ndarray:
    """``values`` ((n, ...), n <= size) followed by ``fill`` rows up to ``size`` rows, same dtype;
    ValueError if it does not fit."""
    values = np.asarray(values)
    n = len(values)
    if n > size:
        raise ValueError(f"{n} entries do not fit in {size} padded slots")
    padding = np.full((size - n,) + values.shape[1:], fill, dtype=values.dtype)
    return np.concatenate([values, padding])


def padding_mask(count: int, size: int) -> np.ndarray:
    """(size,) bool: True on the first ``count`` (real) entries."""
    return np.arange(size) < count


def stack_padded(arrays, size: int, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """Per-structure arrays of different lengths -> ([S, size, ...] stacked, [S, size] masks)."""
    return (np.stack([pad_rows(a, size, fill) for a in arrays]),
            np.stack([padding_mask(len(a), size) for a in arrays]))


def stack_trees(trees):
    """Pytrees of equal structure and shapes (one per structure) -> one pytree with a leading
    structure axis on every leaf (numpy), ready for ``jax.vmap``."""
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]),
                                  *trees)


def unstack_tree(tree, index: int):
    """Structure ``index`` of a stacked pytree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def pad_system_sizes(padded: InteractionSizes) -> dict:
    """A cluster's padded sizes under the keys of ``reaxopt.evaluate.pad_system``."""
    return {"atoms": padded.atoms, "nonbonded_pairs": padded.nonbonded_pairs,
            "pairs": padded.bonded_pairs, "angles": padded.angles, "torsions": padded.torsions,
            "hbonds": padded.hbonds}


def system_interaction_sizes(system) -> InteractionSizes:
    """The real (unpadded) counts of a built ``reaxopt.energy.total.System``, from its masks."""
    lists = system.lists
    counts = lists.counts() if lists is not None else dict.fromkeys(
        ("pairs", "angles", "torsions", "hbonds"), 0)
    return InteractionSizes(atoms=int(np.sum(system.atom_mask)),
                            nonbonded_pairs=int(np.sum(system.pairs.mask)),
                            bonded_pairs=counts["pairs"], angles=counts["angles"],
                            torsions=counts["torsions"], hbonds=counts["hbonds"])


def overflowing(current: InteractionSizes, padded: InteractionSizes) -> tuple[str, ...]:
    """Names of the sizes where ``current`` counts exceed the ``padded`` sizes."""
    return tuple(name for name, now, room in zip(InteractionSizes.fields(), current.as_tuple(),
                                                 padded.as_tuple()) if now > room)


def needs_rebuild(current_sizes, padded_sizes: InteractionSizes) -> bool:
    """True if any structure's current counts (one ``InteractionSizes`` or a list of them) no
    longer fit the padded sizes: the cluster must be re-padded (``grown``) and recompiled."""
    if isinstance(current_sizes, InteractionSizes):
        current_sizes = [current_sizes]
    return any(overflowing(c, padded_sizes) for c in current_sizes)


def grown(padded: InteractionSizes, current_sizes, multiple: int = MULTIPLE,
          headroom: float = 0.0) -> InteractionSizes:
    """Padded sizes that hold both the old padding and every current count (rounded up); a size
    that has to grow gets ``headroom`` (a fraction of the count) of extra room, so that lists
    growing a little further do not need yet another shape (and compilation)."""
    if isinstance(current_sizes, InteractionSizes):
        current_sizes = [current_sizes]
    rows = np.array([padded.as_tuple()] + [c.as_tuple() for c in current_sizes], np.int64)
    need = rows.max(axis=0)
    need = np.where(need > rows[0], np.ceil(need * (1.0 + headroom)), need)
    return InteractionSizes.from_array(round_up(need, multiple))


def moved_beyond_skin(positions, reference_positions, skin: float) -> bool:
    """True once some atom has moved more than skin/2 (Å) from where the lists were built:
    two atoms may then have closed in by more than the skin, and the lists must be rebuilt.

    For a fixed cell; when the cell changes (cell optimisation) images move too, so rebuild
    whenever it has changed by more than the skin allows.
    """
    moved = np.linalg.norm(np.asarray(positions) - np.asarray(reference_positions), axis=-1)
    return bool(np.any(moved > 0.5 * skin))
