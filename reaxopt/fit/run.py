"""``run_fit(config)``: a whole fit, from the inputs to the written outputs.

The inputs are validated first (``reaxopt.validate``); the output directory is then locked for
the run (``reaxopt.rundir``), the problem built, the starting force field evaluated, and the
driver (``reaxopt.fit.driver.Fit``) run with its observers; SIGINT and SIGTERM save the last
completed outer step's checkpoint and raise ``FitInterrupted``. The outputs are written from
the best force field, evaluated from the input geometries.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from reaxopt import rundir
from reaxopt.config import Config
from reaxopt.errors import InputError, InternalError
from reaxopt.fit.driver import Fit, FitInterrupted, Setup, clock
from reaxopt.fit.observers import (Behind, Checkpoint, EarlyStopping, History, LogLines,
                                   Progress)
from reaxopt.fit.problem import (build_problem, gated_at, gates_hold_at, make_evaluator,
                                 make_scorer)
from reaxopt.fit.runlog import RunLog
from reaxopt.fit.state import (CHECKPOINT, STEP_EVENTS, RunState, check_saved_geometries,
                                   load_checkpoint, write_checkpoint)
from reaxopt.inputs import Inputs, load_inputs
from reaxopt.relaxation import make_relaxer


@dataclass
class FitResult:
    """What a finished run produced (paths of outputs, the summary)."""

    output_dir: Path
    summary: dict
    state: RunState


def run_fit(config: Config, *, resume: bool = False, overwrite: bool = False,
            accept_changed_inputs: bool = False, stream=None,
            stop_after_steps: int | None = None, sensitivity: bool = True) -> FitResult:
    """Run the fit ``config`` describes and write its outputs.

    An earlier run's outputs in the output directory are an error unless ``resume`` continues
    that run or ``overwrite`` deletes them; ``resume`` on changed inputs is an error unless
    ``accept_changed_inputs`` (the kept force fields are then scored again). An unexpected
    exception is written with its traceback to run.log and raised as ``InternalError``.
    stream: where progress lines go (default stdout; False: only run.log). stop_after_steps:
    stop (as if interrupted, checkpoint written, no outputs) after this many outer steps.
    sensitivity: compute the parameter sensitivity at the best force field
    (``reaxopt.fit.sensitivity``) for summary.json, summary.md and sensitivity.png.
    """
    if resume and overwrite:
        raise InputError("--resume continues the run in the output directory and --overwrite "
                         "deletes it; expected one of them", file=config.path)
    wall_start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs = load_inputs(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with rundir.RunLock(out):
        rundir.prepare(out, resume=resume, overwrite=overwrite, config_path=config.path)
        fingerprint = rundir.fingerprint(config)
        changed = _changed_inputs(out / CHECKPOINT, fingerprint, accept_changed_inputs) \
            if resume else []
        previous = (out / "run.log").read_text() if resume and (out / "run.log").exists() \
            else ""
        log = RunLog(out / "run.log", stream, previous)
        for w in caught:
            log(f"warning: {' '.join(str(w.message).split())}")
        log(f"reaxopt fit {config.path}{' --resume' if resume else ''}")
        for line in changed:
            log(f"inputs changed since the checkpoint (--accept-changed-inputs): {line}")
        try:
            return _fit(config, inputs, log, fingerprint, wall_start, resume=resume,
                        rescore=bool(changed), stop_after_steps=stop_after_steps,
                        sensitivity=sensitivity)
        except (InputError, FitInterrupted):
            raise
        except Exception as exc:
            raise _internal_error(exc, log, out) from exc


def _internal_error(exc: Exception, log: RunLog, out: Path) -> InternalError:
    """Log an unexpected exception with its traceback and say where it went."""
    what = (f"cannot write {exc.filename}: {exc.strerror}" if isinstance(exc, OSError)
            and exc.filename else " ".join(f"{type(exc).__name__}: {exc}".split()))
    log(f"internal error: {what}; the checkpoint of the last completed outer step is kept "
        f"({out / CHECKPOINT}, if one was written)")
    log.lines += traceback.format_exc().rstrip("\n").splitlines()
    saved = out / "run.log"
    try:
        log.save()
    except OSError:
        saved = None
    return InternalError(f"{what}; the fit's checkpoint of its last completed outer step, if "
                         f"any, is in {out}", saved)


def _changed_inputs(checkpoint_path: Path, fingerprint: dict, accept: bool) -> list[str]:
    """What changed in the inputs since the checkpoint was written (its ``inputs``); an
    InputError listing it unless ``accept``."""
    try:
        saved = json.loads(checkpoint_path.read_text()).get("inputs")
    except (OSError, ValueError, AttributeError):
        return []  # load_checkpoint reports an unreadable checkpoint
    if saved is None:
        return []  # a checkpoint from before fingerprints
    found = rundir.changes(saved, fingerprint)
    if found and not accept:
        raise InputError("--resume: the inputs changed since the checkpoint was written ("
                         + "; ".join(found) + "): the kept force fields were judged under the "
                         "old ones. Restore them, start over with --overwrite, or resume with "
                         "--accept-changed-inputs to score the kept force fields again under the "
                         "new inputs", file=checkpoint_path)
    return found


def _setup(config: Config, inputs: Inputs, log: RunLog) -> Setup:
    problem = build_problem(inputs)
    tmap = problem.theta_map
    lower, upper = tmap.lower, tmap.upper
    relaxer = make_relaxer(problem, config, log)
    log(f"model: {problem.model.n_structures} structures; training items "
        f"{sum(problem.training.counts().values())}, "
        f"validation items {len(problem.validation_info)}; {tmap.size} parameters")
    for line in problem.model.summary_lines():
        log(line)
    theta_start = np.clip(problem.theta_start, lower, upper)
    # fitted parameters have a range: equal bounds are held fixed (reaxopt.inputs)
    return Setup(config, problem, relaxer,
                 make_evaluator(problem, config.optimizer.regularization, theta_start),
                 lower, upper, upper - lower, theta_start,
                 gated=partial(gated_at, problem),
                 exact=partial(gates_hold_at, problem),
                 score=make_scorer(problem, config.optimizer.regularization, theta_start))


def _resumed_state(path: Path, setup: Setup, opt, log, rescore: bool) -> RunState:
    """The checkpoint's state, checked against this run's parameters and minimised structures,
    to go on from; a finished run is reopened for trials with steps left and new trials.
    rescore: the inputs changed, so the saved relaxations are dropped."""
    state = load_checkpoint(path, list(setup.problem.theta_map.labels))
    if rescore:
        state.forget_relaxations()
    atom_counts = [setup.problem.model.n_atoms[k] for k in setup.relaxer.minimized]
    check_saved_geometries(state, atom_counts, path)
    if not state.finished:
        current = next((t for t in state.trials if t.has_steps(opt.steps)), None)
        log(f"resuming from {path}: " + (f"trial {current.number}, step {current.step + 1}"
                                          if current else f"trial {len(state.trials) + 1}"))
        return state
    more = [t.number for t in state.trials[:opt.trials] if t.has_steps(opt.steps)]
    log(f"resuming from {path}: the run had finished {len(state.trials)} trial(s); "
        + (f"trial(s) {', '.join(map(str, more))} ran out of steps and continue up to "
           f"optimizer.steps = {opt.steps}" if more else
           "no trial ran out of steps below optimizer.steps")
        + (f"; trials {len(state.trials) + 1}-{opt.trials} are new"
           if opt.trials > len(state.trials) else ""))
    for trial in state.trials[:opt.trials]:
        if trial.has_steps(opt.steps):
            radius = "unset" if trial.radius is None else f"{trial.radius:.3g}"
            log(f"trial {trial.number}: continuing after its step {trial.step} (radius "
                f"{radius}) up to step {opt.steps}")
    state.finished = False
    return state


@contextlib.contextmanager
def _interruptible(checkpoint_path: Path):
    """Within it SIGINT and SIGTERM raise ``FitInterrupted`` (in the main thread; the previous
    handlers come back after). Yields a check that raises it again: library code can swallow
    the handler's exception (JAX reads its persistent cache in a try/except that turns errors
    into warnings), so the fit checks before and after each evaluation."""
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        raise FitInterrupted(signum, checkpoint_path)

    def raise_if_signalled() -> None:
        if received:
            raise FitInterrupted(received[0], checkpoint_path)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    try:
        yield raise_if_signalled
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _fit(config: Config, inputs: Inputs, log: RunLog, fingerprint: dict, wall_start: float, *,
         resume: bool, rescore: bool, stop_after_steps: int | None,
         sensitivity: bool = True) -> FitResult:
    """``run_fit``'s work, in its locked output directory with its log."""
    out, opt = Path(config.output_dir), config.optimizer
    path = out / CHECKPOINT
    setup = _setup(config, inputs, log)
    state = (_resumed_state(path, setup, opt, log, rescore) if resume
             else RunState(labels=list(setup.problem.theta_map.labels)))
    state.inputs = fingerprint
    rng = np.random.default_rng(opt.seed)
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    with _interruptible(path) as check_signals:
        fit = Fit(setup, state, log, rng, clock(state.elapsed, wall_start), check_signals)
        for observer in (History(), LogLines(),
                         EarlyStopping(opt.early_stopping) if opt.early_stopping else None,
                         Behind(opt.behind) if opt.behind else None):
            if observer is not None:
                fit.attach(observer)
        checkpoint = fit.attach(Checkpoint(path))
        fit.attach(Progress())
        compile_seconds = fit.begin(rescore)
        checkpoint.saved = json.loads(json.dumps(state.to_json()))
        log.start_bar(opt.trials * opt.steps, fit.steps_done())
        try:
            fit.run(stop_after_steps, path)
        except FitInterrupted as exc:
            # the last completed outer step's state: a resume repeats the interrupted step
            write_checkpoint(path, checkpoint.saved)
            completed = sum(row["event"] in STEP_EVENTS for row in checkpoint.saved["history"])
            log(f"{exc}: checkpoint saved to {path} (after {completed} completed outer steps); "
                f"continue with: reaxopt fit {config.path} --resume")
            log.save()
            raise
        finally:
            log.close_bar(fit.steps_done() if state.finished else None)
    return _outputs(fit, inputs, compile_seconds, sensitivity)


