"""Compiled functions kept on disk between processes, so that a later run skips tracing.

JAX's persistent compilation cache skips XLA's compilation, but each process still traces and
lowers a function to find its cache key: seconds for the full ReaxFF energy with forces.
``cached_executable`` keys a compiled function instead by what fixes it without tracing (a name,
the arguments' tree structure, shapes and dtypes, the caller's static values, the sources of the
reaxopt modules its module imports, the JAX and jaxlib versions, the device and host CPU, the
XLA_* and JAX_* environment) and keeps the executable (``jax.experimental.serialize_executable``) in
``cache_directory()``: no directory, no files. An executable calling LAPACK (the QEq solve)
needs LAPACK's kernels set up before it runs, as JAX does when it lowers such a call: the file's
first line names its custom calls; one calling anything else is not stored.

Only a fresh compilation is stored: an executable that JAX itself loaded from its persistent
cache serializes without its code (jax 0.10: "Function ... not found" when run). A stored file
that does not load or whose first run fails is removed and the function compiled again. The files
are unpickled, as JAX's own cache loads machine code from its directory: it must be the user's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import re
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import jax
import jaxlib
import numpy as np

SUBDIRECTORY = "reaxopt-executables"
_MAGIC = "reaxopt-executable/1"  # the first line of a stored file, with its custom calls
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_LOADED: OrderedDict = OrderedDict()  # key -> callable, the few used last in this process
_KEEP_LOADED = 4
_DIRECTORY: dict = {}  # "path": the folder set by ``set_cache_directory``


def set_cache_directory(path: Path | None) -> None:
    """Keep executables in ``path`` (None: nowhere) instead of ``<JAX compilation cache
    directory>/reaxopt-executables``."""
    _DIRECTORY["path"] = None if path is None else Path(path)


def reset_cache_directory() -> None:
    """Back to the default folder: ``<JAX compilation cache directory>/reaxopt-executables``."""
    _DIRECTORY.clear()


def forget_loaded() -> None:
    """Drop the executables this process keeps in memory: the next call loads or compiles."""
    _LOADED.clear()


def cache_directory() -> Path | None:
    """Where executables are kept: the folder ``set_cache_directory`` set, else a folder of
    JAX's compilation cache directory (None when JAX keeps no cache)."""
    if "path" in _DIRECTORY:
        return _DIRECTORY["path"]
    where = jax.config.jax_compilation_cache_dir
    return Path(where) / SUBDIRECTORY if where else None


_IMPORT = re.compile(r"^\s*(?:from\s+(reaxopt[\w.]*)\s+import\s+(\([^)]*\)|[^\n]*)"
                     r"|import\s+(reaxopt[\w.]*))", re.MULTILINE)


def _module_file(name: str) -> Path | None:
    """The source file of reaxopt module ``name`` (a package: its __init__.py), or None."""
    parts = name.split(".")
    if parts[0] != "reaxopt":
        return None
    base = Path(__file__).resolve().parent.joinpath(*parts[1:])
    for path in ((base.with_suffix(".py"),) if len(parts) > 1 else ()) + (base / "__init__.py",):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=None)
def _source(name: str) -> bytes | None:
    """The source of reaxopt module ``name`` (read once per process), or None."""
    path = _module_file(name)
    return None if path is None else path.read_bytes()


def _imported(text: str) -> list[str]:
    """The reaxopt modules an import statement of ``text`` names, wherever it stands (``from
    reaxopt.a import b`` names reaxopt.a and, if it is a module, reaxopt.a.b)."""
    names = []
    for package, items, module in _IMPORT.findall(text):
        if module:
            names.append(module)
            continue
        names.append(package)
        for item in re.sub(r"#[^\n]*", "", items).strip("()").split(","):
            if item.split():
                names.append(f"{package}.{item.split()[0]}")
    return names


def source_modules(module: str) -> list[str]:
    """Reaxopt module ``module``, every reaxopt module it imports (directly or not, at the top
    of a file or inside a function) and their packages, sorted: what its functions can run."""
    seen: set[str] = set()
    queue = [module, "reaxopt"]
    while queue:
        name = queue.pop()
        source = None if name in seen else _source(name)
        if source is None:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)]
        queue += parents + _imported(source.decode("utf-8", errors="replace"))
    return sorted(seen)


@functools.lru_cache(maxsize=None)
def source_digest(module: str) -> str:
    """sha256 (hex) of the sources of ``source_modules(module)``: other modules' edits leave
    it alone."""
    digest = hashlib.sha256()
    for name in source_modules(module):
        digest.update(name.encode() + b"\0" + _source(name) + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _host() -> str:
    """The machine an executable was compiled for: architecture and, on Linux, the CPU model
    and feature flags (XLA compiles for the host's instruction set)."""
    lines: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("model name", "flags")) and line not in lines:
                    lines.append(line)
                if len(lines) == 2:
                    break
    except OSError:
        pass
    return platform.machine() + "".join(lines)


