"""A fit's output directory: one run at a time, no earlier run's files lost or left stale, and
the fingerprint of the inputs a checkpoint was made from.

* ``RunLock(out)``: an exclusive lock (``flock`` on ``.reaxopt.lock``, released by the system
  when the process ends, however it ends) naming the process that holds it.
* ``prepare(out, resume, overwrite)``: refuses a directory holding an earlier run's outputs
  unless the run resumes it or overwrites it; overwriting deletes those files (and only them).
* ``fingerprint(config)``: a SHA-256 of every input file and the settings that change the loss;
  ``changes(saved, now)`` lists what differs, for ``--resume``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

from reaxopt.errors import InputError
from reaxopt.validate import FIT_OUTPUTS

LOCK = ".reaxopt.lock"
# settings a resumed run may change: the plan, not what the loss is
RESUMABLE_SETTINGS = ("optimizer.steps", "optimizer.trials", "optimizer.budget.evaluations",
                      "optimizer.budget.seconds", "validation.md_check")
_PATH_KEYS = ("force_field", "params", "geo", "trainset", "path", "output_dir")


class RunLock:
    """Exclusive use of an output directory while a run writes into it (a context manager).

    A second ``RunLock`` on the same directory, in any process, raises InputError naming the
    holder (process id, host, start time, command line). Where the file system offers no locks
    the run goes on unlocked."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.handle = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): nothing to hold
            return self
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = " ".join(self.handle.read().split()) or "another process"
            self.handle.close()
            self.handle = None
            raise InputError(f"another reaxopt run is writing into this directory ({holder}); "
                             "wait for it to finish, or give this run another output_dir",
                             file=self.path.parent) from None
        except OSError:  # a file system without locks
            return self
        self.handle.seek(0)
        self.handle.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: "
                          f"{' '.join(sys.argv)}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.truncate(0)  # the file stays: removing it would race a waiting run
            self.handle.close()  # closing releases the lock
            self.handle = None


def earlier_outputs(out: Path) -> list[str]:
    """The names of the fit's output files that ``out`` already holds."""
    return [name for name in FIT_OUTPUTS if (Path(out) / name).is_file()]


def _checkpoint_note(out: Path) -> str:
    try:
        data = json.loads((Path(out) / "checkpoint.json").read_text())
        steps = sum(row.get("event") in ("step end", "step rejected")
                    for row in data.get("history", []))
        state = "a finished run" if data.get("finished") else "an unfinished run"
        return f"; its checkpoint is of {state} after {steps} outer steps"
    except (OSError, ValueError, AttributeError, TypeError):
        return ""


def prepare(out: Path, *, resume: bool, overwrite: bool, config_path) -> None:
    """Check ``out`` (locked by this run) before the run writes into it: without ``resume`` or
    ``overwrite`` it must hold no earlier outputs; ``overwrite`` deletes them; ``resume`` needs
    a checkpoint."""
    out = Path(out)
    found = earlier_outputs(out)
    if resume:
        if "checkpoint.json" not in found:
            raise InputError("--resume: no checkpoint to resume from (expected checkpoint.json "
                             "in the output directory)", file=out / "checkpoint.json")
        return
    if found and not overwrite:
        raise InputError(f"the output directory holds the outputs of an earlier run "
                         f"({', '.join(found)}){_checkpoint_note(out)}; continue it with "
                         f"`reaxopt fit {config_path} --resume`, start over with --overwrite "
                         "(which deletes those files), or choose another output_dir", file=out)
    for name in found:
        (out / name).unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _flat(data, prefix: str = "") -> dict:
    """Dotted keys -> values of nested dicts and lists, paths left out."""
    out = {}
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        if key in _PATH_KEYS:
            continue
        dotted = f"{prefix}[{key}]" if isinstance(key, int) else (
            f"{prefix}.{key}" if prefix else str(key))
        if isinstance(value, (dict, list)):
            out.update(_flat(value, dotted))
        else:
            out[dotted] = value
    return out


def fingerprint(config) -> dict:
    """{"files": {role: {"path", "sha256"}}, "settings": {dotted key: value}}: every input file
    by its role in the config, and every setting but paths and ``RESUMABLE_SETTINGS``."""
    roles = {"force_field": config.force_field}
    roles.update({f"params[{k}]": p for k, p in enumerate(config.params)})
    for label, files in (("", config.training), ("validation.", config.validation)):
        if files is None:
            continue
        for name in ("geo", "trainset"):
            if getattr(files, name) is not None:
                roles[label + name] = getattr(files, name)
        roles.update({f"{label}structures[{k}]": sf.path for k, sf in enumerate(files.structures)})
    settings = {k: v for k, v in _flat(config.to_dict()).items() if k not in RESUMABLE_SETTINGS}
    return {"files": {role: {"path": str(path), "sha256": _sha256(path)}
                      for role, path in roles.items()},
            "settings": json.loads(json.dumps(settings))}


def changes(saved: dict, now: dict) -> list[str]:
    """What differs between two fingerprints, one readable line per change."""
    out = []
    before, after = saved.get("files", {}), now.get("files", {})
    for role in dict.fromkeys([*before, *after]):
        old, new = before.get(role), after.get(role)
        if old is None:
            out.append(f"{role}: added ({new['path']})")
        elif new is None:
            out.append(f"{role}: removed (was {old['path']})")
        elif old["sha256"] != new["sha256"]:
            out.append(f"{role}: the contents of {new['path']} changed")
    before, after = saved.get("settings", {}), now.get("settings", {})
    for key in dict.fromkeys([*before, *after]):
        if before.get(key, "(unset)") != after.get(key, "(unset)"):
            out.append(f"{key}: {before.get(key, '(unset)')} -> {after.get(key, '(unset)')}")
    return out
