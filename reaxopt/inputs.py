"""Load every input a configuration names, check them against each other, and summarise them.

``load_inputs(config)`` reads the force field, the parameter selection (checked against the force
field), the training data (classic ``geo`` + ``trainset`` and/or structured ASE-readable files) and
the validation data, and raises ``InputError`` for any inconsistency: a trainset naming a structure
that no geometry file holds, a geometry using an element the force field lacks, duplicate names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reaxopt.config import Config, DataFiles, Split
from reaxopt.errors import InputError, Problems
from reaxopt.io.ffield import FField, read_ffield
from reaxopt.io.params import read_params_files
from reaxopt.structure import Structure


@dataclass(frozen=True)
class StructuredSet:
    """Structures read from one ASE-readable file with their loss weights (already defaulted)."""

    path: Path
    structures: list[Structure]
    weight_energy: float
    weight_forces: float


@dataclass
class DataSet:
    """Training or validation data: classic geometries + trainset, and structured sets."""

    geometries: list[Structure] = field(default_factory=list)
    trainset: object | None = None  # reaxopt.io.trainset.TrainingSet
    structured: list[StructuredSet] = field(default_factory=list)

    @property
    def structures(self) -> list[Structure]:
        """Every structure: the classic geometries first, then each structured file's."""
        return list(self.geometries) + [s for st in self.structured for s in st.structures]


@dataclass
class Inputs:
    """Everything a run needs, read and cross-checked."""

    config: Config
    ffield: FField  # with the fixed parameters set to their bounds
    params: list  # list[reaxopt.io.params.ParamSpec]: the parameters fitted
    training: DataSet
    validation: DataSet | None
    lgvdw: bool
    fixed: list = field(default_factory=list)  # ParamSpecs of equal bounds, held at them

    def summary(self) -> str:
        return summary(self)


# ---------------------------------------------------------------------------------------------
# Loading


def load_inputs(config: Config) -> Inputs:
    """Read and cross-check every file ``config`` names (``reaxopt.validate``); every problem
    found is reported in one InputError."""
    from reaxopt.io.params import set_values
    from reaxopt.validate import validate_inputs

    ff = read_ffield(config.force_field)
    lgvdw = ff.lgvdw if config.energy.lgvdw is None else config.energy.lgvdw
    if lgvdw and not ff.lgvdw:
        raise InputError(f"energy.lgvdw is true but the force field {config.force_field} has no "
                         "low-gradient vdW line (a fifth line of 2 numbers per atom); use an lgvdw "
                         "force field or set lgvdw to false", file=config.path, key="energy.lgvdw")
    problems = Problems()
    specs, training, validation = [], DataSet(), None
    with problems.collect():
        specs = read_params_files(config.params, ff)
    with problems.collect():
        training = _load_data(config.training, ff, config)
    if config.validation is not None:
        with problems.collect():
            validation = _load_data(config.validation, ff, config)
    problems.raise_if_any()
    if config.validation is None and config.split is not None:
        training, validation = split_data(training, config.split, config.path)
    fixed = [p for p in specs if p.fixed]
    inputs = Inputs(config, set_values(ff, fixed, [p.lower for p in fixed]),
                    [p for p in specs if not p.fixed], training, validation, lgvdw, fixed)
    validate_inputs(inputs)
    return inputs


def _load_data(files: DataFiles, ff: FField, config: Config) -> DataSet:
    """One data set's files, every problem of them in one InputError."""
    from reaxopt.io.ase_io import read_ase
    from reaxopt.io.geometry import read_geometries

    data, problems = DataSet(), Problems()
    complete = True  # every geometry file was read
    if files.geo is not None:
        try:
            data.geometries = list(read_geometries(files.geo))
        except InputError as error:
            problems.add(error)
            complete = False
    for sf in files.structures:
        try:
            structures = list(read_ase(sf.path, energy_unit=sf.energy_unit))
        except InputError as error:
            problems.add(error)
            complete = False
            continue
        if not structures:
            problems.add(InputError("the file holds no structures", file=sf.path))
        for s in structures:
            if s.energy is None and s.forces is None:
                problems.add(InputError(f"structure '{s.name}' has neither a reference energy "
                                        "nor reference forces; structured inputs need at least "
                                        "one", file=s.source or sf.path, line=s.line))
        data.structured.append(StructuredSet(
            sf.path, structures,
            config.loss.energy_weight if sf.weight_energy is None else sf.weight_energy,
            config.loss.forces_weight if sf.weight_forces is None else sf.weight_forces))
    with problems.collect():
        _check_unique_names(data.structures)
    with problems.collect():
        check_elements(data.structures, ff)
    if files.trainset is not None:
        from reaxopt.io.trainset import check_names, read_trainset

        with problems.collect():
            data.trainset = read_trainset(files.trainset)
            if complete:
                check_names(data.trainset, {s.name for s in data.structures}, files.trainset)
    problems.raise_if_any()
    return data


