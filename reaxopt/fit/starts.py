"""Where a trial starts: the force field's values, an educated guess around them, a uniform
draw within the bounds, and the best of a random search.

Every draw comes from the run's numpy generator (seeded with ``optimizer.seed``, its state
checkpointed), so a run and a resumed run start their trials at the same points.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

EDUCATED_SPREAD = 0.1  # standard deviation of the 'educated' perturbation, share of the range


def starting_point(init: str, theta0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """``fixed``: theta0 clipped into the bounds; ``educated``: plus Gaussian noise of
    EDUCATED_SPREAD of each range (clipped); ``random``: uniform within the bounds."""
    if init == "random":
        return rng.uniform(lower, upper)
    if init == "educated":
        return np.clip(theta0 + rng.normal(0.0, EDUCATED_SPREAD, theta0.shape) * (upper - lower),
                       lower, upper)
    return np.clip(theta0, lower, upper)


def random_search(start: np.ndarray, samples: int, lower: np.ndarray, upper: np.ndarray,
                  rng: np.random.Generator, score: Callable[[np.ndarray], float]
                  ) -> tuple[np.ndarray, float]:
    """(the lowest-scoring of ``start`` and ``samples`` vectors uniform within the bounds, its
    score); ``score(theta)`` is a loss, non-finite counting as infinite."""
    candidates = [start] + [rng.uniform(lower, upper) for _ in range(samples)]
    scores = [score(c) for c in candidates]
    scores = [s if math.isfinite(s) else math.inf for s in scores]
    k = int(np.argmin(scores))
    return candidates[k], scores[k]
