"""Read and write BGF geometry files as ReaxFF training sets use them (the ``geo`` file).

A file holds many structures, each ended by an ``END`` line. Per structure:

* ``BIOGRF``/``XTLGRF`` version line (starts a structure; optional), ``DESCRP name`` (the name
  ``trainset.in`` refers to; unique across the file), ``REMARK`` lines; ``FORMAT`` lines are
  skipped (the layout below is fixed, as in ReaxFF);
* ``RUTYPE`` lines, applied in order: ``SINGLE POINT`` -> 'single_point'; ``NORMAL RUN`` ->
  'minimize'; ``MAXIT n`` -> 'minimize' with ``max_iterations = n`` (``MAXIT 0``: 'single_point',
  ``max_iterations = 0``); ``CELL OPT n`` -> 'cell_opt' (``n`` kept as ``extra['cell_opt']``);
  ``ENDPO x`` and ``MAXMOV n`` kept as ``extra['endpo']``/``extra['maxmov']``; the other RUTYPE
  words ReaxFF knows (NO CELL OPT, DOUBLE/LOW PRECISION, ...) have no effect here, unknown ones
  warn. Every RUTYPE line is kept verbatim in ``extra['rutype']``. Without any RUTYPE line a
  structure is 'minimize' with the config's limits (ReaxFF's NORMAL RUN; JAX-ReaxFF minimises too);
* ``CRYSTX a b c alpha beta gamma`` (Å, degrees): a periodic cell, built in the frame ReaxFF writes
  coordinates in: c along z, b in the yz plane (see :func:`cell_vectors`);
* ``HETATM``/``ATOM`` lines in the ``FORMAT ATOM (a6,1x,i5,1x,a5,1x,a3,1x,a1,1x,a5,3f10.5,1x,a5,
  i3,i2,1x,f8.5)`` columns, also read when the coordinates are written wider or in free format.
  The element is the force-field type after the coordinates with its ``_...`` suffix removed
  (``S_3`` -> ``S``), else the atom name. Atom names, types and the charge column are kept in
  ``extra['atom_names']``, ``extra['ffield_types']``, ``extra['bgf_charges']``;
* ``BOND RESTRAINT i j r0 force1 force2 [dr/iteration [start end]]``,
  ``ANGLE RESTRAINT i j k theta force1 force2 [dtheta/iteration]``,
  ``TORSION RESTRAINT i j k l phi force1 force2 [dphi/iteration]`` (1-based atoms in the file,
  0-based in :class:`~reaxopt.structure.Restraint`); a bond restraint's MD window
  (start, end iteration) is kept in ``extra['restraint_windows']``;
* ``MOLCHARGE n1 n2 q``: the charge of atoms n1..n2; the groups must cover every atom once
  (ReaxFF's rule) and the structure's total charge is their sum (0 without MOLCHARGE). Kept in
  ``extra['molcharge']`` as 0-based (first, last, q);
* ``CONECT``/``ORDER`` lines: kept in ``extra['conect']``/``extra['order']`` (ReaxFF ignores them);
* ``UNIT ENERGY kcal|eV|kJ|Hartree`` and ``ENERGY value``: the reference energy, stored in kcal/mol;
* ``VCHANGE f`` (instead of atom lines): the previous structure with its cell volume times ``f``
  (same fractional coordinates), as ReaxFF's equation-of-state inputs use it; kept as
  ``extra['vchange']`` and ``extra['vchange_of']``; written back as a full structure;
* ``FFIELD name`` kept in ``extra['ffield']``; ``AXES ZYX`` accepted (any other AXES is an error:
  coordinates must be in ReaxFF's frame).

Lines starting with ``#`` are comments. Any other keyword is kept verbatim in ``extra['other']``
with a warning. A missing final ``END`` is accepted when the last structure has atoms (or a
VCHANGE); a file that ends before any atom line of its last structure is an error.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from reaxopt.errors import InputError, Problems
from reaxopt.io.files import read_input_text, write_text_atomic
from reaxopt.io.ase_io import energy_unit_factor
from reaxopt.structure import Restraint, Structure

# (keyword, number of atoms) for the restraint lines ReaxFF reads.
RESTRAINT_KINDS = {"BOND RESTRAINT": ("bond", 2), "ANGLE RESTRAINT": ("angle", 3),
                   "TORSION RESTRAINT": ("torsion", 4)}
# Column widths of ReaxFF's restraint formats after the keyword and one blank (manual: bond
# (15x,2i4,f8.4,f8.2,f8.5,f10.7[,2i8]), angle (16x,3i4,2f8.2,f8.4,f9.6), torsion
# (18x,4i4,2f8.2,f8.4,f9.6)), used when the numbers run together so that splitting at blanks fails.
_RESTRAINT_COLUMNS = {"bond": [4, 4, 8, 8, 8, 10, 8, 8], "angle": [4, 4, 4, 8, 8, 8, 9],
                      "torsion": [4, 4, 4, 4, 8, 8, 8, 9]}
_RUTYPE_KNOWN = ("SINGLE POINT", "NORMAL RUN", "MAXIT", "CELL OPT", "NO CELL OPT", "ENDPO",
                 "MAXMOV", "DOUBLE PRECISION", "LOW PRECISION", "REDO", "CHARGEMET", "PRESS OPT",
                 "PRESS CALC")
_VERSION_KEYWORDS = ("BIOGRF", "XTLGRF")
FORMAT_ATOM = "FORMAT ATOM   (a6,1x,i5,1x,a5,1x,a3,1x,a1,1x,a5,3f10.5,1x,a5,i3,i2,1x,f8.5)"


def _cos_degrees(x: float) -> float:
    """cos of an angle in degrees, exactly 0 at 90 so that orthogonal cells are diagonal."""
    return 0.0 if x == 90.0 else math.cos(math.radians(x))


def cell_vectors(a: float, b: float, c: float,
                 alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Cell row vectors (3, 3) in Å from lengths (Å) and angles (degrees) in ReaxFF's frame.

    c lies along z and b in the yz plane: c = (0, 0, c), b = (0, b sin α, b cos α), and a has
    a_z = a cos β, a_y = a (cos γ - cos α cos β) / sin α, a_x = sqrt(a² - a_y² - a_z²) > 0.
    Raises ValueError for non-positive lengths or angles that do not make a cell.
    """
    if min(a, b, c) <= 0.0:
        raise ValueError(f"cell lengths must be positive, found {a:g} {b:g} {c:g} Å")
    if not all(0.0 < x < 180.0 for x in (alpha, beta, gamma)):
        raise ValueError(f"cell angles must lie strictly between 0 and 180 degrees, "
                         f"found {alpha:g} {beta:g} {gamma:g}")
    ca, cb, cg = (_cos_degrees(x) for x in (alpha, beta, gamma))
    sa = math.sqrt(1.0 - ca * ca)
    az = a * cb
    ay = a * (cg - ca * cb) / sa
    ax2 = a * a - ay * ay - az * az
    if ax2 <= 1e-10 * a * a:
        raise ValueError(f"the angles {alpha:g} {beta:g} {gamma:g} degrees do not make a cell "
                         "(its volume is zero or imaginary)")
    return np.array([[math.sqrt(ax2), ay, az], [0.0, b * sa, b * ca], [0.0, 0.0, c]])


