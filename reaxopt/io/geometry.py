"""One entry point for geometry files: BGF (ReaxFF ``geo``) or anything ASE reads."""

from __future__ import annotations

import os
from pathlib import Path

from reaxopt.errors import InputError
from reaxopt.io.ase_io import read_ase
from reaxopt.io.bgf import read_bgf
from reaxopt.structure import Structure

_BGF_FIRST_WORDS = ("BIOGRF", "XTLGRF", "DESCRP")


def is_bgf(path: str | os.PathLike) -> bool:
    """True for a BGF file: suffix ``.bgf``, the name ``geo``, or a first record BIOGRF/XTLGRF.

    The first record is the first line that is neither blank nor a ``#`` comment; ``DESCRP``
    there also counts (ReaxFF does not require the version line).
    """
    path = Path(path)
    if path.suffix.lower() == ".bgf" or path.name == "geo":
        return True
    with open(path, encoding="utf-8", errors="replace") as handle:
        for _, line in zip(range(1000), handle):
            text = line.strip()
            if text and not text.startswith("#"):
                return text.split()[0].upper() in _BGF_FIRST_WORDS
    return False


def read_geometries(path: str | os.PathLike, **kw) -> list[Structure]:
    """Structures of a geometry file: :func:`read_bgf` for BGF, else :func:`read_ase`.

    Keyword arguments (``energy_unit``, ``index``) go to :func:`read_ase`; a BGF file states its
    energy unit itself (``UNIT ENERGY``), so passing them for one is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("geometry file not found", file=path)
    if is_bgf(path):
        if kw:
            raise InputError(f"options {', '.join(sorted(kw))} apply to ASE-read files, not to "
                             "a BGF file (its UNIT ENERGY line gives the unit)", file=path)
        return read_bgf(path)
    return read_ase(path, **kw)
