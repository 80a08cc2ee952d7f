"""Read ReaxFF ``params`` files: which ffield parameters to fit, with a step and bounds.

Each line reads ``section entry parameter step bound bound [! comment]``; ``#`` comments out
the rest of a line. ``section`` numbers follow ``reaxopt.io.ffield.SECTIONS`` (1 general,
2 atoms, 3 bonds, 4 off-diagonal, 5 angles, 6 torsions, 7 hydrogen bonds); ``entry`` is the
1-based row within that section of the ffield, and ``parameter`` the 1-based position within the
entry's values in file order (atom 1..32, 33..34 with lgvdw; bond 1..16 over its two lines;
off-diagonal 1..6, 7 with lgvdw; angle 1..7; torsion 1..7; hydrogen bond 1..4).

General parameters: the ReaxFF manual's example (``1 1 1 ... !1st general parameter``,
``1 2 1 ... !2nd general parameter``) and JAX-ReaxFF both write general parameter n as
``1 n 1`` -- each general parameter is its own row of the ffield. ``1 1 n`` is accepted as
well and means the same; both are stored as entry n, parameter 1.

The manual writes the maximum before the minimum; real files mostly write the minimum first.
Either order is accepted (with one warning per file that writes the maximum first): ``lower`` is
the smaller bound, ``upper`` the larger. Equal bounds hold a parameter fixed at that value
(``ParamSpec.fixed``): it is set in the force field and left out of the fitted vector. ``step``
is the search interval ReaxFF's parabolic search uses around the value.
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from dataclasses import dataclass

from reaxopt.errors import InputError, Problems
from reaxopt.io.files import read_input_text
from reaxopt.io.ffield import SECTIONS, FField

# Usual ReaxFF names of the values, in file order (LAMMPS's reaxff_ffield.cpp / reaxff_types.h and
# the ffield header comments). None marks a value LAMMPS reads past without using.
GENERAL_NAMES = (
    "p_boc1", "p_boc2", "p_coa2", "p_trip4", "p_trip3", "kc2", "p_ovun6", "p_trip2", "p_ovun7",
    "p_ovun8", "p_trip1", "swa", "swb", None, "p_val6", "p_lp1", "p_val9", "p_val10", None,
    "p_pen2", "p_pen3", "p_pen4", None, "p_tor2", "p_tor3", "p_tor4", None, "p_cot2", "p_vdW1",
    "bo_cut_x100", "p_coa4", "p_ovun4", "p_ovun3", "p_val8", "bond_softness", "lg_re_scale",
    None, None, "p_coa3",
)
ATOM_NAMES = (
    "r_s", "valency", "mass", "r_vdw", "epsilon", "gamma", "r_pi", "valency_e",
    "alpha", "gamma_w", "valency_boc", "p_ovun5", None, "chi", "eta", "p_hbond",
    "r_pi_pi", "p_lp2", None, "p_boc4", "p_boc3", "p_boc5", "bcut_acks2", None,
    "p_ovun2", "p_val3", None, "valency_val", "p_val5", "rcore2", "ecore2", "acore2",
    "lgcij", "lgre",
)
BOND_NAMES = (
    "De_s", "De_p", "De_pp", "p_be1", "p_bo5", "v13cor", "p_bo6", "p_ovun1",
    "p_be2", "p_bo3", "p_bo4", None, "p_bo1", "p_bo2", "ovc", None,
)
OFFDIAGONAL_NAMES = ("D", "r_vdw", "alpha", "r_s", "r_pi", "r_pi_pi", "lgcij")
ANGLE_NAMES = ("theta_00", "p_val1", "p_val2", "p_coa1", "p_val7", "p_pen1", "p_val4")
TORSION_NAMES = ("V1", "V2", "V3", "p_tor1", "p_cot1", None, None)
HBOND_NAMES = ("r0_hb", "p_hb1", "p_hb2", "p_hb3")

PARAMETER_NAMES = {"general": GENERAL_NAMES, "atoms": ATOM_NAMES, "bonds": BOND_NAMES,
                   "offdiagonal": OFFDIAGONAL_NAMES, "angles": ANGLE_NAMES,
                   "torsions": TORSION_NAMES, "hbonds": HBOND_NAMES}

# Words for messages and labels: (singular, plural).
_WORDS = {"general": ("general parameter", "general parameters"), "atoms": ("atom", "atoms"),
          "bonds": ("bond", "bonds"), "offdiagonal": ("off-diagonal", "off-diagonal entries"),
          "angles": ("angle", "angles"), "torsions": ("torsion", "torsions"),
          "hbonds": ("hydrogen bond", "hydrogen bonds")}
_LABEL_WORDS = {"general": "general", "atoms": "atom", "bonds": "bond", "offdiagonal": "offdiag",
                "angles": "angle", "torsions": "torsion", "hbonds": "hbond"}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter to fit: where it sits in the ffield, its search step and its bounds.

    section: 1..7 (``SECTIONS``); entry: 1-based row in that section (for section 1 the number of
    the general parameter); parameter: 1-based position in the entry's values (1 for section 1);
    lower <= upper; line: the params-file line; label: e.g. ``bond C-S p_bo1``.
    """

    section: int
    entry: int
    parameter: int
    step: float
    lower: float
    upper: float
    line: int
    label: str

    @property
    def section_name(self) -> str:
        return SECTIONS[self.section]

    @property
    def fixed(self) -> bool:
        """Equal bounds: the parameter is held at that value and is not fitted."""
        return self.lower == self.upper