def cell_parameters(cell: np.ndarray) -> tuple[float, ...]:
    """Lengths (Å) and angles alpha, beta, gamma (degrees) of cell row vectors."""
    a, b, c = (float(np.linalg.norm(v)) for v in cell)

    def angle(u, v):
        cos = float(np.dot(u, v)) / (np.linalg.norm(u) * np.linalg.norm(v))
        return math.degrees(math.acos(max(-1.0, min(1.0, cos))))

    return a, b, c, angle(cell[1], cell[2]), angle(cell[0], cell[2]), angle(cell[0], cell[1])


# ----------------------------------------------------------------------------------- reading


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _floats(tokens, count: int) -> list[float] | None:
    """The first ``count`` tokens as finite floats, or None when they are not."""
    if len(tokens) < count:
        return None
    try:
        values = [float(t) for t in tokens[:count]]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _fixed_fields(text: str, widths) -> list[str]:
    fields, pos = [], 0
    for w in widths:
        fields.append(text[pos:pos + w].strip())
        pos += w
    return [f for f in fields if f]


def element_from_type(ffield_type: str) -> str:
    """Element of a BGF force-field type: the text before ``_`` (``S_3`` -> ``S``)."""
    return ffield_type.split("_", 1)[0]


def element_from_name(name: str) -> str:
    """Element guessed from an atom name such as ``C12``, ``Co`` or ``HW``."""
    from ase.data import chemical_symbols

    letters = ""
    for ch in name:
        if not ch.isalpha():
            break
        letters += ch
    if not letters:
        return name
    two = letters[:2].capitalize()
    if len(letters) >= 2 and (letters[1].islower() or len(letters) == 2):
        if two in chemical_symbols:
            return two
    one = letters[0].upper()
    return one if one in chemical_symbols else letters


