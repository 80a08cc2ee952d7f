"""The validation pass: every problem of a run's inputs, found on the host before anything
compiles, and reported together (``reaxopt.errors.Problems``).

``validate_inputs(inputs)`` checks what the readers cannot check alone: geometries (atoms
closer than ``MIN_DISTANCE``, periodic images included; non-finite coordinates), reference
data (non-finite energies, forces, charges), training items against their structures (atom
numbers in range, cell parameters of periodic structures only), that something is left to fit
and to fit to, and the output directory (writable, and no output file is one of the inputs).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from reaxopt.errors import InputError, Problems
from reaxopt.structure import Structure

# Å: atoms closer than this (to another atom or to a periodic image of any atom, itself
# included) are an input error; well below any bond (a stretched H2 scan reaches 0.5 Å)
MIN_DISTANCE = 0.3
MIN_VOLUME_PER_ATOM = 1.0  # Å^3: a periodic cell holding more atoms is too small for them
MIN_FREE_BYTES = 16 * 2 ** 20  # an output directory's file system needs at least this free
# the files ``reaxopt fit`` writes into its output directory
FIT_OUTPUTS = ("ffield", "ffield_lowest_training", "report.csv", "report.txt", "history.csv",
               "summary.json", "summary.md", "config.yaml", "run.log", "checkpoint.json",
               "parity.png", "convergence.png", "scans.png", "md.md", "md.json", "md.png")


def _where(s: Structure) -> dict:
    return {"file": s.source, "line": s.line}


def closest_pair(positions: np.ndarray, cell: np.ndarray | None, limit: float
                 ) -> tuple[float, int, int] | None:
    """(distance Å, atom i, atom j) of the closest pair of atoms nearer than ``limit`` (Å),
    periodic images included (i == j: an atom and its own image); None if there is none."""
    x = np.asarray(positions, float)
    shifts = np.zeros((1, 3))
    if cell is not None:
        cell = np.asarray(cell, float)
        volume = abs(np.linalg.det(cell))
        heights = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.minimum(np.ceil(limit / np.maximum(heights, 1e-12)), 4).astype(int)
        grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"),
                        axis=-1).reshape(-1, 3)
        shifts = grid @ cell
    best = None
    for shift in shifts:
        own_image = not np.any(shift)
        for start in range(0, len(x), 256):  # bounded memory for large structures
            block = x[start:start + 256]
            d = np.linalg.norm(block[:, None, :] - (x[None, :, :] + shift), axis=-1)
            if own_image:
                d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
            k = np.unravel_index(np.argmin(d), d.shape)
            if d[k] < limit and (best is None or d[k] < best[0]):
                best = (float(d[k]), start + int(k[0]), int(k[1]))
    return best


def check_geometry(s: Structure, problems: Problems) -> None:
    """No atoms, non-finite coordinates or cell, atoms closer than MIN_DISTANCE, and cells of
    under MIN_VOLUME_PER_ATOM."""
    if s.n_atoms == 0:
        problems.add(InputError(f"structure '{s.name}' has no atoms", **_where(s)))
        return
    if not np.all(np.isfinite(s.positions)) or (s.cell is not None
                                                and not np.all(np.isfinite(s.cell))):
        problems.add(InputError(f"structure '{s.name}' has coordinates or a cell that are not "
                                "finite numbers", **_where(s)))
        return
    if s.cell is not None:
        volume = abs(float(np.linalg.det(s.cell))) / max(s.n_atoms, 1)
        if volume < MIN_VOLUME_PER_ATOM:
            problems.add(InputError(f"structure '{s.name}': its cell holds {volume:.3g} Å^3 per "
                                    "atom: the cell is too small for its atoms; expected at "
                                    f"least {MIN_VOLUME_PER_ATOM:g} Å^3 per atom (dense solids "
                                    "have 5 or more)", **_where(s)))
            return
    close = closest_pair(s.positions, s.cell, MIN_DISTANCE)
    if close is None:
        return
    distance, i, j = close
    if i == j:
        what = (f"atom {i + 1} ({s.symbols[i]}) is {distance:.3g} Å from its own periodic "
                "image: the cell is too small for its atoms")
    else:
        image = "" if s.cell is None else " (periodic images included)"
        what = (f"atoms {i + 1} ({s.symbols[i]}) and {j + 1} ({s.symbols[j]}) are "
                f"{distance:.3g} Å apart{image}")
    problems.add(InputError(f"structure '{s.name}': {what}; expected at least {MIN_DISTANCE} Å "
                            "between atoms (two atoms at one position, or a wrong cell?)",
                            **_where(s)))


def check_references(s: Structure, problems: Problems) -> None:
    """Reference energy, forces and charges carried by the structure must be finite."""
    for what, value in (("energy", s.energy), ("forces", s.forces), ("charges", s.charges)):
        if value is None:
            continue
        bad = ~np.isfinite(np.asarray(value, float))
        if np.any(bad):
            where = ""
            if np.ndim(value) >= 1:
                atoms = sorted({int(k) + 1 for k in np.argwhere(bad)[:, 0]})
                where = f" (atom{'s' if len(atoms) > 1 else ''} {', '.join(map(str, atoms[:5]))}" \
                        + (", ..." if len(atoms) > 5 else "") + ")"
            problems.add(InputError(f"structure '{s.name}' has a reference {what} that is not a "
                                    f"finite number{where}; expected finite values, or leave "
                                    f"the {what} out", **_where(s)))


def _atom_numbers(item) -> tuple[int, ...]:
    atoms = getattr(item, "atoms", None)
    if atoms is not None:
        return tuple(atoms)
    atom = getattr(item, "atom", None)
    return () if atom is None else (atom,)


def check_items(trainset, structures: dict[str, Structure], problems: Problems) -> None:
    """Atom numbers within their structure; cell parameters of periodic structures only."""
    for item in trainset.items():
        s = structures.get(getattr(item, "name", None))
        if s is None:
            continue
        atoms = _atom_numbers(item)
        if atoms and max(atoms) >= s.n_atoms:
            problems.add(InputError(
                f"the item names atom {max(atoms) + 1} of structure '{s.name}', which has "
                f"{s.n_atoms} atoms; expected atom numbers 1..{s.n_atoms}",
                file=trainset.source, line=item.line))
        if hasattr(item, "parameter") and s.cell is None:
            problems.add(InputError(
                f"the item asks for the cell parameter {item.parameter} of structure '{s.name}', "
                "which is a molecule (no cell); expected a periodic structure",
                file=trainset.source, line=item.line))


def _data_problems(data, label: str, problems: Problems) -> None:
    from reaxopt.loss import used_structures

    structures = {s.name: s for s in data.structures}
    for s in used_structures(data):
        check_geometry(s, problems)
        check_references(s, problems)
    if data.trainset is not None:
        check_items(data.trainset, structures, problems)
    if not used_structures(data):
        problems.add(InputError(f"the {label} data hold no item to fit to; expected trainset "
                                "items, or structures with reference energies or forces",
                                file=(data.trainset.source if data.trainset is not None
                                      else None)))


def _writable(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (which exists), or None if they can."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".reaxopt-write-test-") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return exc.strerror or str(exc)
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        return f"its file system has only {free / 2 ** 20:.1f} MiB free"
    return None


def check_output_dir(config, outputs=FIT_OUTPUTS) -> None:
    """InputError unless ``config.output_dir`` exists as a writable directory or can be made
    one, and none of the files written there is one of the run's inputs."""
    out = Path(config.output_dir)
    key = {"file": config.path, "key": "output_dir"}
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot make the output directory {out}: {existing} is a file, not a "
                         "directory", **key)
    reason = _writable(existing)
    if reason is not None:
        what = "write into" if existing == out else f"make it inside {existing}"
        raise InputError(f"cannot {what} the output directory {out}: {reason}; expected a "
                         "writable directory with free space", **key)
    # the config itself may be the run's own resolved config.yaml (rerun from the output)
    own = os.path.realpath(out / "config.yaml") == os.path.realpath(config.path)
    inputs = {os.path.realpath(p): p for p in [*([] if own else [config.path]),
                                                *input_paths(config)]}
    for name in outputs:
        clash = inputs.get(os.path.realpath(out / name))
        if clash is not None:
            raise InputError(f"the output directory {out} would get a file '{name}' written over "
                             f"the input {clash}; expected an output_dir apart from the inputs",
                             **key)


