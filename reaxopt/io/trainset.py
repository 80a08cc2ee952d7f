"""Read ReaxFF training sets (``trainset.in``): what to fit, with which weight, against which value.

The file is free-format and split into sections, each opened by a keyword line and closed by
``END<keyword>`` (``END <keyword>`` is accepted too; a section left open when the next one starts,
or at the end of the file, is closed with a warning):

``ENERGY``           ``weight [+|-] name[/n] [+|-] name[/n] ... reference``  (kcal/mol)
                     the sign defaults to ``+`` and may be glued to the name; ``/n`` divides that
                     structure's energy by the integer n (default 1); any number of terms.
``CHARGE``           ``name weight atom reference``                            (e)
``HEATFO``           ``name weight reference``                                 (kcal/mol)
``GEOMETRY``         ``name weight a1 a2 reference``        bond length        (Å)
                     ``name weight a1 a2 a3 reference``     valence angle      (degrees in the file)
                     ``name weight a1 a2 a3 a4 reference``  torsion angle      (degrees in the file)
                     ``name weight reference``              RMSG: the root mean square of the
                     forces on the structure at the end of its ReaxFF run (after the minimisation
                     when the structure is minimised), kcal/mol/Å; usually 0.
``FORCES``           ``name weight atom fx fy fz``          one atom's force   (kcal/mol/Å)
                     ``name weight rms``                    the structure's RMS force (kcal/mol/Å)
``CELL PARAMETERS``  ``name weight a|b|c|alfa|beta|gamma reference``  (Å, degrees in the file)

``#`` and ``!`` start a comment anywhere on a line. The text of the last ``#`` comment line before
an item within its section (other than a bare ``#``, a commented-out data line or a column-header
line such as ``#Iden Weight ...``) is kept as the item's ``group``, for reports.

Atom numbers are 1-based in the file and stored 0-based. Following the project's unit rule,
angles are converted to radians here: the references of angle and torsion items and of the
alpha/beta/gamma cell items are in radians; everything else keeps the file's units.
The "weight" column is what ReaxFF calls the accuracy: a residual counts as
``((value - reference) / weight)**2``, so a smaller weight means a tighter fit.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import warnings
from dataclasses import dataclass

from reaxopt.errors import InputError, Problems
from reaxopt.io.files import read_input_text

# Section keyword (spaces removed, upper case) -> the name used in TrainingSet and in messages.
_SECTION_KEYWORDS = {
    "ENERGY": "ENERGY",
    "CHARGE": "CHARGE",
    "CHARGES": "CHARGE",
    "HEATFO": "HEATFO",
    "GEOMETRY": "GEOMETRY",
    "FORCES": "FORCES",
    "CELLPARAMETERS": "CELL PARAMETERS",
    "CELLPARAMETER": "CELL PARAMETERS",
}
_KNOWN = "ENERGY, CHARGE, HEATFO, GEOMETRY, FORCES or CELL PARAMETERS"

# Cell parameter as written -> canonical name.
_CELL_PARAMETERS = {"a": "a", "b": "b", "c": "c", "alfa": "alpha", "alpha": "alpha",
                    "beta": "beta", "gamma": "gamma"}

# Comment lines that only label the columns ("#Iden Weight At1 ...") are not group titles.
_COLUMN_HEADER_WORDS = {"iden", "keyw", "key", "weight", "weigh", "acc"}

_GEOMETRY_KINDS = {0: "rmsg", 2: "bond", 3: "angle", 4: "torsion"}


@dataclass(frozen=True)
class EnergyTerm:
    """One ``[+|-] name/n`` term: contributes ``sign * E(name) / divisor``."""

    sign: int  # +1 or -1
    name: str
    divisor: int


@dataclass(frozen=True)
class EnergyItem:
    """A weighted energy difference: sum of the terms compared with ``reference`` (kcal/mol)."""

    weight: float
    terms: tuple[EnergyTerm, ...]
    reference: float
    line: int
    group: str = ""


@dataclass(frozen=True)
class ChargeItem:
    """The charge (e) on atom ``atom`` (0-based) of structure ``name``."""

    name: str
    weight: float
    atom: int
    reference: float
    line: int
    group: str = ""


@dataclass(frozen=True)
class HeatfoItem:
    """The heat of formation (kcal/mol) of structure ``name``."""

    name: str
    weight: float
    reference: float
    line: int
    group: str = ""


@dataclass(frozen=True)
class GeometryItem:
    """A distance (Å), angle or torsion (radians) between 0-based ``atoms``, or the RMSG.

    kind: 'bond' (2 atoms), 'angle' (3), 'torsion' (4) or 'rmsg' (no atoms; the root mean
    square of the forces at the end of the structure's run, kcal/mol/Å).
    """

    name: str
    weight: float
    atoms: tuple[int, ...]
    kind: str
    reference: float
    line: int
    group: str = ""


@dataclass(frozen=True)
class ForceItem:
    """A force reference (kcal/mol/Å) for structure ``name``.

    With ``atom`` (0-based) set, ``reference`` is the force vector (fx, fy, fz) on that atom;
    with ``atom`` None, ``reference`` is a float: the RMS force over the structure's atoms.
    """

    name: str
    weight: float
    atom: int | None
    reference: tuple[float, float, float] | float
    line: int
    group: str = ""


@dataclass(frozen=True)
class CellItem:
    """A lattice parameter: ``parameter`` is a, b, c (Å) or alpha, beta, gamma (radians)."""

    name: str
    weight: float
    parameter: str
    reference: float
    line: int
    group: str = ""


@dataclass(frozen=True)
class TrainingSet:
    """Everything a trainset.in file asks for, section by section, in file order."""

    energy: tuple[EnergyItem, ...] = ()
    charge: tuple[ChargeItem, ...] = ()
    heatfo: tuple[HeatfoItem, ...] = ()
    geometry: tuple[GeometryItem, ...] = ()
    forces: tuple[ForceItem, ...] = ()
    cell: tuple[CellItem, ...] = ()
    source: str | None = None

    def items(self) -> tuple:
        """Every item of every section, in file (line) order."""
        every = self.energy + self.charge + self.heatfo + self.geometry + self.forces + self.cell
        return tuple(sorted(every, key=lambda item: item.line))

    def structure_names(self) -> tuple[str, ...]:
        """Every structure name the items refer to, once each, in order of first use."""
        return tuple(dict.fromkeys(name for item in self.items() for name in _names_of(item)))

    def counts(self) -> dict[str, int]:
        """Number of items per section."""
        return {"energy": len(self.energy), "charge": len(self.charge), "heatfo": len(self.heatfo),
                "geometry": len(self.geometry), "forces": len(self.forces), "cell": len(self.cell)}


def _names_of(item) -> tuple[str, ...]:
    if isinstance(item, EnergyItem):
        return tuple(term.name for term in item.terms)
    return (item.name,)


def missing_names(trainset: TrainingSet, known_names) -> dict[str, list[int]]:
    """{name: the lines of the items that use it} for every structure name the items refer to
    that is not in ``known_names``, in order of first use."""
    known = set(known_names)
    missing: dict[str, list[int]] = {}
    for item in trainset.items():
        for name in _names_of(item):
            if name not in known and item.line not in missing.setdefault(name, []):
                missing[name].append(item.line)
    return missing


def check_names(trainset: TrainingSet, known_names, path=None) -> None:
    """Raise InputError for every structure name the items use that is not in
    ``known_names``: one problem per name, at the first line using it, with the lines of the
    other items using it and the closest known name."""
    known = sorted(set(known_names))
    problems = Problems()
    for name, lines in missing_names(trainset, known).items():
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "."
        also = (f" (also used on line{'s' if len(lines) > 2 else ''} "
                f"{', '.join(map(str, lines[1:6]))}{', ...' if len(lines) > 6 else ''})"
                if len(lines) > 1 else "")
        problems.add(InputError(f"structure '{name}' is not among the {len(known)} structures "
                                f"of the geometry input{also}{hint}",
                                file=path or trainset.source, line=lines[0]))
    problems.raise_if_any()


def read_trainset(path: str | os.PathLike) -> TrainingSet:
    """Read a trainset.in file from disk."""
    text = read_input_text(path, "training-set file")
    return parse_trainset(text, path)


def parse_trainset(text: str, path: str | os.PathLike = "<trainset.in>") -> TrainingSet:
    """Parse the text of a trainset.in file; errors name ``path`` and the line."""
    path = str(path)
    items = {name: [] for name in ("ENERGY", "CHARGE", "HEATFO", "GEOMETRY", "FORCES",
                                   "CELL PARAMETERS")}
    section = None  # (name, line number of its keyword)
    group = ""
    problems = Problems()
    opened = 0  # items in the open section
    for number, raw in enumerate(text.splitlines(), start=1):
        content = re.split(r"[#!]", raw, maxsplit=1)[0].strip()
        if not content:
            if raw.lstrip().startswith("#"):
                group = _group_title(raw, group)
            continue
        keyword = _keyword(content)
        unknown = section is not None and section[0] is None  # inside an unknown section
        if keyword is not None:
            is_end, name = keyword
            if name is None:
                if is_end and unknown:  # the END of the unknown section: already reported
                    section = None
                    continue
                problems.add(InputError(f"unknown section keyword '{content}'; expected {_KNOWN} "
                                        "(or END followed by one of them)", file=path,
                                        line=number))
                if not is_end:  # its lines are skipped up to its END
                    section, opened = (None, number), 1
                continue
            if unknown:
                section = None
            if section is not None and (not is_end or section[0] == name) and opened == 0:
                _warn_empty(path, section)
            if is_end:
                if section is None or section[0] != name:
                    open_text = (f"the open section is {section[0]}" if section
                                 else "no section is open")
                    problems.add(InputError(f"'{content}' closes {name}, but {open_text}",
                                            file=path, line=number))
                    continue
                section = None
            else:
                if section is not None:
                    _warn_unclosed(path, section, f"{name} starts at line {number}")
                section, group, opened = (name, number), "", 0
            continue
        if unknown:
            continue
        if section is None:
            problems.add(InputError(f"data line outside any section: '{content}'; a section "
                                    f"starts with a keyword line ({_KNOWN}) and ends with "
                                    "END<keyword>", file=path, line=number))
            continue
        with problems.collect():
            items[section[0]].append(_PARSERS[section[0]](content.split(), _Where(path, number),
                                                          group))
        opened += 1
    if section is not None and section[0] is not None:
        if opened == 0:
            _warn_empty(path, section)
        _warn_unclosed(path, section, "the file ends")
    problems.raise_if_any()
    trainset = TrainingSet(tuple(items["ENERGY"]), tuple(items["CHARGE"]),
                           tuple(items["HEATFO"]), tuple(items["GEOMETRY"]),
                           tuple(items["FORCES"]), tuple(items["CELL PARAMETERS"]), path)
    if not trainset.items():
        warnings.warn(f"{path}: the training set holds no items", stacklevel=2)
    return trainset


def _keyword(content: str) -> tuple[bool, str | None] | None:
    """(is_end, section) for a keyword line, (is_end, None) for an unknown one, None for data.

    A line is taken as a keyword when it holds only letters and spaces and either matches a
    known keyword (any case) or is written in capitals; data lines always hold numbers.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z ]*", content):
        return None
    squeezed = content.replace(" ", "").upper()
    is_end = squeezed.startswith("END")
    name = _SECTION_KEYWORDS.get(squeezed[3:] if is_end else squeezed)
    if name is None and content != content.upper():
        return None  # lower-case words: a malformed data line, reported as such
    return is_end, name