def parse_atom_line(line: str) -> tuple[str, str | None, np.ndarray, float]:
    """Atom name, force-field type (or None), position (Å) and charge column of a HETATM/ATOM line.

    The head (record, serial, name, residue: columns 1-30) is read in its fixed columns. The
    coordinates are split at blanks when that gives three numbers (files often write them wider
    than f10.5), else read from the f10.5 columns 31-60 (numbers that run together). A line whose
    head is not in columns is read in free format: record serial name x y z [type ...].
    Raises ValueError with a short reason.
    """
    line = line.strip()
    serial = line[7:12].strip()
    columns = len(line) > 12 and line[6] == " " and serial.isdigit() and line[12] == " "
    if columns:
        name = line[13:18].strip()
        tail = line[30:]
        straddles = len(line) > 30 and not line[29].isspace() and not line[30].isspace()
        xyz = None if straddles else _floats(tail.split(), 3)
        if xyz is not None:
            rest = tail.split()[3:]
        else:
            xyz = _floats([line[30:40], line[40:50], line[50:60]], 3)
            rest = line[60:].split()
    else:
        tokens = line.split()
        name = tokens[2] if len(tokens) > 2 else ""
        xyz = _floats(tokens[3:], 3)
        rest = tokens[6:]
    if xyz is None:
        raise ValueError("expected three coordinates x y z (Å) after the atom name "
                         "(columns 31-60 in the FORMAT ATOM layout)")
    ffield_type = rest[0] if rest and not _is_number(rest[0]) else None
    numbers = rest[1:] if ffield_type is not None else rest
    charge = 0.0
    if len(numbers) >= 3 and _is_number(numbers[2]):
        charge = float(numbers[2])
    elif len(line) >= 73 and _is_number(line[72:80]):
        charge = float(line[72:80])
    return name, ffield_type, np.array(xyz, dtype=float), charge


def parse_restraint(keyword: str, body: str) -> tuple[Restraint, tuple[int, int] | None]:
    """A restraint line's record (atoms still 1-based) and a bond restraint's (start, end) window.

    ``body`` is the text after the keyword. Raises ValueError with a short reason.
    """
    kind, n_atoms = RESTRAINT_KINDS[keyword]
    layout = "atoms " + " ".join("ijkl"[:n_atoms]) + ", target, force1, force2"
    tokens = body.split()
    parsed = _restraint_numbers(tokens, n_atoms)
    if parsed is None:  # numbers that run together in ReaxFF's fixed columns
        parsed = _restraint_numbers(_fixed_fields(body[1:] if body[:1] == " " else body,
                                                  _RESTRAINT_COLUMNS[kind]), n_atoms)
    if parsed is None:
        raise ValueError(f"expected {n_atoms} atom numbers and at least 3 numbers ({layout}), "
                         f"found '{body.strip()}'")
    atoms, values = parsed
    if any(i < 1 for i in atoms):
        raise ValueError(f"atom numbers are 1-based, found {' '.join(map(str, atoms))}")
    if len(set(atoms)) != len(atoms):
        raise ValueError(f"a restraint needs distinct atoms, found {' '.join(map(str, atoms))}")
    target, force1, force2 = values[:3]
    rate = values[3] if len(values) > 3 else 0.0
    window = None
    if kind == "bond" and len(values) > 4:
        window = (int(values[4]), int(values[5]) if len(values) > 5 else 0)
    return Restraint(kind, tuple(atoms), target, force1, force2, rate), window


def _restraint_numbers(tokens, n_atoms: int):
    if len(tokens) < n_atoms + 3:
        return None
    try:
        atoms = [int(t) for t in tokens[:n_atoms]]
        values = [float(t) for t in tokens[n_atoms:]]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    return atoms, values


