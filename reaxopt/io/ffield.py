"""Read and write ReaxFF force-field files (``ffield``), section by section, as written.

The record keeps the file's own layout: atom types are 1-based indices into ``atoms`` (0 is the
torsion wildcard), parameter values are listed in file order, and the comment text of every header
line is kept so that a written file reads like the original. Physical meaning (mixing rules,
LAMMPS's quirks) lives in ``reaxopt.forcefield``, not here.

Parameters per entry, in file order (1-based numbers as ``params`` files use them):
general 39 (or as many as the count line says), atom 32 (+2 ``lgvdw`` values on a fifth line),
bond 16, off-diagonal 6 (+1 ``lgvdw``), angle 7, torsion 7, hydrogen bond 4.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from reaxopt.errors import InputError
from reaxopt.io.files import read_input_text, write_text_atomic

ATOM_VALUES = 32
ATOM_LG_VALUES = 2
BOND_VALUES = 16
OFFDIAG_VALUES = 6
ANGLE_VALUES = 7
TORSION_VALUES = 7
HBOND_VALUES = 4

# Section numbers as ``params`` files name them.
SECTIONS = {1: "general", 2: "atoms", 3: "bonds", 4: "offdiagonal", 5: "angles", 6: "torsions", 7: "hbonds"}


@dataclass
class AtomEntry:
    symbol: str
    values: list[float]  # 32, or 34 with the lgvdw line


@dataclass
class Entry:
    """A bond, off-diagonal, angle, torsion or hydrogen-bond line: 1-based atom types and values."""

    types: tuple[int, ...]
    values: list[float]
    line: int | None = field(default=None, compare=False)  # the file line it starts on


@dataclass
class FField:
    """A parsed ffield file. ``headers`` maps a section name to its header lines, verbatim."""

    title: str
    general: list[float]
    general_comments: list[str]
    atoms: list[AtomEntry]
    bonds: list[Entry]
    offdiagonal: list[Entry]
    angles: list[Entry]
    torsions: list[Entry]
    hbonds: list[Entry]
    headers: dict[str, list[str]] = field(default_factory=dict)
    source: str | None = None

    @property
    def symbols(self) -> list[str]:
        return [a.symbol for a in self.atoms]

    @property
    def lgvdw(self) -> bool:
        """True when the atoms carry the low-gradient vdW line (``pair_style reaxff ... lgvdw yes``)."""
        return bool(self.atoms) and len(self.atoms[0].values) == ATOM_VALUES + ATOM_LG_VALUES

    def section(self, name: str) -> list:
        return {"general": self.general, "atoms": self.atoms, "bonds": self.bonds,
                "offdiagonal": self.offdiagonal, "angles": self.angles, "torsions": self.torsions,
                "hbonds": self.hbonds}[name]

    def ignored_entries(self) -> list[tuple[str, Entry]]:
        """(section name, entry) of every line naming an atom type above the file's atom count:
        LAMMPS skips such lines (published files have them), and so does reaxopt."""
        n = len(self.atoms)
        return [(name, e) for name in ("bonds", "offdiagonal", "angles", "torsions", "hbonds")
                for e in self.section(name) if max(e.types) > n]

    def type_index(self, symbol: str) -> int:
        """1-based type index of an element symbol (case-insensitive)."""
        for k, a in enumerate(self.atoms, start=1):
            if a.symbol.lower() == symbol.lower():
                return k
        raise KeyError(symbol)


class _Lines:
    """A cursor over the file's lines that reports errors with the file and line number."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.pos = 0

    def next(self, what: str) -> str:
        if self.pos >= len(self.lines):
            raise InputError(f"the file ends early: expected {what}, found end of file "
                             f"(is the ffield truncated?)", file=self.path, line=len(self.lines))
        self.pos += 1
        return self.lines[self.pos - 1]

    def error(self, message: str) -> InputError:
        return InputError(message, file=self.path, line=self.pos)

    def floats(self, text: str, n: int | None, what: str) -> list[float]:
        tokens = text.split("!")[0].split()
        if n is not None and len(tokens) < n:
            raise self.error(f"expected {n} numbers for {what}, found {len(tokens)}: '{text.strip()}'")
        if n is not None:
            tokens = tokens[:n]
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            raise self.error(f"expected numbers for {what}, found '{text.strip()}'") from None
        if not all(math.isfinite(v) for v in values):
            raise self.error(f"non-finite number in {what}: '{text.strip()}'")
        return values

    def count(self, what: str) -> tuple[int, str]:
        line = self.next(f"the number of {what}")
        tokens = line.split("!")[0].split()
        try:
            n = int(tokens[0])
        except (IndexError, ValueError):
            raise self.error(f"expected the number of {what} at the start of the line, "
                             f"found '{line.strip()}'") from None
        if n < 0:
            raise self.error(f"the number of {what} must not be negative, found {n}")
        return n, line