def check_output_file(path: Path, inputs=(), option: str = "--output") -> None:
    """InputError unless a command can write the file ``path``: not a directory, in an
    existing writable directory, and none of its ``inputs``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option}: expected a file name to write, found a directory", file=path)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise InputError(f"{option}: the directory {folder} does not exist", file=path)
    reason = _writable(folder)
    if reason is not None:
        raise InputError(f"{option}: cannot write into {folder}: {reason}", file=path)
    for given in inputs if path.exists() else ():
        if given is not None and Path(given).exists() and os.path.samefile(given, path):
            raise InputError(f"{option}: this is the input {given}; expected a new file name, "
                             "so that the input is kept", file=path)


def input_paths(config) -> list[Path]:
    """Every file a config reads: force field, params, geometries, trainsets, structures."""
    paths = [config.force_field, *config.params]
    for files in (config.training, config.validation):
        if files is None:
            continue
        paths += [p for p in (files.geo, files.trainset) if p is not None]
        paths += [sf.path for sf in files.structures]
    return paths


def validate_inputs(inputs, problems: Problems | None = None) -> None:
    """Every problem of the loaded ``inputs`` (``reaxopt.inputs.Inputs``) in one InputError;
    warnings for what is odd but allowed."""
    problems = Problems() if problems is None else problems
    config = inputs.config
    _data_problems(inputs.training, "training", problems)
    if inputs.validation is not None:
        _data_problems(inputs.validation, "validation", problems)
    if not inputs.params:
        n = len(inputs.fixed)
        problems.add(InputError(
            "the params file selects no parameter to fit"
            + (f": all {n} it selects have equal bounds and are held fixed" if n else "")
            + "; expected at least one line whose bounds differ",
            file=", ".join(str(p) for p in config.params)))
    ignored = inputs.ffield.ignored_entries()
    if ignored:
        lines = ", ".join(str(e.line) for _, e in ignored[:8]) + (", ..." if len(ignored) > 8
                                                                   else "")
        warnings.warn(f"{config.force_field}: {len(ignored)} line(s) name atom types above the "
                      f"{len(inputs.ffield.atoms)} the file defines (lines {lines}); LAMMPS "
                      "ignores them, and so does reaxopt", stacklevel=2)
    with problems.collect():
        check_output_dir(config)
    problems.raise_if_any()


def finite(value) -> bool:
    """Whether ``value`` is a finite number (None is not)."""
    return isinstance(value, (int, float)) and math.isfinite(value)