def _group_title(raw: str, current: str) -> str:
    """The group a ``#`` comment line opens, or ``current`` if it is not a title."""
    text = raw.strip().lstrip("#").split("!")[0].strip()
    if not text:
        return current
    first = text.split()[0]
    try:
        float(first)
        return current  # a commented-out data line
    except ValueError:
        pass
    if first.lower().lstrip("#") in _COLUMN_HEADER_WORDS:
        return current
    return text


def _warn_empty(path: str, section: tuple[str, int]) -> None:
    name, line = section
    warnings.warn(f"{path}, line {line}: section {name} holds no items", stacklevel=3)


def _warn_unclosed(path: str, section: tuple[str, int], where: str) -> None:
    name, line = section
    warnings.warn(f"{path}, line {line}: section {name} has no END{name.replace(' ', '')} line "
                  f"before {where}; closing it there", stacklevel=3)


@dataclass(frozen=True)
class _Where:
    path: str
    line: int

    def error(self, message: str) -> InputError:
        return InputError(message, file=self.path, line=self.line)

    def number(self, token: str, what: str) -> float:
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"expected a number for the {what}, found '{token}'") from None
        if not math.isfinite(value):
            raise self.error(f"the {what} must be a finite number, found '{token}'")
        return value

    def weight(self, token: str) -> float:
        value = self.number(token, "weight")
        if value <= 0:
            raise self.error(f"the weight must be positive (it divides the residual), found {token}")
        return value

    def atom(self, token: str) -> int:
        """A 1-based atom number from the file, returned 0-based."""
        try:
            value = int(token)
        except ValueError:
            raise self.error(f"expected an atom number (an integer from 1), found '{token}'") from None
        if value < 1:
            raise self.error(f"atom numbers start at 1, found {value}")
        return value - 1

    def fields(self, fields: list[str], allowed: tuple[int, ...], section: str, form: str) -> None:
        if len(fields) not in allowed:
            raise self.error(f"a {section} line takes {form}; found {len(fields)} fields: "
                             f"'{' '.join(fields)}'")


