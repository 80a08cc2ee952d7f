"""Relaxed geometries for a fit: the minimised structures relaxed under given parameters, placed
into the loss's batches, with their geometry response.

The structures that ask for minimisation relax in a model of their own, clustered apart from
the single points (fewer, smaller shapes to compile than the loss's batches), from their input
geometries or from geometries carried from an earlier relaxation, and are then placed into the
loss's batches (``minimize.place_geometries``). For those that geometry targets measure, the
response (``reaxopt.response``) says how their positions move with the parameters.
Identical structures (the same molecule, settings and restraints in the training and the
validation set) relax once and share that relaxation's geometry and response.
``make_relaxer`` returns the ways to get such a model and remembers the last few (a rejected
step's next step starts from the same relaxation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.cluster.clustering import AutoK
from reaxopt.config import Config
from reaxopt.model import Model, ModelOptions, build_model, loosest_params
from reaxopt.packed import gated
from reaxopt.response import Response, relaxed_response, renumbered

TYPICAL_FIRE_STEPS = 100  # FIRE steps per relaxation the clustering's cost estimate assumes
REMEMBERED = 6  # cache entries: a step's start and end (and with carry the end from the
# inputs), each under two keys


@dataclass(frozen=True)
class Relaxed:
    """A model at relaxed positions; for the relaxed structures that geometry targets measure,
    how those positions move with the parameters (``reaxopt.response``); and the geometries of
    the minimised structures (``minimize.geometries``' form) to carry on. The model's packed
    system keeps the bond-order gates of the parameters it was relaxed under
    (``reaxopt.packed.gated``): its loss is LAMMPS's there and smooth around them."""

    model: Model
    response: Response | None = None
    geometries: tuple | None = None


def gated_model(model: Model, params) -> Model:
    """``model`` with its packed system's bond-order gates held at ``params``
    (``reaxopt.packed.gated``): exact there, smooth in the parameters around it. An unpacked
    model is returned as it is."""
    if model.packed is None:
        return model
    return dataclasses.replace(model, packed=gated(model.packed, params, model.topology))


def geometry_key(geometries: tuple | None) -> bytes:
    """A cache key for geometries (``minimize.geometries``' form; None: the inputs)."""
    if geometries is None:
        return b"inputs"
    digest = hashlib.sha256()
    for positions, cell in geometries:
        digest.update(np.ascontiguousarray(positions, float).tobytes())
        digest.update(np.ascontiguousarray(cell, float).tobytes())
    return digest.digest()


def geometries_to_json(geometries: tuple) -> list:
    """[[positions, cell], ...] (nested lists, Å) of ``minimize.geometries``' form; exact."""
    return [[positions.tolist(), cell.tolist()] for positions, cell in geometries]


def geometries_from_json(data: list) -> tuple:
    """``geometries_to_json``'s inverse."""
    return tuple((np.asarray(positions, float).reshape(-1, 3), np.asarray(cell, float))
                 for positions, cell in data)


def unconverged_note(rms, names, rms_force: float, shown: int = 5) -> str:
    """A log phrase naming the relaxations left at or above ``rms_force`` (kcal/mol/Å), the
    worst first: a soft mode left unconverged lands elsewhere for a small change of the
    parameters, so such structures' items make the relaxed loss rough."""
    rms = np.asarray(rms, float)
    above = [int(j) for j in np.argsort(-rms) if rms[j] >= rms_force]
    if not above:
        return f"all below {rms_force:g} kcal/mol/Å RMS force (largest {rms.max():.3g})"
    listed = ", ".join(f"{names[j]} {rms[j]:.3g}" for j in above[:shown])
    more = f" and {len(above) - shown} more" if len(above) > shown else ""
    return (f"{len(above)} of {len(rms)} above {rms_force:g} kcal/mol/Å RMS force: "
            f"{listed}{more}")


def relaxation_key(structure, limit: int) -> tuple:
    """What decides a structure's relaxation: equal keys relax to the same geometry."""
    cell = None if structure.cell is None else np.asarray(structure.cell, float).tobytes()
    return (tuple(structure.symbols), np.asarray(structure.positions, float).tobytes(), cell,
            float(structure.total_charge), structure.run_type, int(limit),
            tuple((r.kind, r.atoms, r.target, r.force1, r.force2, r.rate)
                  for r in structure.restraints))


def measured_rows(problem) -> set[int]:
    """Model rows whose atom positions a geometry target measures (training or validation)."""
    rows: set[int] = set()
    for items in (problem.training, problem.validation):
        if items is not None:
            rows.update(int(r) for r in np.asarray(items.geometry["row"]).ravel())
    return rows


def release_compiled_code_if_crowded(share: float = 0.5) -> bool:
    """Drop all compiled code (``jax.clear_caches``) when this process uses more than ``share``
    of its memory maps. Each XLA CPU executable holds thousands of maps and Linux caps a
    process at vm.max_map_count (65530 by default): the disulfide fit's loss and relaxation
    executables together crashed a fit. The persistent compilation cache reloads what is
    dropped (after tracing again). Returns whether it dropped; never on systems without
    /proc."""
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
        with open("/proc/self/maps", "rb") as maps:
            used = sum(1 for _ in maps)
    except (OSError, ValueError):
        return False
    if used <= share * limit:
        return False
    jax.clear_caches()
    return True


class Relaxer(NamedTuple):
    """What ``make_relaxer`` returns.

    minimized: model rows of the structures that relax. relaxed(theta, what, start=None): the
    model with them relaxed under theta from ``start`` (geometries; None: the inputs).
    placed(theta, geometries, what): the model with them at ``geometries`` as they are (a
    carried relaxation) and their response under theta. ``what`` names the call in the log.
    """

    minimized: list[int]
    relaxed: Callable[..., Relaxed]
    placed: Callable[..., Relaxed]


def make_relaxer(problem, config: Config, log: Callable[[str], None]) -> Relaxer:
    """The ``Relaxer`` of ``problem`` (``fit.Problem``) under ``config``'s minimize settings."""
    from reaxopt.minimize import geometries, newton_refine, place_geometries, relax

    tmap, structures = problem.theta_map, problem.model_structures
    limits = [s.max_iterations if s.max_iterations is not None else config.minimize.steps
              for s in structures]
    minimized = [k for k, s in enumerate(structures)
                 if s.run_type != "single_point" and limits[k] > 0]
    if not minimized:
        unchanged = Relaxed(problem.model)
        return Relaxer([], lambda *args, **kwargs: unchanged, lambda *args, **kwargs: unchanged)
    # identical structures (a molecule in both the training and the validation set) relax
    # once: the relaxation model holds one copy (its local rows), shared by every model row
    distinct_index: dict[tuple, int] = {}
    copy_of = [distinct_index.setdefault(relaxation_key(structures[k], limits[k]),
                                         len(distinct_index)) for k in minimized]
    first = [copy_of.index(u) for u in range(len(distinct_index))]  # per local row
    distinct = [minimized[j] for j in first]
    # BGF restraints add to the energy of the relaxations (reaxopt.restraints); per local row
    restraints = [structures[k].restraints for k in distinct]
    # CELL OPT: the cell relaxes too; the geometry response (reaxopt.response) of such a row
    # follows its atoms at the relaxed cell, not the cell's own change with the parameters
    cell_rows = [u for u, k in enumerate(distinct) if structures[k].run_type == "cell_opt"]
    cells_relaxing = set(cell_rows)
    measured = measured_rows(problem)
    # restrained structures respond for their energies too (reaxopt.response)
    responding = [k for k in minimized if k in measured or structures[k].restraints]
    # per local row, the model rows whose response it gives
    responding_rows = [[k for j, k in enumerate(minimized) if copy_of[j] == u and k in responding]
                       for u in range(len(distinct))]
    shared = (f"; {len(minimized) - len(distinct)} identical copies share these"
              if len(distinct) < len(minimized) else "")

    def copies(at: tuple) -> tuple:
        """Geometries of the local rows as those of every minimized model row."""
        return tuple(at[u] for u in copy_of)

    def originals(at: tuple) -> list:
        """Geometries of every minimized model row as those of the local rows."""
        return [at[j] for j in first]
    # FIRE runs on the packed system (minimize.relax_packed: a few compiled shapes, and only
    # the structures still stepping are evaluated); the clusters' padded batches serve the
    # Newton steps and the response. Automatic K weighs their compilation against the energy
    # evaluations of about optimizer.steps + 2 relaxations of up to TYPICAL_FIRE_STEPS each
    auto = AutoK(evaluations=min(config.minimize.steps, TYPICAL_FIRE_STEPS)
                 * (config.optimizer.steps + 2), max_ratio=math.inf)
    relax_model = build_model([structures[k] for k in distinct], problem.base_params,
                              problem.model.topology,
                              ModelOptions(clusters=config.clusters, auto=auto, packed=True),
                              cutoff_params=loosest_params(tmap, problem.base_params))
    every = range(len(distinct))
    cache: dict[bytes, Relaxed] = {}

    def remember(key: bytes, relaxed: Relaxed) -> Relaxed:
        cache[key] = relaxed
        while len(cache) > REMEMBERED:
            del cache[next(iter(cache))]
        return relaxed

    def recall(key: bytes) -> Relaxed | None:
        if key in cache:
            cache[key] = cache.pop(key)  # the most recently used is kept longest
        return cache.get(key)

    def assembled(relaxed_model, params, at: tuple | None = None) -> Relaxed:
        at = copies(geometries(relaxed_model)) if at is None else at
        response = None
        if responding:
            response = renumbered(relaxed_response(relaxed_model, params,
                                                   [u for u, rows in enumerate(responding_rows)
                                                    if rows],
                                                   config.minimize.min_stiffness, restraints),
                                  responding_rows, problem.model.n_max)
        # the loss around theta keeps the bond-order gates of theta: smooth in the parameters,
        # so a fitting step is not stopped at a threshold's jump
        model = gated_model(place_geometries(problem.model, minimized, at), params)
        return Relaxed(model, response, at)

    def placed(theta, at: tuple, what: str) -> Relaxed:
        key = b"at" + np.asarray(theta, float).tobytes() + geometry_key(at)
        found = recall(key)
        if found is not None:
            return found
        t = time.perf_counter()
        release_compiled_code_if_crowded()
        params = tmap.to_params(jnp.asarray(theta), problem.base_params)
        result = assembled(place_geometries(relax_model, every, originals(at)), params, at)
        release_compiled_code_if_crowded()
        log(f"placed {len(distinct)} carried geometries ({what}{shared}) in "
            f"{time.perf_counter() - t:.1f} s")
        return remember(key, result)

    def relaxed(theta, what: str, start: tuple | None = None) -> Relaxed:
        key = b"from" + np.asarray(theta, float).tobytes() + geometry_key(start)
        found = recall(key)
        if found is not None:
            return found
        t = time.perf_counter()
        release_compiled_code_if_crowded()
        params = tmap.to_params(jnp.asarray(theta), problem.base_params)
        begin = (relax_model if start is None
                 else place_geometries(relax_model, every, originals(start)))
        relaxed_model, steps, rms = relax(begin, params, every,
                                          [limits[k] for k in distinct],
                                          config.minimize.rms_force, cell_rows, restraints)
        newton = ""
        if config.minimize.newton_steps:
            refine = [j for j in every if j not in cells_relaxing
                      and rms[j] >= config.minimize.rms_force]
            if refine:
                before = float(np.max(rms))
                taken: list[int] = []  # per Newton step: force constants evaluated
                relaxed_model, refined = newton_refine(relaxed_model, params, refine,
                                                       config.minimize.rms_force,
                                                       config.minimize.newton_steps,
                                                       restraints,
                                                       lambda _, evaluated: taken.append(evaluated))
                rms[refine] = refined[refine]
                newton = (f"; {len(taken)} Newton steps ({sum(taken)} force-constant "
                          f"evaluations) for {len(refine)} (largest RMS force {before:.3g} "
                          "before)")
        result = assembled(relaxed_model, params)
        release_compiled_code_if_crowded()
        log(f"relaxed {len(distinct)} structures ({what}"
            f"{'' if start is None else ', from the carried geometries'}{shared}) in "
            f"{time.perf_counter() - t:.1f} s: up to {int(steps.max())} steps"
            + newton
            + (f"; geometry response of {len(responding)}" if responding else "")
            + "; " + unconverged_note(np.asarray(rms)[copy_of],
                                      [problem.names[k] for k in minimized],
                                      config.minimize.rms_force))
        remember(b"at" + np.asarray(theta, float).tobytes() + geometry_key(result.geometries),
                 result)
        return remember(key, result)

    return Relaxer(minimized, relaxed, placed)