def read_params(path: str | os.PathLike, ffield: FField) -> list[ParamSpec]:
    """Read a params file and check every selection against ``ffield``."""
    text = read_input_text(path, "params file")
    return parse_params(text, ffield, path)


def read_params_files(paths, ffield: FField) -> list[ParamSpec]:
    """Read several params files in order, their selections fitted together: a parameter
    selected twice, in one file or in two, is an error naming both selections."""
    seen: dict = {}
    return [spec for path in paths
            for spec in parse_params(read_input_text(path, "params file"), ffield, path, seen)]


def parse_params(text: str, ffield: FField, path: str | os.PathLike = "<params>",
                 seen: dict | None = None) -> list[ParamSpec]:
    """Parse the text of a params file against ``ffield``; errors name ``path`` and the line,
    every bad line of the file in one report. seen: (section, entry, parameter) -> (path, line)
    of selections read before, updated (a parameter selected again is an error)."""
    path = str(path)
    specs, seen = [], {} if seen is None else seen
    here: set = set()  # the keys this file selects
    problems = Problems()
    upper_first: list[int] = []  # lines that write the upper bound first
    for number, raw in enumerate(text.splitlines(), start=1):
        content = re.split(r"[#!]", raw, maxsplit=1)[0]
        if not content.strip():
            continue
        try:
            spec, swapped = _spec(content, ffield, path, number)
        except InputError as error:
            problems.add(error)
            continue
        if swapped:
            upper_first.append(number)
        key = (spec.section, spec.entry, spec.parameter)
        if key in seen:
            first, line = seen[key]
            where = (f"on lines {line} and {number}" if key in here
                     else f"in {first}, line {line}, and here on line {number}")
            problems.add(InputError(f"{spec.label} is selected twice, {where}; keep one",
                                    file=path, line=number))
            continue
        seen[key] = (path, number)
        here.add(key)
        specs.append(spec)
    problems.raise_if_any()
    if upper_first:
        shown = ", ".join(map(str, upper_first[:10])) + (", ..." if len(upper_first) > 10 else "")
        warnings.warn(f"{path}: {len(upper_first)} line(s) write the upper bound before the lower "
                      f"one (lines {shown}), as the ReaxFF manual does; each is read as the range "
                      "between its two bounds", stacklevel=3)
    return specs