def _outputs(fit: Fit, inputs: Inputs, compile_seconds: float,
             sensitivity: bool = True) -> FitResult:
    """Evaluate the best force field (and the lowest training one, when validation selected
    another) from the input geometries, with its parameter sensitivity there, and write every
    output."""
    from reaxopt import report
    from reaxopt.fit.sensitivity import fit_sensitivity

    s, state, log, config = fit.setup, fit.state, fit.log, fit.setup.config
    out = Path(config.output_dir)
    best_theta = np.array(state.best["theta"])
    relaxed = fit.from_inputs(best_theta, "best force field")
    fitted = s.evaluate(best_theta, relaxed)
    lowest = None
    if fitted.validation_loss is not None and state.lowest_training is not None and \
            state.lowest_training["theta"] != state.best["theta"]:
        theta = np.array(state.lowest_training["theta"])
        lowest = s.evaluate(theta, fit.from_inputs(theta, "lowest training loss"))
        log(f"lowest training loss force field (trial {state.lowest_training['trial']} step "
            f"{state.lowest_training['step']})"
            f"{', relaxed from the input geometries' if s.minimized else ''}: {lowest.text()}")

    def write(section: dict | None) -> dict:
        return report.write_outputs(
            out, config=config, inputs=inputs, problem=s.problem, initial=s.initial,
            fitted=fitted, theta_initial=s.theta_start, theta_best=best_theta, best=state.best,
            lowest_training=None if lowest is None else (lowest, state.lowest_training),
            history=state.history, wall_seconds=fit.elapsed(), compile_seconds=compile_seconds,
            evaluations=state.evaluations, log=log, sensitivity=section)

    summary = write(None)  # every output is on disk before the sensitivity's own compilation
    if sensitivity:
        section = fit_sensitivity(s.problem, best_theta, relaxed, log, at="best force field")
        if section is not None:
            summary = write(section)
    if config.md_check:  # validation.md_check: its failure is logged, the outputs stay
        from reaxopt.md import fit_md_check

        summary = fit_md_check(out, inputs, log, summary)
    log(f"done in {fit.elapsed():.1f} s: loss {s.initial.loss:.6g} -> {fitted.loss:.6g}"
        + ("" if fitted.validation_loss is None else
           f", validation {s.initial.validation_loss:.6g} -> {fitted.validation_loss:.6g}")
        + f"; outputs in {out}")
    log.save()
    return FitResult(out, summary, state)