def _energy(fields: list[str], where: _Where, group: str) -> EnergyItem:
    if len(fields) < 3:
        raise where.error("an ENERGY line takes 'weight [+|-] name/n ... reference' (at least 3 "
                          f"fields); found {len(fields)}: '{' '.join(fields)}'")
    weight = where.weight(fields[0])
    reference = where.number(fields[-1], "reference energy at the end of the line")
    return EnergyItem(weight, _energy_terms(fields[1:-1], where), reference, where.line, group)


def _energy_terms(tokens: list[str], where: _Where) -> tuple[EnergyTerm, ...]:
    """Parse ``[+|-] name[/n]`` terms; signs and divisors may stand alone or be glued on."""
    # Re-split so that '/' always stands alone; signs are only recognised at a token's start.
    parts = []
    for token in tokens:
        pieces = token.replace("/", " / ").split()
        parts.extend(pieces)
    terms, sign, k = [], None, 0
    while k < len(parts):
        part = parts[k]
        if part in ("+", "-"):
            if sign is not None:
                raise where.error(f"two signs in a row ('{part}') in the energy terms")
            sign = 1 if part == "+" else -1
            k += 1
            continue
        if part == "/":
            raise where.error("a '/divisor' must follow a structure name")
        if part[0] in "\u2212\u2013\u2014":
            raise where.error(f"'{part[0]}' is not a sign here; write '+' or '-' (ASCII)")
        if part[0] in "+-":
            if sign is not None:
                raise where.error(f"two signs in a row ('{part}') in the energy terms")
            sign, part = (1 if part[0] == "+" else -1), part[1:]
        divisor = 1
        if k + 1 < len(parts) and parts[k + 1] == "/":
            if k + 2 >= len(parts):
                raise where.error(f"'{part}/' lacks its divisor")
            divisor = _divisor(parts[k + 2], part, where)
            k += 2
        terms.append(EnergyTerm(1 if sign is None else sign, part, divisor))
        sign = None
        k += 1
    if sign is not None:
        raise where.error("a sign at the end of the energy terms has no structure name after it")
    if not terms:
        raise where.error("an ENERGY line needs at least one structure term between the weight "
                          "and the reference")
    return tuple(terms)


