"""``reaxopt convert``: a YAML config for a classic input set (ffield, geo, trainset.in, params).

``write_config`` checks every input as ``reaxopt check`` would, every problem in one report,
and writes the config atomically, never over one of its inputs. With ``drop_missing`` the items
of a trainset that name structures its geometry file lacks are commented out in a copy of the
trainset, beside the config, which the config then uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from reaxopt import __version__
from reaxopt.errors import InputError
from reaxopt.io.files import write_text_atomic

CONFIG_REFERENCE = "configs/README.md"


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return str(path)


def convert_text(*, ffield: Path, params: Path, geo: Path, trainset: Path, output: Path,
                 validation_geo: Path | None = None,
                 validation_trainset: Path | None = None) -> str:
    """A short YAML config for classic inputs: their paths, relative to ``output``'s directory,
    and the output directory; every other key keeps its default."""
    # abspath, not resolve: paths keep the user's spelling (through symlinks such as ../shared),
    # and config.py resolves them back the same lexical way.
    base = Path(os.path.abspath(output)).parent

    def rel(path: Path) -> str:
        text = yaml.safe_dump(_relative(os.path.abspath(path), base), default_flow_style=True,
                              width=10_000)
        return text.strip().removesuffix("\n...").removesuffix("...").strip()

    lines = [f"# reaxopt configuration written by `reaxopt convert` (reaxopt {__version__}).",
             "# Paths are relative to this file's directory. Every other key takes its default;",
             f"# {CONFIG_REFERENCE} lists each key, its default and units.",
             f"force_field: {rel(ffield)}",
             f"params: {rel(params)}",
             f"geo: {rel(geo)}",
             f"trainset: {rel(trainset)}"]
    if validation_geo is not None:
        lines += ["validation:",
                  f"  geo: {rel(validation_geo)}",
                  f"  trainset: {rel(validation_trainset)}"]
    lines.append("output_dir: reaxopt_output")
    return "\n".join(lines) + "\n"


def drop_missing_items(trainset: Path, geo: Path, copy: Path) -> list[str]:
    """Write ``copy``: ``trainset`` with every item line naming a structure that ``geo`` lacks
    commented out; returns one 'line N: item (no structure X)' per dropped item (none: no
    copy is written)."""
    from reaxopt.io.geometry import read_geometries
    from reaxopt.io.trainset import missing_names, read_trainset

    missing = missing_names(read_trainset(trainset), {s.name for s in read_geometries(geo)})
    by_line: dict[int, list[str]] = {}
    for name, lines in missing.items():
        for line in lines:
            by_line.setdefault(line, []).append(name)
    if not by_line:
        return []
    text = Path(trainset).read_text().splitlines()
    dropped = []
    for line, names in sorted(by_line.items()):
        why = ", ".join(f"'{n}'" for n in names)
        dropped.append(f"line {line}: {text[line - 1].strip()} (no structure {why} in {geo})")
        text[line - 1] = (f"# dropped by reaxopt convert (no structure {why} in the geo file): "
                          + text[line - 1])
    write_text_atomic(copy, "\n".join(text) + "\n")
    return dropped


def _check_output(output: Path, force: bool, inputs) -> None:
    """InputError unless ``output`` may be written: the inputs exist, it is none of them, and
    it is new or ``force`` is given."""
    from reaxopt.validate import check_output_file

    for option, path in inputs:
        if path is not None and not Path(path).is_file():
            raise InputError(f"{option}: file not found", file=path)
    check_output_file(output, [path for _, path in inputs], option="-o/--output")
    if output.exists() and not force:
        raise InputError("the output file exists; expected a new file name, or --force to "
                         "overwrite it", file=output)


def write_config(*, ffield: Path, params: Path, geo: Path, trainset: Path, output: Path,
                 force: bool = False, validation_geo: Path | None = None,
                 validation_trainset: Path | None = None, drop_missing: bool = False):
    """Check the inputs and write the config ``output``; returns (the loaded Inputs,
    [(trainset copy, its dropped items)] for the copies ``drop_missing`` wrote)."""
    from reaxopt.config import config_from_dict
    from reaxopt.inputs import load_inputs

    given = (("--ffield", ffield), ("--geo", geo), ("--trainset", trainset),
             ("--params", params), ("--validation-geo", validation_geo),
             ("--validation-trainset", validation_trainset))
    _check_output(output, force, given)
    dropped = []
    if drop_missing:
        for label, data_geo, data_trainset in (("", geo, trainset),
                                               ("validation.", validation_geo,
                                                validation_trainset)):
            if data_geo is None:
                continue
            copy = output.with_name(f"{output.stem}.{label}trainset.in")
            _check_output(copy, force, given)
            lines = drop_missing_items(data_trainset, data_geo, copy)
            if lines:
                dropped.append((copy, lines))
                if label:
                    validation_trainset = copy
                else:
                    trainset = copy
    text = convert_text(ffield=ffield, params=params, geo=geo, trainset=trainset, output=output,
                        validation_geo=validation_geo, validation_trainset=validation_trainset)
    # Check the config exactly as it will be read back from OUTPUT before writing it.
    inputs = load_inputs(config_from_dict(yaml.safe_load(text), output))
    write_text_atomic(output.resolve(), text)
    return inputs, dropped