def _parse_rutype(text: str, state: dict) -> bool:
    """Apply one RUTYPE body to ``state`` (run_type, max_iterations, extra); False if unknown."""
    upper = " ".join(text.upper().split())
    extra = state["extra"]
    tokens = upper.split()
    if upper.startswith("SINGLE POINT"):
        state["run_type"] = "single_point"
    elif upper.startswith("NORMAL RUN"):
        if state["run_type"] != "cell_opt":
            state["run_type"] = "minimize"
    elif upper.startswith("MAXIT"):
        n = int(tokens[1]) if len(tokens) > 1 else None
        if n is None or n < 0:
            raise ValueError("RUTYPE MAXIT needs a non-negative iteration count")
        state["max_iterations"] = n
        if state["run_type"] != "cell_opt":
            state["run_type"] = "minimize" if n > 0 else "single_point"
    elif upper.startswith("CELL OPT"):
        state["run_type"] = "cell_opt"
        extra["cell_opt"] = int(tokens[2]) if len(tokens) > 2 else 0
    elif upper.startswith("ENDPO"):
        extra["endpo"] = float(tokens[1]) if len(tokens) > 1 else None
    elif upper.startswith("MAXMOV"):
        extra["maxmov"] = int(tokens[1]) if len(tokens) > 1 else None
    else:
        return any(upper.startswith(k) for k in _RUTYPE_KNOWN)
    return True


class _Builder:
    """Collects one structure's lines; ``finish`` checks it and makes the Structure."""

    def __init__(self, path: str, line: int, index: int):
        self.path, self.line, self.index = path, line, index
        self.name: str | None = None
        self.name_line: int | None = None
        self.names, self.types, self.positions, self.charges = [], [], [], []
        self.cell = None
        self.energy = None
        self.energy_unit = ("kcal", None)
        self.restraints: list[tuple[Restraint, int]] = []
        self.windows: dict[int, tuple[int, int]] = {}
        self.molcharge: list[tuple[int, int, float, int]] = []
        self.vchange: tuple[float, int] | None = None
        self.state = {"run_type": None, "max_iterations": None, "extra": {}}
        self.broken = False  # a line had a problem: the structure is skipped

    def _rescale(self, previous: Structure | None, where: str) -> None:
        """VCHANGE f: the previous structure with its cell volume times f (same fractional
        coordinates); its run type unless this structure gives RUTYPE, never a cell optimisation."""
        factor, line = self.vchange
        if self.positions:
            raise self.error(f"{where} has VCHANGE and atom lines: VCHANGE repeats the previous "
                             "structure, so give one or the other", line)
        if previous is None or previous.cell is None:
            raise self.error(f"VCHANGE in {where} needs a periodic structure (with CRYSTX) "
                             "before it", line)
        scale = factor ** (1.0 / 3.0)
        self.positions = list(previous.positions * scale)
        self.cell = previous.cell * scale
        self.names = list(previous.extra.get("atom_names", previous.symbols))
        self.types = list(previous.extra.get("ffield_types", previous.symbols))
        self.charges = list(previous.extra.get("bgf_charges", np.zeros(previous.n_atoms)))
        if self.state["run_type"] is None:
            self.state["run_type"] = ("minimize" if previous.run_type == "cell_opt"
                                      else previous.run_type)
            self.state["max_iterations"] = previous.max_iterations
        if previous.run_type != "single_point":
            warnings.warn(f"{self.path}, line {line}: VCHANGE rescales the geometry of "
                          f"'{previous.name}' as read; ReaxFF may rescale its minimised geometry",
                          stacklevel=4)

    @property
    def extra(self) -> dict:
        return self.state["extra"]

    def keep(self, key: str, value) -> None:
        self.extra.setdefault(key, []).append(value)

    def error(self, message: str, line: int) -> InputError:
        return InputError(message, file=self.path, line=line)

    def finish(self, end_line: int, previous: Structure | None) -> Structure:
        where = f"structure '{self.name}'" if self.name else f"structure {self.index + 1}"
        if self.vchange is not None:
            self._rescale(previous, where)
        n = len(self.positions)
        if n == 0:
            raise self.error(f"{where} has no atoms (no HETATM or ATOM lines before its END)",
                             end_line)
        restraints = []
        for r, line in self.restraints:
            if max(r.atoms) > n:
                raise self.error(f"{r.kind} restraint names atom {max(r.atoms)} but {where} has "
                                 f"{n} atoms", line)
            restraints.append(Restraint(r.kind, tuple(i - 1 for i in r.atoms), r.target, r.force1,
                                        r.force2, r.rate, line))
        total_charge = 0.0
        covered = np.zeros(n, dtype=int)
        for first, last, q, line in self.molcharge:
            if not 1 <= first <= last <= n:
                raise self.error(f"MOLCHARGE atoms {first}..{last} are outside the atoms "
                                 f"1..{n} of {where}", line)
            covered[first - 1:last] += 1
            total_charge += q
        if self.molcharge and not np.all(covered == 1):
            missing = np.flatnonzero(covered != 1) + 1
            raise self.error(f"MOLCHARGE lines must put every atom of {where} in exactly one "
                             f"group (as ReaxFF requires); atom {missing[0]} is in "
                             f"{covered[missing[0] - 1]} groups", self.molcharge[0][3])
        extra = self.extra
        if self.molcharge:
            extra["molcharge"] = [(f - 1, last - 1, q) for f, last, q, _ in self.molcharge]
        if self.windows:
            extra["restraint_windows"] = dict(self.windows)
        if self.vchange is not None:
            extra["vchange"], extra["vchange_of"] = self.vchange[0], previous.name
        extra["atom_names"] = list(self.names)
        extra["ffield_types"] = list(self.types)
        extra["bgf_charges"] = np.array(self.charges, dtype=float)
        symbols = [element_from_type(t) if t else element_from_name(nm)
                   for nm, t in zip(self.names, self.types)]
        energy = None
        if self.energy is not None:
            value, line = self.energy
            unit, unit_line = self.energy_unit
            try:
                energy = value * energy_unit_factor(unit)
            except ValueError as exc:
                raise self.error(f"UNIT ENERGY of {where}: {exc}", unit_line or line) from None
        run_type = self.state["run_type"] or "minimize"
        return Structure(
            name=self.name or f"{Path(self.path).stem}_{self.index}", symbols=symbols,
            positions=np.array(self.positions, dtype=float).reshape(n, 3), cell=self.cell,
            total_charge=total_charge, run_type=run_type,
            max_iterations=self.state["max_iterations"], restraints=restraints, energy=energy,
            source=self.path, line=self.line, extra=extra)