def _entry(lines: _Lines, n_types: int, n_values: int, what: str, n_atoms: int,
           allow_zero: bool = False, min_values: int | None = None) -> Entry:
    text = lines.next(f"the next {what} line")
    tokens = text.split("!")[0].split()
    need = n_types + (n_values if min_values is None else min_values)
    if len(tokens) < need:
        raise lines.error(f"expected {n_types} atom types and {n_values} parameters on the {what} "
                          f"line, found {len(tokens)} fields: '{text.strip()}'")
    try:
        types = tuple(int(t) for t in tokens[:n_types])
    except ValueError:
        raise lines.error(f"expected {n_types} integer atom types at the start of a {what} line, "
                          f"found '{text.strip()}'") from None
    # Types above the atom count occur in published files (ffield.reax.rdx); LAMMPS skips such
    # lines, and so does reaxopt.forcefield, but they are kept so the file round-trips.
    for t in types:
        if t < (0 if allow_zero else 1):
            raise lines.error(f"atom type {t} on the {what} line must be "
                              f"{'0 (wildcard) or more' if allow_zero else 'at least 1'}")
    line = lines.pos
    values = lines.floats(" ".join(tokens[n_types:n_types + n_values]), None, f"a {what}")
    return Entry(types, values, line)


def parse_ffield(text: str, path: str | os.PathLike = "<ffield>") -> FField:
    """Parse the text of an ffield file; errors name ``path`` and the line."""
    path = Path(path)
    lines = _Lines(path, text)
    title = lines.next("the title line")
    n_general, general_header = lines.count("general parameters")
    general, comments = [], []
    for k in range(n_general):
        line = lines.next(f"general parameter {k + 1} of {n_general}")
        general.append(lines.floats(line, 1, f"general parameter {k + 1}")[0])
        comments.append(line.split("!", 1)[1].strip() if "!" in line else "")

    n_atoms, atom_count_line = lines.count("atom types")
    atom_header = [atom_count_line] + [lines.next("the atom section header") for _ in range(3)]
    atoms = [_atom(lines, a, n_atoms) for a in range(n_atoms)]
    n_lg = sum(len(a.values) > ATOM_VALUES for a in atoms)
    if 0 < n_lg < n_atoms:
        raise lines.error(f"{n_lg} of {n_atoms} atom types carry the fifth (lgvdw) line; "
                          "expected all or none")
    lg = bool(atoms) and len(atoms[0].values) == ATOM_VALUES + ATOM_LG_VALUES

    def section(what: str, key: str, n_types: int, n_values: int, rows: int = 1, **kw):
        n, count_line = lines.count(what)
        header = [count_line] + [lines.next(f"the {what} header") for _ in range(rows - 1)]
        entries = []
        for _ in range(n):
            e = _entry(lines, n_types, n_values, what.rstrip("s"), n_atoms, **kw)
            if rows == 2:
                e.values += lines.floats(lines.next(f"line 2 of a {what.rstrip('s')}"), 8,
                                         f"line 2 of bond {e.types}")
            entries.append(e)
        return header, entries

    bond_header, bonds = section("bonds", "bonds", 2, 8, rows=2)
    off_header, offdiag = section("off-diagonal terms", "offdiagonal", 2,
                                  OFFDIAG_VALUES + (1 if lg else 0),
                                  min_values=OFFDIAG_VALUES)
    angle_header, angles = section("angles", "angles", 3, ANGLE_VALUES)
    torsion_header, torsions = section("torsions", "torsions", 4, TORSION_VALUES, allow_zero=True)
    hbond_header, hbonds = section("hydrogen bonds", "hbonds", 3, HBOND_VALUES)
    if lg:
        for e in offdiag:
            if len(e.values) == OFFDIAG_VALUES:
                e.values.append(0.0)
    headers = {"general": [general_header], "atoms": atom_header, "bonds": bond_header,
               "offdiagonal": off_header, "angles": angle_header, "torsions": torsion_header,
               "hbonds": hbond_header}
    return FField(title, general, comments, atoms, bonds, offdiag, angles, torsions, hbonds,
                  headers, str(path))


def _is_lg_line(text: str) -> bool:
    tokens = text.split("!")[0].split()
    if len(tokens) != ATOM_LG_VALUES:
        return False
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return "." in tokens[0]


