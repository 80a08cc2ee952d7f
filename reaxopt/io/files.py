"""Reading input files with clear errors, and writing outputs atomically."""

from __future__ import annotations

import os
from pathlib import Path

from reaxopt.errors import InputError


def read_input_text(path: str | os.PathLike, what: str) -> str:
    """The text of an input file; ``what`` names it in errors (e.g. 'force-field file')."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{what} not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what} ({exc})", file=path) from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a temporary file beside ``path``, then rename it over ``path``.

    A reader never sees a half-written file, and a kill mid-write leaves the old one intact.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:  # name the file being written, not the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