def parse_bgf(text: str, path: str | os.PathLike = "<bgf>") -> list[Structure]:
    """Parse the text of a BGF file with one or more structures (see the module docstring).

    A structure with a problem is skipped up to its END and the next one read, so that one
    InputError reports the problems of every structure."""
    path = str(path)
    structures: list[Structure] = []
    name_lines: dict[str, int] = {}
    current: _Builder | None = None
    last_line = 0
    problems = Problems()

    def finish(end_line: int) -> None:
        if not current.broken:
            with problems.collect():
                structures.append(current.finish(end_line, structures[-1] if structures
                                                 else None))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        last_line = number
        upper = line.upper()
        keyword = upper.split()[0]
        body = line[len(keyword):]

        if keyword == "END" and upper == "END":
            if current is None:
                problems.add(InputError("END without a structure before it (two END lines in a "
                                        "row?)", file=path, line=number))
            else:
                finish(number)
            current = None
            continue
        if keyword in _VERSION_KEYWORDS and current is not None and (current.positions
                                                                     or current.vchange):
            problems.add(InputError(f"a new {keyword} line starts before the END of structure "
                                    f"'{current.name}' (line {current.line}): add END",
                                    file=path, line=number))
            current = None
        if current is None:
            current = _Builder(path, number, len(structures))
        if current.broken:
            continue  # the rest of a structure with a problem, up to its END
        try:
            _record(current, keyword, line, body, number, name_lines)
        except InputError as error:
            problems.add(error)
            current.broken = True

    if current is not None:
        if not current.positions and current.vchange is None and not current.broken:
            problems.add(InputError(f"the file ends inside structure "
                                    f"'{current.name or current.index + 1}' (line "
                                    f"{current.line}) before any atom line and without END",
                                    file=path, line=last_line))
        else:
            finish(last_line)
    problems.raise_if_any()
    if not structures:
        raise InputError("no structures found (expected BIOGRF/XTLGRF ... HETATM ... END)",
                         file=path)
    first_line: dict[str, int] = {}
    for s in structures:  # names made up for structures without DESCRP may clash
        if s.name in first_line:
            problems.add(InputError(f"the structure name '{s.name}' is used twice, by the "
                                    f"structures on lines {first_line[s.name]} and {s.line}: "
                                    "give each a unique DESCRP", file=path, line=s.line))
        first_line.setdefault(s.name, s.line)
    problems.raise_if_any()
    return structures