def _divisor(token: str, name: str, where: _Where) -> int:
    try:
        value = int(token)
    except ValueError:
        raise where.error(f"the divisor of '{name}' must be a positive integer, found '{token}'") from None
    if value < 1:
        raise where.error(f"the divisor of '{name}' must be a positive integer, found {value}")
    return value


def _charge(fields, where, group) -> ChargeItem:
    where.fields(fields, (4,), "CHARGE", "'name weight atom reference' (4 fields)")
    return ChargeItem(fields[0], where.weight(fields[1]), where.atom(fields[2]),
                      where.number(fields[3], "reference charge"), where.line, group)


def _heatfo(fields, where, group) -> HeatfoItem:
    where.fields(fields, (3,), "HEATFO", "'name weight reference' (3 fields)")
    return HeatfoItem(fields[0], where.weight(fields[1]),
                      where.number(fields[2], "reference heat of formation"), where.line, group)


def _geometry(fields, where, group) -> GeometryItem:
    where.fields(fields, (3, 5, 6, 7), "GEOMETRY",
                 "'name weight [a1 a2 [a3 [a4]]] reference' (3, 5, 6 or 7 fields)")
    weight = where.weight(fields[1])
    atoms = tuple(where.atom(t) for t in fields[2:-1])
    if len(set(atoms)) != len(atoms):
        raise where.error(f"an atom appears twice in '{' '.join(fields[2:-1])}'")
    kind = _GEOMETRY_KINDS[len(atoms)]
    reference = where.number(fields[-1], f"reference {kind}")
    if kind in ("angle", "torsion"):
        reference = math.radians(reference)
    return GeometryItem(fields[0], weight, atoms, kind, reference, where.line, group)


