"""Read geometries and reference data from any file ASE reads (extended XYZ first).

ASE works in eV and eV/Å; reaxopt in kcal/mol and kcal/mol/Å. The energy unit of a file is, in
order: the ``energy_unit`` argument, the frame's info key ``energy_unit`` (or ``units``), else eV.
Forces are in the frame's info key ``forces_unit`` (such as ``kcal/mol/Angstrom`` or
``Hartree/Bohr``) when it has one, else in the energy unit per Å. Conversion factors come from
``ase.units``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from reaxopt.errors import InputError, Problems
from reaxopt.structure import Structure

RUN_TYPES = ("single_point", "minimize", "cell_opt")
UNIT_KEYS = ("energy_unit", "units")
TOTAL_CHARGE_KEYS = ("charge", "total_charge")
# Where reference data may be, in order of preference: (info | array | calc, key).
ENERGY_SOURCES = (("info", "energy"), ("calc", "energy"), ("info", "REF_energy"),
                  ("info", "dft_energy"))
FORCE_SOURCES = (("array", "forces"), ("calc", "forces"), ("array", "REF_forces"))
CHARGE_SOURCES = (("array", "charges"), ("calc", "charges"), ("array", "initial_charges"))


def energy_unit_factor(unit: str) -> float:
    """kcal/mol per one ``unit`` ('eV', 'kcal/mol' or 'kcal', 'Hartree', 'kJ/mol' or 'kJ').

    Case-insensitive. Raises ValueError naming the accepted units for anything else.
    """
    from ase import units

    kcal_mol = units.kcal / units.mol  # in eV
    factors = {"ev": 1.0 / kcal_mol, "kcal/mol": 1.0, "kcal": 1.0,
               "hartree": units.Hartree / kcal_mol, "ha": units.Hartree / kcal_mol,
               "kj/mol": units.kJ / units.kcal, "kj": units.kJ / units.kcal}
    try:
        return factors[str(unit).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown energy unit '{unit}' (expected eV, kcal/mol, Hartree or "
                         "kJ/mol)") from None


def force_unit_factor(unit: str) -> float:
    """kcal/mol/Å per one ``unit``: an energy unit, '/', and Angstrom (Å, A, Ang) or Bohr."""
    from ase import units

    energy, _, length = str(unit).strip().rpartition("/")
    per_length = {"angstrom": 1.0, "å": 1.0, "a": 1.0, "ang": 1.0, "bohr": 1.0 / units.Bohr}
    if not energy or length.strip().lower() not in per_length:
        raise ValueError(f"unknown force unit '{unit}' (expected an energy unit per Angstrom or "
                         "per Bohr, such as eV/Angstrom or Hartree/Bohr)")
    return energy_unit_factor(energy) * per_length[length.strip().lower()]


def _scalar(value):
    """A plain Python value from numpy scalars and 0-d arrays."""
    if isinstance(value, np.ndarray) and value.shape == ():
        return value.item()
    return value.item() if isinstance(value, np.generic) else value


def _unit_of(atoms, energy_unit: str | None, path: Path) -> tuple[float, str]:
    """Conversion factor to kcal/mol and the unit name for one frame."""
    if energy_unit is not None:
        try:
            return energy_unit_factor(energy_unit), energy_unit
        except ValueError as exc:
            raise InputError(str(exc), file=path, key="energy_unit") from None
    for key in UNIT_KEYS:
        if key in atoms.info:
            unit = str(_scalar(atoms.info[key]))
            try:
                return energy_unit_factor(unit), unit
            except ValueError as exc:
                raise InputError(f"{exc} in the file's info key", file=path, key=key) from None
    return energy_unit_factor("eV"), "eV"


def _reference(atoms, sources):
    """The first value found among ``sources``: ('info'|'array'|'calc', key) in preference order.

    ASE's extxyz reader moves ``energy``/``forces``/``charges`` into a SinglePointCalculator, so
    the calculator's stored results are read as well as info and arrays.
    """
    results = getattr(atoms.calc, "results", None) or {}
    for where, key in sources:
        if where == "info" and key in atoms.info:
            return _scalar(atoms.info[key])
        if where == "array" and key in atoms.arrays:
            return np.array(atoms.arrays[key], dtype=float)
        if where == "calc" and key in results:
            value = results[key]
            return np.array(value, dtype=float) if np.ndim(value) else value
    return None


def _force_factor(atoms, energy_factor: float, path: Path) -> float:
    if "forces_unit" not in atoms.info:
        return energy_factor
    unit = str(_scalar(atoms.info["forces_unit"]))
    try:
        return force_unit_factor(unit)
    except ValueError as exc:
        raise InputError(f"{exc} in the file's info key", file=path, key="forces_unit") from None


def _real(value, what: str, name: str, path, line: int | None) -> float:
    """``value`` as a float, or InputError naming the frame: info values that are not numbers
    (``energy=abc``) reach here as text."""
    try:
        if isinstance(value, (str, bytes, bool, np.bool_)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"frame '{name}': the {what} is {value!r}, expected a number",
                         file=path, line=line) from None


def atoms_to_structure(atoms, name: str, *, factor: float, force_factor: float | None = None,
                       source: str | None = None, path: Path | None = None,
                       line: int | None = None) -> Structure:
    """A Structure from an ASE Atoms: energies times ``factor`` (to kcal/mol), forces times
    ``force_factor`` (to kcal/mol/Å; default ``factor``). line: where the frame starts in its
    file, for messages."""
    force_factor = factor if force_factor is None else force_factor
    info = atoms.info
    energy = _reference(atoms, ENERGY_SOURCES)
    if energy is not None:
        energy = _real(energy, "reference energy", name, path, line)
    forces = _reference(atoms, FORCE_SOURCES)
    charges = _reference(atoms, CHARGE_SOURCES)
    n = len(atoms)
    cell = None
    if atoms.pbc.any():
        cell = np.array(atoms.cell[:], dtype=float)
        if abs(np.linalg.det(cell)) < 1e-12:
            raise InputError(f"frame '{name}' is periodic (pbc {atoms.pbc.tolist()}) but its cell "
                             "has zero volume: give a cell or set pbc to F F F", file=path,
                             line=line)
    run_type = str(_scalar(info.get("run_type", "single_point")))
    if run_type not in RUN_TYPES:
        raise InputError(f"frame '{name}' has run_type '{run_type}', expected one of "
                         f"{', '.join(RUN_TYPES)}", file=path, line=line, key="run_type")
    total_charge = 0.0
    for key in TOTAL_CHARGE_KEYS:
        if key in info:
            total_charge = _real(_scalar(info[key]), f"total charge ('{key}')", name, path, line)
            break
    max_iterations = info.get("max_iterations")
    if max_iterations is not None:
        steps = _real(_scalar(max_iterations), "max_iterations", name, path, line)
        if not (math.isfinite(steps) and steps >= 0 and steps == int(steps)):
            raise InputError(f"frame '{name}': max_iterations is {max_iterations!r}, expected a "
                             "whole number of steps, 0 or more", file=path, line=line)
    extra = {k: _scalar(v) for k, v in info.items()}
    if cell is not None and not atoms.pbc.all():
        extra["pbc"] = atoms.pbc.tolist()
    if forces is not None and np.shape(forces) != (n, 3):
        raise InputError(f"frame '{name}': forces have shape {np.shape(forces)}, expected "
                         f"({n}, 3)", file=path, line=line)
    return Structure(
        name=name, symbols=atoms.get_chemical_symbols(),
        positions=np.array(atoms.positions, dtype=float), cell=cell, total_charge=total_charge,
        run_type=run_type,
        max_iterations=None if max_iterations is None else int(steps),
        energy=None if energy is None else energy * factor,
        forces=None if forces is None else np.asarray(forces, dtype=float) * force_factor,
        charges=None if charges is None else np.asarray(charges, dtype=float),
        source=source, line=line, extra=extra)


def frame_lines(path: Path, n_frames: int) -> list[int | None]:
    """The line each frame of an (extended) XYZ file starts on (its atom-count line); None for
    every frame of another format or of a file that does not follow that layout."""
    unknown = [None] * n_frames
    if path.suffix.lower() not in (".xyz", ".extxyz"):
        return unknown
    starts, line = [], 1
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.readlines()
        while len(starts) < n_frames and line <= len(text):
            starts.append(line)
            line += int(text[line - 1].split()[0]) + 2
    except (OSError, ValueError, IndexError):
        return unknown
    return starts if len(starts) == n_frames else unknown


def read_ase(path: str | os.PathLike, *, energy_unit: str | None = None,
             index: str | int = ":") -> list[Structure]:
    """Read the frames ``index`` (ASE syntax, default all) of any file ASE reads.

    Positions and cell in Å (cell only when some pbc is set, row vectors); reference energy,
    forces and charges converted to kcal/mol, kcal/mol/Å and e. Names: info ``name``, else
    ``<config_type>_<k>``, else ``<file stem>_<k>`` with ``k`` the frame's position in what was
    read; a repeated name gets ``_<k>`` appended.
    """
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise InputError("geometry file not found", file=path)
    if energy_unit is not None:  # reject a bad unit before reading a large file
        try:
            energy_unit_factor(energy_unit)
        except ValueError as exc:
            raise InputError(str(exc), file=path, key="energy_unit") from None
    try:
        frames = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many kinds; all mean "cannot read this file"
        reason = " ".join(str(exc).split())
        raise InputError(f"ASE cannot read this geometry file ({type(exc).__name__}: {reason}); "
                         "give a format ASE knows, such as extended XYZ", file=path) from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise InputError("no frames found in the geometry file", file=path)
    structures, seen, problems = [], set(), Problems()
    lines = frame_lines(path, len(frames))
    for k, atoms in enumerate(frames):
        info = atoms.info
        if "name" in info:
            name = str(_scalar(info["name"]))
        elif "config_type" in info:
            name = f"{_scalar(info['config_type'])}_{k}"
        else:
            name = f"{path.stem}_{k}"
        if name in seen:
            name = f"{name}_{k}"
        if name in seen:
            problems.add(InputError(f"frame {k} would be named '{name}', which an earlier frame "
                                    "has: give unique info 'name' values", file=path,
                                    line=lines[k]))
            continue
        seen.add(name)
        with problems.collect():
            factor, _ = _unit_of(atoms, energy_unit, path)
            structures.append(atoms_to_structure(
                atoms, name, factor=factor, force_factor=_force_factor(atoms, factor, path),
                source=str(path), path=path, line=lines[k]))
    problems.raise_if_any()
    return structures