def _record(b: _Builder, keyword: str, line: str, body: str, number: int,
            name_lines: dict[str, int]) -> None:
    """Record one line of a structure in its builder: the header and atom keywords here, the
    data keywords in ``_record_data``."""
    if keyword in _VERSION_KEYWORDS:
        b.extra["version"] = line
    elif keyword == "DESCRP":
        tokens = body.split()
        if not tokens:
            raise b.error("DESCRP needs a structure name", number)
        if b.name is not None:
            raise b.error(f"a second DESCRP line in one structure (the first, line "
                          f"{b.name_line}, named it '{b.name}'): is an END missing?", number)
        name = tokens[0]
        if name in name_lines:
            raise b.error(f"the structure name '{name}' is used twice, on lines "
                          f"{name_lines[name]} and {number}: names must be unique", number)
        name_lines[name] = number
        b.name, b.name_line = name, number
        if len(tokens) > 1:
            b.extra["descrp"] = body.strip()
    elif keyword == "REMARK":
        b.keep("remarks", body.strip())
    elif keyword == "FORMAT":
        pass  # the layout is fixed (ReaxFF ignores FORMAT lines too); write_bgf writes them
    elif keyword == "RUTYPE":
        b.keep("rutype", body.strip())
        try:
            known = _parse_rutype(body, b.state)
        except ValueError as exc:
            raise b.error(f"cannot read '{line}': {exc}", number) from None
        if not known:
            warnings.warn(f"{b.path}, line {number}: unknown RUTYPE '{body.strip()}' kept in "
                          "extra['rutype'] and not used", stacklevel=3)
    elif keyword == "CRYSTX":
        values = _floats(body.split(), 6)
        if values is None or len(body.split()) != 6:
            raise b.error(f"CRYSTX needs 6 numbers (a b c in Å, alpha beta gamma in degrees), "
                          f"found '{body.strip()}'", number)
        try:
            b.cell = cell_vectors(*values)
        except ValueError as exc:
            raise b.error(f"CRYSTX: {exc}", number) from None
    elif keyword in ("HETATM", "ATOM"):
        try:
            name, ffield_type, xyz, charge = parse_atom_line(line)
        except ValueError as exc:
            raise b.error(f"cannot read the atom line '{line}': {exc}", number) from None
        b.names.append(name)
        b.types.append(ffield_type)
        b.positions.append(xyz)
        b.charges.append(charge)
    elif keyword in ("CONECT", "ORDER"):
        tokens = body.split()
        numeric = all(t.isdigit() for t in tokens)
        kept = tuple(int(t) for t in tokens) if numeric else body.strip()
        b.keep("conect" if keyword == "CONECT" else "order", kept)
    else:
        _record_data(b, keyword, line, body, number)


def _record_data(b: _Builder, keyword: str, line: str, body: str, number: int) -> None:
    """Record one line of energy, charge, restraint, cell-change or frame data."""
    upper = line.upper()
    if keyword == "UNIT":
        tokens = body.split()
        if len(tokens) >= 2 and tokens[0].upper() == "ENERGY":
            b.energy_unit = (tokens[1], number)
            b.extra["energy_unit"] = tokens[1]
        else:
            b.keep("other", line)
            warnings.warn(f"{b.path}, line {number}: unknown UNIT line '{line}' kept in "
                          "extra['other'] and not used", stacklevel=4)
    elif keyword == "ENERGY":
        values = _floats(body.split(), 1)
        if values is None or not math.isfinite(values[0]):
            raise b.error(f"ENERGY needs a number (finite), found '{body.strip()}'", number)
        b.energy = (values[0], number)
    elif keyword == "MOLCHARGE":
        tokens = body.split()
        try:
            first, last, q = int(tokens[0]), int(tokens[1]), float(tokens[2])
        except (IndexError, ValueError):
            raise b.error(f"MOLCHARGE needs first atom, last atom and charge, found "
                          f"'{body.strip()}'", number) from None
        b.molcharge.append((first, last, q, number))
    elif any(upper.startswith(k) for k in RESTRAINT_KINDS):
        key = next(k for k in RESTRAINT_KINDS if upper.startswith(k))
        try:
            restraint, window = parse_restraint(key, line[len(key):])
        except ValueError as exc:
            raise b.error(f"cannot read the {key} line: {exc}", number) from None
        if window is not None:
            b.windows[len(b.restraints)] = window
        b.restraints.append((restraint, number))
    elif keyword == "VCHANGE":
        values = _floats(body.split(), 1)
        if values is None or values[0] <= 0.0:
            raise b.error(f"VCHANGE needs a positive volume factor, found '{body.strip()}'",
                          number)
        b.vchange = (values[0], number)
    elif keyword == "FFIELD":
        b.extra["ffield"] = body.strip()  # the force field a ReaxFF run wrote it with
    elif keyword == "AXES":
        if body.split() != ["ZYX"]:
            raise b.error(f"AXES {body.strip()} is not supported: coordinates must be in "
                          "ReaxFF's frame, AXES ZYX (c along z, b in the yz plane)", number)
        b.extra["axes"] = "ZYX"
    else:
        b.keep("other", line)
        warnings.warn(f"{b.path}, line {number}: unknown BGF keyword '{keyword}' kept in "
                      "extra['other'] and not used", stacklevel=4)


