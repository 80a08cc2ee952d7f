"""The run state of a fit: what a checkpoint holds, saved whole and loaded back.

``RunState`` holds the trials (each a ``Trial``: its parameters, outer steps, trust radius,
relaxed geometries and why it ended), the best force fields seen, the history rows, the random
generator's state, the counters and the fingerprint of the inputs. It is JSON-ready
(``to_json``/``from_json``); checkpoints of version 1 (one current trial plus ``trial_ends``)
load into it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from reaxopt.errors import InputError
from reaxopt.io.files import write_text_atomic

CHECKPOINT = "checkpoint.json"
CHECKPOINT_VERSION = 2
STEP_EVENTS = ("step end", "step rejected")  # history events of an outer step's end


@dataclass
class Trial:
    """One trial: a local search from its own start.

    number: 1-based; theta: its current (last accepted) parameters; step: outer steps taken;
    radius: the trust radius of its next step (scaled units; None: not set yet); geometries:
    the minimised structures relaxed under theta (``reaxopt.relaxation.geometries_to_json``);
    end_reason: why it ended (None: it goes on while it has steps; a trial that ran out of
    steps goes on when a resumed run gives it more); best_selection, stale_steps: its lowest
    validation loss and the outer steps since it last went lower (early stopping).
    """

    number: int
    theta: list
    step: int = 0
    radius: float | None = None
    geometries: list | None = None
    end_reason: str | None = None
    best_selection: float | None = None
    stale_steps: int = 0

    def has_steps(self, steps: int) -> bool:
        """Whether the trial goes on under a plan of ``steps`` outer steps per trial."""
        return self.end_reason is None and self.step < steps


@dataclass
class RunState:
    """Everything a resumed run needs to go on exactly as an uninterrupted one would.

    best / lowest_training: the selected force field and the one of the lowest training loss
    seen ({theta, selection, loss, data_loss, validation_loss, trial, step, iteration});
    history: one row per optimizer iteration and outer step; rng: the numpy generator's state;
    elapsed: seconds of earlier (interrupted) runs; start_geometries: the minimised structures
    relaxed under the starting force field; inputs: the inputs' fingerprint
    (``reaxopt.rundir``); finished: the run completed its plan; exploration: the global
    stage's state (``reaxopt.fit.explore.Exploration``); candidates: the points it handed over,
    [theta, loss], that start the local trials in order.
    """

    labels: list = field(default_factory=list)
    trials: list = field(default_factory=list)
    best: dict | None = None
    lowest_training: dict | None = None
    history: list = field(default_factory=list)
    rng: dict | None = None
    elapsed: float = 0.0
    evaluations: int = 0
    finished: bool = False
    start_geometries: list | None = None
    inputs: dict | None = None
    exploration: dict | None = None
    candidates: list = field(default_factory=list)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        return {"version": CHECKPOINT_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict) -> RunState:
        data = dict(data)
        if data.pop("version", None) == 1:
            data = _from_version_1(data)
        data["trials"] = [Trial(**t) for t in data.get("trials", [])]
        return cls(**data)

    def steps_done(self, steps: int, trials: int) -> int:
        """Outer steps done of the plan (``trials`` x ``steps``), for the progress bar: an ended
        trial counts all its steps."""
        return sum(steps if t.end_reason else min(t.step, steps) for t in self.trials[:trials])

    def forget_relaxations(self) -> None:
        """Drop the saved geometries and early-stopping counts (the inputs changed)."""
        self.start_geometries = None
        for trial in self.trials:
            trial.geometries, trial.best_selection, trial.stale_steps = None, None, 0


def _from_version_1(data: dict) -> dict:
    """A version-1 checkpoint (the current trial in the top level, the ended ones in
    ``trial_ends``) as version 2's fields."""
    trials = []
    for k, end in enumerate(data.pop("trial_ends", None) or []):
        if end is None:  # ended by a run whose checkpoint kept no trial ends
            trials.append(Trial(k + 1, data.get("theta") or [], end_reason="ended"))
            continue
        trials.append(Trial(k + 1, end["theta"], end["steps"], end["radius"], end["geometries"],
                            None if end["reason"] == "steps" else end["reason"],
                            end.get("trial_best_selection"), end.get("stale_steps", 0)))
    current = data.pop("trial", 0)
    theta = data.pop("theta", None)
    reason = data.pop("end_reason", None) or ("ended" if data.pop("trial_done", False) else None)
    step, radius, geometries = data.pop("step", 0), data.pop("radius", None), \
        data.pop("geometries", None)
    best_selection, stale = data.pop("trial_best_selection", None), data.pop("stale_steps", 0)
    if theta is not None:  # the trial in progress (maybe one extended after it had ended)
        live = Trial(current + 1, theta, step, radius, geometries, reason, best_selection, stale)
        trials[current:current + 1] = [live]
    data["trials"] = [dataclasses.asdict(t) for t in trials]
    return data


def write_checkpoint(path: Path, state: RunState | dict) -> dict:
    """Write ``state`` (or a checkpoint's data as written before) to ``path`` atomically;
    returns what was written (a JSON-ready copy)."""
    data = json.loads(json.dumps(state if isinstance(state, dict) else state.to_json()))
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=True) + "\n")
    return data


def load_checkpoint(path: Path, labels: list[str]) -> RunState:
    """The checkpoint at ``path`` for a run fitting ``labels``; InputError naming it if it
    cannot be read or was written for other parameters."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("--resume: no checkpoint to resume from (expected checkpoint.json in "
                         "the output directory)", file=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--resume: cannot read the checkpoint ({exc})", file=path) from None
    version = data.get("version") if isinstance(data, dict) else None
    if version not in (1, CHECKPOINT_VERSION):
        raise InputError(f"--resume: checkpoint version {version} is not "
                         f"{CHECKPOINT_VERSION} (or 1)", file=path)
    try:
        state = RunState.from_json(data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"--resume: the checkpoint does not hold what a reaxopt checkpoint "
                         f"holds ({exc}); start over with --overwrite", file=path) from None
    if state.labels != labels:
        raise InputError("--resume: the checkpoint was written for other fitted parameters "
                         "than the params file now selects; start a new run without --resume",
                         file=path)
    return state


def check_saved_geometries(state: RunState, atom_counts: list[int], path: Path) -> None:
    """InputError unless the checkpoint's relaxed geometries fit the structures that relax now
    (their number and atom counts, in order)."""
    for saved in [state.start_geometries] + [t.geometries for t in state.trials]:
        if saved is not None and [len(p) for p, _ in saved] != list(atom_counts):
            raise InputError(f"--resume: the checkpoint holds relaxed geometries of "
                             f"{len(saved)} structures that do not match the {len(atom_counts)} "
                             "the inputs now ask to relax (changed geo or structure files?); "
                             "start a new run without --resume", file=path)
