"""The global stage: cheap starts over the whole box and CMA-ES, scored at fixed relaxations,
whose best distinct points start the local trials (``explore(fit)``, run by the driver).

Everything works on the parameters scaled to u in [0, 1] by their bounds. ``Exploration``
is a state (JSON-ready, the CMA-ES object pickled inside) plus ``step``: the first step scores
the starts (a Latin hypercube of ``search.starts`` points and the starting force field), each
later one a CMA-ES generation (pycma's ask/tell, its normal draws from the run's seeded
generator, so a run and a resumed run draw the same points). ``hand_over`` gives the best
distinct points found.
"""

from __future__ import annotations

import base64
import math
import pickle
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

DISTINCT = 0.05  # scaled distance (max norm) below which two handed-over points are one


def latin_hypercube(n: int, dimension: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dimension) points in [0, 1]: one in each of n equal slices of every axis."""
    if n <= 0:
        return np.zeros((0, dimension))
    slices = np.stack([rng.permutation(n) for _ in range(dimension)], axis=1)
    return (slices + rng.uniform(size=(n, dimension))) / n


class Normal:
    """Standard normal draws from a numpy Generator, for pycma's ``randn`` option (picklable,
    so the generator's state travels with the pickled strategy)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


@dataclass
class Exploration:
    """The global stage's state.

    seen: [(u, loss)] of the best points scored so far (at most ``keep``); evaluations: losses
    scored; generation: CMA-ES generations told; strategy: the pickled CMA-ES object (base64;
    None before the starts are scored); done: the stage has finished.
    """

    seen: list = field(default_factory=list)
    evaluations: int = 0
    generation: int = 0
    strategy: str | None = None
    done: bool = False
    keep: int = 64

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> Exploration:
        return cls(**data)

    def _record(self, points: np.ndarray, losses: list[float]) -> None:
        self.evaluations += len(losses)
        merged = self.seen + [(list(map(float, u)), float(f)) for u, f in zip(points, losses)]
        merged.sort(key=lambda item: item[1])
        self.seen = merged[:self.keep]

    def step(self, score: Callable[[np.ndarray], float], u_start: np.ndarray, search,
             rng: np.random.Generator, budget: int) -> str:
        """Score the starts (first call) or one CMA-ES generation, within ``budget`` losses in
        all; returns a line for the log. ``score(u) -> loss`` (inf where not finite)."""
        import cma

        if self.strategy is None:
            points = np.vstack([u_start[None, :], latin_hypercube(search.starts, len(u_start),
                                                                  rng)])
            self._record(points, [_finite(score(u)) for u in points])
            best_u = np.array(self.seen[0][0])
            # CMA-ES draws from a generator of its own, seeded from the run's and pickled with it
            own = np.random.default_rng(int(rng.integers(2 ** 63)))
            options = {"randn": Normal(own), "seed": math.nan, "bounds": [0.0, 1.0],
                       "verbose": -9, "verb_log": 0, "verb_disp": 0}
            if search.popsize:
                options["popsize"] = search.popsize
            strategy = cma.CMAEvolutionStrategy(best_u, search.sigma, options)
            self.strategy = _pickle(strategy)
            return (f"search: scored {len(points)} starts (the starting force field and a Latin "
                    f"hypercube), best loss {self.seen[0][1]:.6g}")
        strategy = _unpickle(self.strategy)
        points = np.asarray(strategy.ask())
        losses = [_finite(score(u)) for u in points]
        # pycma ranks by the values it is told; an infinite one must not poison its update
        worst = max([f for f in losses if math.isfinite(f)], default=1.0)
        strategy.tell(list(points), [f if math.isfinite(f) else 10.0 * abs(worst) + 1.0
                                     for f in losses])
        self._record(points, losses)
        self.generation += 1
        self.strategy = _pickle(strategy)
        stopped = strategy.stop()
        if stopped or self.evaluations + len(points) > budget:
            self.done = True
        return (f"search: CMA-ES generation {self.generation}, {len(points)} points, best "
                f"{min(losses):.6g} (so far {self.seen[0][1]:.6g}, {self.evaluations} losses)"
                + (f"; CMA-ES stopped ({', '.join(stopped)})" if stopped else ""))

    def hand_over(self, count: int) -> list[tuple[np.ndarray, float]]:
        """The ``count`` best points seen that lie at least DISTINCT apart (u, loss)."""
        chosen: list[tuple[np.ndarray, float]] = []
        for u, loss in self.seen:
            u = np.array(u)
            if math.isfinite(loss) and all(np.max(np.abs(u - c)) > DISTINCT for c, _ in chosen):
                chosen.append((u, loss))
            if len(chosen) == count:
                break
        return chosen


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _pickle(strategy) -> str:
    return base64.b64encode(pickle.dumps(strategy)).decode("ascii")


def _unpickle(text: str):
    return pickle.loads(base64.b64decode(text))


def explore(fit) -> None:
    """Run the global stage (``search``) of the fit driver ``fit`` a step at a time, each told
    to its observers (``explored``) and so checkpointed; at its end its best distinct points
    become the trials' starts (``fit.state.candidates``). Nothing to do once a trial has
    started."""
    s, search = fit.setup, fit.setup.config.search
    if not search.enabled or fit.state.trials:
        return
    exploration = Exploration.from_json(fit.state.exploration or {})
    model = fit.from_inputs(s.theta_start, "the search")

    def score(u):
        return fit.score(s.lower + np.clip(u, 0.0, 1.0) * s.span, model)

    u_start = (s.theta_start - s.lower) / s.span
    while not exploration.done:
        budget = min(search.evaluations, fit.evaluations_left())
        spent = fit.budget_spent()
        line = exploration.step(score, u_start, search, fit.rng, budget) if not spent \
            else f"search: ends, the run's budget is spent ({spent})"
        if spent or search.method == "none" or exploration.evaluations >= budget:
            exploration.done = True
        if exploration.done:
            fit.state.candidates = [[(s.lower + u * s.span).tolist(), loss] for u, loss in
                                    exploration.hand_over(search.hand_over)]
        fit.state.exploration = exploration.to_json()
        fit.log(line)
        fit.notify("explored", exploration)
    losses = ", ".join(f"{loss:.6g}" for _, loss in fit.state.candidates)
    fit.log(f"search: done after {exploration.evaluations} losses; the local trials start "
            f"from its {len(fit.state.candidates)} best distinct points (losses {losses} at "
            "the starting force field's relaxations)")