def _spec(content: str, ffield: FField, path: str, number: int) -> tuple[ParamSpec, bool]:
    """The ParamSpec of one params line, and whether it writes the upper bound first."""

    def error(message: str) -> InputError:
        return InputError(message, file=path, line=number)

    fields = content.split()
    if len(fields) == 5:
        fields = _fixed_width(content) or fields
    if len(fields) != 6:
        raise error(f"a params line takes 'section entry parameter step bound bound' (6 fields); "
                    f"found {len(fields)}: '{content.strip()}'")
    try:
        section, entry, parameter = (int(f) for f in fields[:3])
    except ValueError:
        raise error(f"section, entry and parameter must be integers, found "
                    f"'{' '.join(fields[:3])}'") from None
    try:
        step, bound1, bound2 = (float(f) for f in fields[3:])
    except ValueError:
        raise error(f"step and bounds must be numbers, found '{' '.join(fields[3:])}'") from None
    if not all(math.isfinite(v) for v in (step, bound1, bound2)):
        raise error(f"step and bounds must be finite numbers, found '{' '.join(fields[3:])}'")
    if section not in SECTIONS:
        raise error(f"unknown section {section}; expected 1 (general), 2 (atoms), 3 (bonds), "
                    "4 (off-diagonal), 5 (angles), 6 (torsions) or 7 (hydrogen bonds)")
    name = SECTIONS[section]
    if name == "general":
        entry, parameter = _general_indices(entry, parameter, error)
    rows = ffield.section(name)
    singular, plural = _WORDS[name]
    if not 1 <= entry <= len(rows):
        raise error(f"params line {number} points at {singular} {entry}, but the ffield has "
                    f"{len(rows)} {plural}")
    n_values = 1 if name == "general" else len(rows[entry - 1].values)
    if not 1 <= parameter <= n_values:
        raise error(f"parameter {parameter} is out of range: a {singular} entry has {n_values} "
                    f"values (1..{n_values})")
    if name not in ("general", "atoms") and max(rows[entry - 1].types) > len(ffield.atoms):
        types = " ".join(map(str, rows[entry - 1].types))
        raise error(f"{singular} {entry} of the ffield (types {types}"
                    + (f", ffield line {rows[entry - 1].line}" if rows[entry - 1].line else "")
                    + f") names an atom type above the {len(ffield.atoms)} the ffield defines; "
                    "LAMMPS ignores that line, so fitting it would have no effect: select a line "
                    "of defined types, or add the atom type to the ffield")
    if step <= 0:
        raise error(f"the step must be positive, found {fields[3]}")
    lower, upper = min(bound1, bound2), max(bound1, bound2)
    spec = ParamSpec(section, entry, parameter, step, lower, upper, number,
                     parameter_label(ffield, section, entry, parameter))
    value = get_value(ffield, spec)
    if lower == upper:
        if value != lower:
            warnings.warn(f"{path}, line {number}: {spec.label} has equal bounds ({lower}): it "
                          f"is held fixed at {lower}, not at the ffield's {value}", stacklevel=3)
    elif not lower <= value <= upper:
        warnings.warn(f"{path}, line {number}: {spec.label} starts at {value}, outside its bounds "
                      f"[{lower}, {upper}]; fitting clips it into them", stacklevel=3)
    if _name(name, entry, parameter) is None:
        warnings.warn(f"{path}, line {number}: {spec.label} is not used by ReaxFF as LAMMPS "
                      "computes it; fitting it has no effect", stacklevel=3)
    return spec, bound1 > bound2


def _fixed_width(content: str) -> list[str] | None:
    """Fields of a line written with the manual's 3i3 format, where an index of 100 or more
    runs into its neighbour (``  5104  1``); None if the line is not of that form."""
    columns = [content[0:3], content[3:6], content[6:9]]
    if not all(re.fullmatch(r" *\d+", c) for c in columns):
        return None
    fields = [c.strip() for c in columns] + content[9:].split()
    return fields if len(fields) == 6 else None


def _general_indices(entry: int, parameter: int, error) -> tuple[int, int]:
    """General parameter n is written ``1 n 1`` (manual, JAX-ReaxFF) or ``1 1 n``."""
    if parameter == 1:
        return entry, 1
    if entry == 1:
        return parameter, 1
    raise error(f"a general parameter is selected as '1 n 1' (or '1 1 n'); found entry {entry} "
                f"and parameter {parameter}")


def _name(section: str, entry: int, parameter: int) -> str | None:
    names = PARAMETER_NAMES[section]
    index = (entry if section == "general" else parameter) - 1
    return names[index] if index < len(names) else None


def _type_symbol(ffield: FField, t: int) -> str:
    if t == 0:
        return "X"
    return ffield.atoms[t - 1].symbol if t <= len(ffield.atoms) else f"#{t}"


def parameter_label(ffield: FField, section: int, entry: int, parameter: int) -> str:
    """A readable name such as ``bond C-S p_bo1``, ``atom S r_s`` or ``general swb``."""
    name = SECTIONS[section]
    number = entry if name == "general" else parameter
    what = _name(name, entry, parameter) or f"(unused {number})"
    if name == "general":
        return f"general {what}"
    row = ffield.section(name)[entry - 1]
    where = row.symbol if name == "atoms" else "-".join(_type_symbol(ffield, t) for t in row.types)
    return f"{_LABEL_WORDS[name]} {where} {what}"


def get_value(ffield: FField, spec: ParamSpec) -> float:
    """The ffield's current value of the parameter ``spec`` selects."""
    name = SECTIONS[spec.section]
    if name == "general":
        return ffield.general[spec.entry - 1]
    return ffield.section(name)[spec.entry - 1].values[spec.parameter - 1]


def set_values(ffield: FField, specs, values) -> FField:
    """A copy of ``ffield`` with each selected parameter set to its value; the input is unchanged."""
    out = copy.deepcopy(ffield)
    for spec, value in zip(specs, values, strict=True):
        name = SECTIONS[spec.section]
        if name == "general":
            out.general[spec.entry - 1] = float(value)
        else:
            out.section(name)[spec.entry - 1].values[spec.parameter - 1] = float(value)
    return out


def set_value(ffield: FField, spec: ParamSpec, value: float) -> FField:
    """A copy of ``ffield`` with the parameter ``spec`` selects set to ``value``."""
    return set_values(ffield, [spec], [value])