def _forces(fields, where, group) -> ForceItem:
    where.fields(fields, (3, 6), "FORCES",
                 "'name weight atom fx fy fz' (6 fields) or 'name weight rms' (3 fields)")
    weight = where.weight(fields[1])
    if len(fields) == 3:
        rms = where.number(fields[2], "reference RMS force")
        if rms < 0:
            raise where.error(f"an RMS force cannot be negative, found {fields[2]}")
        return ForceItem(fields[0], weight, None, rms, where.line, group)
    atom = where.atom(fields[2])
    vector = tuple(where.number(t, f"force component {c}") for t, c in zip(fields[3:], "xyz"))
    return ForceItem(fields[0], weight, atom, vector, where.line, group)


def _cell(fields, where, group) -> CellItem:
    where.fields(fields, (4,), "CELL PARAMETERS", "'name weight a|b|c|alfa|beta|gamma reference' "
                 "(4 fields)")
    weight = where.weight(fields[1])
    parameter = _CELL_PARAMETERS.get(fields[2].lower())
    if parameter is None:
        raise where.error(f"unknown cell parameter '{fields[2]}'; expected a, b, c, alfa, beta "
                          "or gamma")
    reference = where.number(fields[3], f"reference {parameter}")
    if parameter in ("alpha", "beta", "gamma"):
        reference = math.radians(reference)
    return CellItem(fields[0], weight, parameter, reference, where.line, group)


_PARSERS = {"ENERGY": _energy, "CHARGE": _charge, "HEATFO": _heatfo, "GEOMETRY": _geometry,
            "FORCES": _forces, "CELL PARAMETERS": _cell}