def _atom(lines: _Lines, a: int, n_atoms: int) -> AtomEntry:
    """Four lines of 8 numbers (the first led by the symbol), plus the lgvdw line if present."""
    first = lines.next(f"atom type {a + 1} of {n_atoms}")
    tokens = first.split("!")[0].split()
    if not tokens:
        raise lines.error(f"expected an element symbol and 8 parameters for atom type {a + 1}, "
                          "found an empty line")
    symbol = tokens[0]
    try:
        float(symbol)
    except ValueError:
        pass
    else:
        raise lines.error(f"expected an element symbol at the start of atom type {a + 1}, found "
                          f"the number '{symbol}' (does the atom count on the header match the "
                          "atoms listed?)")
    values = lines.floats(" ".join(tokens[1:]), 8, f"line 1 of atom {symbol}")
    for row in range(2, 5):
        values += lines.floats(lines.next(f"line {row} of atom {symbol}"), 8,
                               f"line {row} of atom {symbol}")
    # The low-gradient vdW form (ffield.reax.lg) adds a fifth line of two numbers to every atom.
    if lines.pos < len(lines.lines) and _is_lg_line(lines.lines[lines.pos]):
        values += lines.floats(lines.next(f"the lgvdw line of atom {symbol}"), ATOM_LG_VALUES,
                               f"the lgvdw line of atom {symbol}")
    return AtomEntry(symbol, values)


def read_ffield(path: str | os.PathLike) -> FField:
    """Read an ffield file from disk."""
    text = read_input_text(path, "force-field file")
    return parse_ffield(text, path)


def format_value(v: float, width: int = 9) -> str:
    """A number the way ffield files write it (f9.4), with more digits when 4 would lose it."""
    v = float(v)
    if v == 0.0:
        v = 0.0  # no "-0.0000"
    fixed = f"{v:{width}.4f}"
    if float(fixed) == v:
        return fixed
    text = repr(v)
    return " " + text if len(text) >= width else f"{text:>{width}}"


def _row(values, width: int = 9) -> str:
    return "".join(format_value(v, width) for v in values)


def _types(types) -> str:
    return "".join(f"{t:3d}" for t in types)


def _count_line(n: int, header: list[str] | None, default: str) -> str:
    """Rewrite the count at the start of a header line, keeping its comment text."""
    text = header[0] if header else default
    comment = text.split("!", 1)[1] if "!" in text else default.split("!", 1)[1]
    return f"{n:3d}    !{comment}"


def ffield_text(ff: FField) -> str:
    """The text of an ffield file holding exactly ``ff``'s parameters."""
    h = ff.headers
    out = [ff.title.rstrip() or "reaxopt force field"]
    out.append(_count_line(len(ff.general), h.get("general"), " 39 ! Number of general parameters"))
    for v, c in zip(ff.general, ff.general_comments or [""] * len(ff.general)):
        out.append(f"{format_value(v, 10)} !{c}")
    atom_header = h.get("atoms") or [
        " 0 ! Nr of atoms; cov.r; valency;a.m;Rvdw;Evdw;gammaEEM;cov.r2;#",
        "            alfa;gammavdW;valency;Eunder;Eover;chiEEM;etaEEM;n.u.",
        "            cov r3;Elp;Heat inc.;n.u.;n.u.;n.u.;n.u.",
        "            ov/un;val1;n.u.;val3,vval4"]
    out.append(_count_line(len(ff.atoms), atom_header, atom_header[0]))
    out.extend(atom_header[1:4])
    for a in ff.atoms:
        v = a.values
        out.append(f" {a.symbol:<2s}" + _row(v[0:8]))
        for row in range(1, 4):
            out.append("   " + _row(v[8 * row:8 * row + 8]))
        if len(v) > ATOM_VALUES:
            out.append("   " + _row(v[ATOM_VALUES:]))
    bond_header = h.get("bonds") or [" 0 ! Nr of bonds; Edis1;LPpen;n.u.;pbe1;pbo5;13corr;pbo6",
                                     "                         pbe2;pbo3;pbo4;n.u.;pbo1;pbo2;ovcorr"]
    out.append(_count_line(len(ff.bonds), bond_header, bond_header[0]))
    out.extend(bond_header[1:2])
    for e in ff.bonds:
        out.append(_types(e.types) + _row(e.values[:8]))
        out.append("      " + _row(e.values[8:16]))
    for key, default in (("offdiagonal", " 0 ! Nr of off-diagonal terms; Ediss;Ro;gamma;rsigma;rpi;rpi2"),
                         ("angles", " 0 ! Nr of angles;at1;at2;at3;Thetao,o;ka;kb;pv1;pv2"),
                         ("torsions", " 0 ! Nr of torsions;at1;at2;at3;at4;;V1;V2;V3;V2(BO);vconj;n.u;n"),
                         ("hbonds", " 0 ! Nr of hydrogen bonds;at1;at2;at3;Rhb;Dehb;vhb1")):
        entries = ff.section(key)
        out.append(_count_line(len(entries), h.get(key), default))
        out.extend((h.get(key) or [default])[1:])
        for e in entries:
            out.append(_types(e.types) + _row(e.values))
    return "\n".join(out) + "\n"


def write_ffield(ff: FField, path: str | os.PathLike) -> None:
    """Write ``ff`` atomically: a temporary file beside ``path``, then a rename."""
    write_text_atomic(path, ffield_text(ff))