def _check_unique_names(structures: list[Structure]) -> None:
    first: dict[str, Structure] = {}
    problems = Problems()
    for s in structures:
        if s.name in first:
            other = first[s.name]
            where = f"{other.source}" + (f", line {other.line}" if other.line else "")
            problems.add(InputError(f"the structure name '{s.name}' is used twice (first in "
                                    f"{where}); expected unique names", file=s.source,
                                    line=s.line))
            continue
        first[s.name] = s
    problems.raise_if_any()


def check_elements(structures: list[Structure], ff: FField) -> None:
    """Every element of every structure must be an atom type of the force field (one problem
    per structure, at its first unknown atom)."""
    known = {sym.lower() for sym in ff.symbols}
    problems = Problems()
    for s in structures:
        for k, sym in enumerate(s.symbols):
            if sym.lower() not in known:
                problems.add(InputError(
                    f"structure '{s.name}' has atom {k + 1} of element '{sym}', which the force "
                    f"field {ff.source} does not define (its elements: {', '.join(ff.symbols)})",
                    file=s.source, line=_atom_line(s, k)))
                break
    problems.raise_if_any()


def _atom_line(s: Structure, k: int) -> int | None:
    """The file line of atom ``k`` of a BGF structure (its k-th HETATM/ATOM record), else s.line."""
    if s.source is None or s.line is None or "atom_names" not in s.extra:
        return s.line
    try:
        with open(s.source) as f:
            seen = 0
            for number, text in enumerate(f, start=1):
                if number >= s.line and text.startswith(("HETATM", "ATOM")):
                    if seen == k:
                        return number
                    seen += 1
    except (OSError, UnicodeDecodeError):
        pass
    return s.line


def _group_key(s: Structure, by: str | None, config_path: Path):
    if by is None:
        return s.name
    info = s.extra.get("info") if isinstance(s.extra.get("info"), dict) else {}
    if by in s.extra:
        return s.extra[by]
    if by in info:
        return info[by]
    raise InputError(f"validation.by is '{by}' but structure '{s.name}' has no '{by}' entry "
                     f"(in {s.source}" + (f", line {s.line}" if s.line else "") + ")",
                     file=config_path, key="validation.by")


def split_data(data: DataSet, split: Split, config_path: Path) -> tuple[DataSet, DataSet]:
    """Hold out about ``split.fraction`` of the structured inputs, whole groups at a time.

    Groups (one per structure, or one per value of the ``split.by`` info key) are shuffled with
    ``split.seed`` and moved to validation until the held-out structures reach the fraction; at
    least one group stays on each side. Classic geo + trainset inputs always stay in training.
    """
    structures = [s for st in data.structured for s in st.structures]
    groups: dict[object, list[str]] = {}
    for s in structures:
        groups.setdefault(_group_key(s, split.by, config_path), []).append(s.name)
    if len(groups) < 2:
        what = "structure" if split.by is None else f"value of '{split.by}'"
        raise InputError(f"cannot split the structured inputs for validation: they hold only one "
                         f"{what}; expected at least 2", file=config_path,
                         key="validation.fraction")
    keys = list(groups)
    order = np.random.default_rng(split.seed).permutation(len(keys))
    target = split.fraction * len(structures)
    held: set[str] = set()
    for n_moved, idx in enumerate(order):
        if n_moved == len(keys) - 1 or (held and len(held) >= target):
            break
        held.update(groups[keys[idx]])

    def part(keep) -> list[StructuredSet]:
        return [StructuredSet(st.path, [s for s in st.structures if keep(s.name)],
                              st.weight_energy, st.weight_forces) for st in data.structured]

    training = DataSet(data.geometries, data.trainset,
                       [st for st in part(lambda n: n not in held) if st.structures])
    validation = DataSet([], None, [st for st in part(lambda n: n in held) if st.structures])
    return training, validation