def executable_key(name: str, args: tuple, static: str = "", module: str = "reaxopt") -> str:
    """A hex key for ``name`` compiled for ``args`` (a tuple of pytrees of arrays; only their
    structure, shapes and dtypes count) and ``static`` (the caller's non-array inputs, as text),
    defined in ``module`` (its reaxopt sources count: ``source_digest``)."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    device = jax.devices()[0]
    environment = sorted((k, v) for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_")))
    parts = [name, str(treedef), static, source_digest(module), jax.__version__,
             jaxlib.__version__, device.platform, device.device_kind,
             str(device.client.platform_version), _host(), repr(environment),
             str(jax.config.jax_enable_x64), " ".join(str(jax.typeof(x)) for x in leaves)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def static_text(value) -> str:
    """Text that identifies a dataclass (e.g. a ``Topology``) by its field values, numpy arrays
    by shape, dtype and bytes: a ``static_key`` for ``cached_executable``."""
    parts = []
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if isinstance(item, np.ndarray):
            item = (item.shape, item.dtype.str, item.tobytes().hex())
        parts.append(f"{f.name}={item!r}")
    return ";".join(parts)


def _trees(args: tuple, n_outputs: int):
    """(in_tree, out_tree) of a compiled ``fn(*args)`` returning a tuple of n_outputs arrays."""
    return (jax.tree_util.tree_structure((tuple(args), {})),
            jax.tree_util.tree_structure((0,) * n_outputs))


def _load(path: Path, args: tuple, n_outputs: int):
    """The executable stored at ``path``, or None if it is absent or does not load."""
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        header, blob = path.read_bytes().split(b"\n", 1)
    except (OSError, ValueError):
        return None
    try:
        calls = _custom_calls_of_header(header)
        if calls:  # LAPACK's kernels are set up when JAX lowers a call to them: here, no lowering
            from jaxlib import lapack

            lapack.prepare_lapack_call("getrf", np.dtype(np.float64))
        return deserialize_and_load(blob, *_trees(args, n_outputs))
    except Exception:  # another format, truncated, ...: compile it again
        path.unlink(missing_ok=True)
        return None


def _custom_calls_of_header(header: bytes) -> list[str]:
    """The custom-call targets a stored file's first line lists; ValueError if it is not one."""
    magic, _, calls = header.decode().partition(" custom_calls=")
    if magic != _MAGIC:
        raise ValueError("not a reaxopt executable")
    return [c for c in calls.split(",") if c]


def _custom_calls(compiled) -> list[str] | None:
    """The custom-call targets of ``compiled`` (LAPACK's only), or None if it calls others
    (which a later process may not have registered: such an executable is not stored)."""
    calls = sorted(set(re.findall(r'custom_call_target="([^"]+)"', compiled.as_text())))
    return calls if all(c.startswith("lapack_") for c in calls) else None


def _compile(jitted, args: tuple, static: dict):
    """(compiled, fresh): ``jitted`` compiled for ``args``; fresh is False when JAX loaded it
    from its persistent cache (such an executable must not be serialized)."""
    hits = []

    def listen(event: str, **_) -> None:
        if event == _CACHE_HIT_EVENT:
            hits.append(event)

    jax.monitoring.register_event_listener(listen)
    try:
        compiled = jitted.lower(*args, **static).compile()
    finally:
        jax.monitoring.unregister_event_listener(listen)
    return compiled, not hits


def _store(path: Path, compiled, args: tuple, n_outputs: int) -> None:
    """Write ``compiled`` to ``path`` atomically, after a first line naming its custom calls;
    nothing if it cannot be serialized or the folder cannot be written (the cache is an
    optimisation only)."""
    from jax.experimental.serialize_executable import serialize

    try:
        calls = _custom_calls(compiled)
        blob, in_tree, out_tree = serialize(compiled)
        if calls is None or (in_tree, out_tree) != _trees(args, n_outputs):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(f"{_MAGIC} custom_calls={','.join(calls)}\n".encode() + blob)
        os.replace(temporary, path)
    except Exception:
        return


class _FirstRunChecked:
    """A loaded executable whose first call is checked: if it fails, the file it came from is
    removed and the function compiled again (without storing) for that and later calls."""

    def __init__(self, compiled, path: Path, jitted, static: dict):
        self.compiled, self.path, self.jitted, self.static = compiled, path, jitted, static

    def __call__(self, *args):
        if self.path is None:
            return self.compiled(*args)
        try:
            outputs = jax.block_until_ready(self.compiled(*args))
        except jax.errors.JaxRuntimeError:
            self.path.unlink(missing_ok=True)
            self.compiled = self.jitted.lower(*args, **self.static).compile()
            outputs = self.compiled(*args)
        self.path = None
        return outputs


def cached_executable(jitted, args: tuple, *, name: str, n_outputs: int,
                      static: dict | None = None, static_key: str = "",
                      directory: Path | None = None) -> Callable:
    """``jitted`` (a ``jax.jit`` function) compiled for ``args``, with its static keyword
    arguments ``static``: call the result with arrays shaped as ``args``.

    jitted(*args, **static) must return a tuple of ``n_outputs`` arrays; ``name`` and
    ``static_key`` (text) must identify the function and its static arguments (see
    ``executable_key``). Loaded from ``directory`` (default ``cache_directory()``) when an
    earlier process stored it, else traced, compiled and (when freshly compiled) stored;
    without a directory, ``jitted`` itself with ``static`` bound.
    """
    static = static or {}
    directory = cache_directory() if directory is None else directory
    if directory is None:
        return functools.partial(jitted, **static)
    key = executable_key(name, args, static_key, getattr(jitted, "__module__", "reaxopt"))
    run = _LOADED.get(key)
    if run is None:
        path = Path(directory) / f"{name}-{key}.bin"
        compiled = _load(path, args, n_outputs)
        if compiled is not None:
            run = _FirstRunChecked(compiled, path, jitted, static)
        else:
            run, fresh = _compile(jitted, args, static)
            if fresh:
                _store(path, run, args, n_outputs)
    _LOADED[key] = run
    _LOADED.move_to_end(key)
    while len(_LOADED) > _KEEP_LOADED:
        _LOADED.popitem(last=False)
    return run