def read_bgf(path: str | os.PathLike) -> list[Structure]:
    """Read every structure of a BGF file (positions Å, energies kcal/mol)."""
    text = read_input_text(path, "geometry file")
    return parse_bgf(text, path)


# ----------------------------------------------------------------------------------- writing


def _num(value: float, decimals: int, width: int = 0) -> str:
    """``value`` with ``decimals`` decimals when that loses at most 1e-12 (relative), else repr."""
    value = float(value) + 0.0  # no "-0.0"
    fixed = f"{value:{width}.{decimals}f}"
    if abs(float(fixed) - value) <= 1e-12 * max(1.0, abs(value)):
        return fixed
    return " " + repr(value) if width else repr(value)


def _coordinates(xyz, exact: bool) -> str:
    """Three coordinates in f10.5 columns when that is exact (or not asked for), else
    blank-separated with every digit."""
    fields = [_num(x, 5, 10) if exact else f"{float(x) + 0.0:10.5f}" for x in xyz]
    if all(len(f) == 10 for f in fields):
        return "".join(fields)
    return "".join(" " + f.strip() for f in fields)


def _rutype_lines(s: Structure) -> list[str]:
    """RUTYPE bodies that read back to ``s``'s run type: the kept ones when they still do."""
    kept = s.extra.get("rutype")
    if kept:
        state = {"run_type": None, "max_iterations": None, "extra": {}}
        for body in kept:
            _parse_rutype(body, state)
        if (state["run_type"] or "minimize", state["max_iterations"]) == (s.run_type,
                                                                           s.max_iterations):
            return list(kept)
    lines = []
    for key, fmt in (("endpo", "ENDPO {:.3f}"), ("maxmov", "MAXMOV {:9d}")):
        if s.extra.get(key) is not None:
            lines.append(fmt.format(s.extra[key]))
    if s.run_type == "cell_opt":
        lines.append(f"CELL OPT {int(s.extra.get('cell_opt', 0)):5d}")
        if s.max_iterations is not None:
            lines.append(f"MAXIT {s.max_iterations:5d}")
    elif s.run_type == "single_point":
        lines.append("MAXIT     0" if s.max_iterations == 0 else "SINGLE POINT")
    elif s.max_iterations is not None:
        lines.append(f"MAXIT {s.max_iterations:5d}")  # MAXIT 0 reads back as a single point
    else:
        lines.append("NORMAL RUN")
    return lines


def _bgf_frame(s: Structure) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions and cell turned into ReaxFF's cell frame (c along z, b in yz; mirrored when the
    cell is left-handed, since ReaxFF's frame is right-handed)."""
    if s.cell is None:
        return np.asarray(s.positions, dtype=float), None
    cell = np.asarray(s.cell, dtype=float)
    target = cell_vectors(*cell_parameters(cell))
    rotation = np.linalg.solve(cell, target)  # cell @ rotation = target, orthogonal
    return np.asarray(s.positions, dtype=float) @ rotation, target