# ---------------------------------------------------------------------------------------------
# Summary


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.rjust(w) if k in right else c.ljust(w)
                         for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _number(v: float) -> str:
    return f"{v:.10g}"


def data_summary(data: DataSet, title: str) -> list[str]:
    """Counts of structures, atoms, periodic cells, run types, and items per trainset section."""
    structures = data.structures
    out = [f"{title}:"]
    if data.geometries:
        out.append(f"  geometries file: {data.geometries[0].source} "
                   f"({len(data.geometries)} structures)")
    for st in data.structured:
        out.append(f"  structures file: {st.path} ({len(st.structures)} structures; "
                   f"energy weight {_number(st.weight_energy)}, "
                   f"forces weight {_number(st.weight_forces)})")
    n_atoms = [s.n_atoms for s in structures]
    if n_atoms:
        out.append(f"  structures: {len(structures)}; atoms per structure: min {min(n_atoms)}, "
                   f"max {max(n_atoms)}, total {sum(n_atoms)}")
    else:
        out.append("  structures: 0")
    out.append(f"  periodic: {sum(s.periodic for s in structures)}")
    run_types = Counter(s.run_type for s in structures)
    out.append("  run types: " + (", ".join(f"{k} {v}" for k, v in sorted(run_types.items()))
                                  or "none"))
    if data.trainset is not None:
        counts = data.trainset.counts()
        out.append("  trainset items: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                   + f" (total {sum(counts.values())})")
    if data.structured:
        refs = [s for st in data.structured for s in st.structures]
        out.append(f"  structured references: energies {sum(s.energy is not None for s in refs)}, "
                   f"forces {sum(s.forces is not None for s in refs)} structures")
    return out


def summary(inputs: Inputs) -> str:
    """A readable account of the loaded inputs (what ``reaxopt check`` prints)."""
    from reaxopt.io.params import get_value

    c, ff = inputs.config, inputs.ffield
    out = [f"config: {c.path}",
           f"force field: {c.force_field} ({_count(len(ff.atoms), 'element')}: "
           f"{' '.join(ff.symbols)}; "
           f"lgvdw {'on' if inputs.lgvdw else 'off'})"]
    out += data_summary(inputs.training, "training data")
    if inputs.validation is not None:
        title = "validation data"
        if c.split is not None:
            title += (f" (split: fraction {_number(c.split.fraction)}, seed {c.split.seed}, "
                      f"by {c.split.by or 'structure'})")
        out += data_summary(inputs.validation, title)
    else:
        out.append("validation data: none")
    o = c.optimizer
    out.append(f"optimizer: {o.method}, {_count(o.steps, 'step')} x {_count(o.trials, 'trial')}, "
               f"init {o.init}, "
               f"seed {o.seed}; output directory {c.output_dir}")
    sources = ", ".join(str(p) for p in c.params)
    out.append(f"parameters to fit: {len(inputs.params)} (from {sources})")
    rows = [[str(k + 1), p.label, f"{p.section}/{p.entry}/{p.parameter}",
             _number(get_value(ff, p)), _number(p.lower), _number(p.upper), _number(p.step),
             str(p.line)]
            for k, p in enumerate(inputs.params)]
    out += ["  " + line for line in _table(
        ["#", "parameter", "sec/entry/par", "value", "lower", "upper", "step", "line"], rows,
        right={0, 3, 4, 5, 6, 7})]
    if inputs.fixed:
        out.append(f"held fixed (equal bounds, not fitted): {len(inputs.fixed)}: "
                   + ", ".join(f"{p.label} = {_number(p.lower)} (line {p.line})"
                               for p in inputs.fixed))
    return "\n".join(out) + "\n"