def structure_bgf_text(s: Structure, exact: bool = True) -> str:
    """The BGF lines of one structure, ending with END (see :func:`write_bgf` for ``exact``)."""
    extra = s.extra
    positions, cell = _bgf_frame(s)
    n = s.n_atoms
    out = [extra.get("version") or ("XTLGRF 200" if cell is not None else "BIOGRF 200")]
    descrp = extra.get("descrp")
    out.append("DESCRP " + (descrp if descrp and descrp.split()[0] == s.name else s.name))
    out.extend("REMARK " + r for r in extra.get("remarks", []))
    if "ffield" in extra:
        out.append("FFIELD " + extra["ffield"])
    out.extend("RUTYPE " + r for r in _rutype_lines(s))
    molcharge = extra.get("molcharge")
    if molcharge is None or not math.isclose(sum(q for *_, q in molcharge), s.total_charge,
                                             abs_tol=1e-12):
        molcharge = [(0, n - 1, s.total_charge)] if s.total_charge != 0.0 else []
    for first, last, q in molcharge:
        out.append(f"MOLCHARGE {first + 1:4d}{last + 1:4d} {_num(q, 2)}")
    windows = extra.get("restraint_windows", {})
    for k, r in enumerate(s.restraints):
        keyword = {"bond": "BOND RESTRAINT", "angle": "ANGLE RESTRAINT",
                   "torsion": "TORSION RESTRAINT"}[r.kind]
        atoms = "".join(f"{i + 1:4d}" for i in r.atoms)
        text = (f"{keyword} {atoms} {_num(r.target, 4)} {_num(r.force1, 2)} {_num(r.force2, 4)} "
                f"{_num(r.rate, 7)}")
        if k in windows:
            text += f" {windows[k][0]:7d} {windows[k][1]:7d}"
        out.append(text)
    if "axes" in extra:
        out.append("AXES " + extra["axes"])
    if cell is not None:
        out.append("CRYSTX " + " ".join(_num(v, 5, 10) if exact else f"{v:10.5f}"
                                        for v in cell_parameters(cell)))
    out.append(FORMAT_ATOM)
    names = extra.get("atom_names") or s.symbols
    types = extra.get("ffield_types") or s.symbols
    charges = extra.get("bgf_charges")
    if charges is None or len(charges) != n:
        charges = np.zeros(n)
    for i in range(n):
        name = (names[i] if len(names) == n else s.symbols[i])[:5]
        ftype = types[i] if len(types) == n else s.symbols[i]
        head = f"HETATM {i + 1:5d} {name:<5s}{'':12s}"  # columns 1-30
        line = head + _coordinates(positions[i], exact)
        if ftype is not None:
            line += f" {ftype:>5s}  0 0 {_num(charges[i], 5, 8)}"
        out.append(line)
    if extra.get("conect") or extra.get("order"):
        out.append("FORMAT CONECT (a6,12i6)")
    for key, word in (("conect", "CONECT"), ("order", "ORDER")):
        for row in extra.get(key, []):
            out.append(word + ("".join(f"{i:6d}" for i in row) if isinstance(row, tuple)
                               else " " + row))
    out.extend(extra.get("other", []))
    if s.energy is not None:
        unit = extra.get("energy_unit", "kcal")
        try:
            value = s.energy / energy_unit_factor(unit)
        except ValueError:
            unit, value = "kcal", s.energy
        out.append(f"UNIT ENERGY   {unit}")
        out.append(f"ENERGY {_num(value, 6, 18)}")
    out.append("END")
    return "\n".join(out) + "\n"


def write_bgf(structures, path: str | os.PathLike, *, exact: bool = True) -> None:
    """Write structures to a BGF file atomically (a temporary file beside ``path``, then a rename).

    exact=True: numbers go in ReaxFF's columns (f10.5 coordinates) when that loses at most 1e-12,
    else blank-separated with every digit, so that :func:`read_bgf` gives back the same
    structures (ReaxFF's own fixed-column reader cannot read such wide lines). exact=False:
    coordinates and cell always in f10.5 columns, rounded to 1e-5 Å, as ReaxFF writes them.
    Periodic structures are turned into ReaxFF's cell frame (c along z, b in the yz plane).
    """
    path = Path(path)
    names = [s.name for s in structures]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"structure names must be unique in a BGF file: {', '.join(repeated)}")
    text = "\n".join(structure_bgf_text(s, exact) for s in structures)
    write_text_atomic(path, text)
