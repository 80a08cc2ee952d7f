"""``reaxopt.executables``: compiled functions kept on disk, loaded by a later process.

A "later process" is imitated by forgetting what this one holds in memory
(``forget_loaded``) and JAX's in-memory caches; the suite's persistent JAX cache (conftest)
is on, as it is when a fit runs before an evaluation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reaxopt import executables


@functools.partial(jax.jit, static_argnames="power")
def _polynomial(x, y, power):
    return (jnp.sum(x ** power * y), x * 3.0 + jnp.cos(y))


ARGS = (np.linspace(0.0, 1.0, 37), np.linspace(1.0, 2.0, 37))


class Compilations:
    """Counts XLA backend compilations while active."""

    def __init__(self):
        self.count = 0

    def _record(self, event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._record)
        return self

    def __exit__(self, *_):
        jax.monitoring.unregister_event_duration_listener(self._record)


def _later_process():
    executables.forget_loaded()
    jax.clear_caches()


def _expected(power):
    return [np.asarray(v) for v in _polynomial(*ARGS, power=power)]


def _call(directory, power):
    run = executables.cached_executable(_polynomial, ARGS, name="polynomial", n_outputs=2,
                                        static={"power": power}, static_key=str(power),
                                        directory=directory)
    return [np.asarray(v) for v in run(*ARGS)]


def test_a_later_process_loads_without_compiling(tmp_path):
    _later_process()
    first = _call(tmp_path, 3)
    assert len(list(tmp_path.glob("polynomial-*.bin"))) == 1
    _later_process()
    with Compilations() as compiled:
        second = _call(tmp_path, 3)
    assert compiled.count == 0
    for a, b, c in zip(first, second, _expected(3)):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)


def test_the_key_follows_shapes_and_static_values(tmp_path):
    base = executables.executable_key("f", ARGS, "3")
    assert executables.executable_key("f", ARGS, "4") != base
    assert executables.executable_key("g", ARGS, "3") != base
    assert executables.executable_key("f", (ARGS[0][:-1], ARGS[1][:-1]), "3") != base
    assert executables.executable_key("f", (ARGS[0].astype(np.float32), ARGS[1]), "3") != base
    assert executables.executable_key("f", tuple(a + 1.0 for a in ARGS), "3") == base


def test_what_jax_loads_from_its_own_cache_is_not_stored(tmp_path):
    """An executable loaded from JAX's persistent cache serializes without its code."""
    _later_process()
    compiled, fresh = executables._compile(_polynomial, ARGS, {"power": 5})
    _later_process()
    again, fresh_again = executables._compile(_polynomial, ARGS, {"power": 5})
    if jax.config.jax_compilation_cache_dir:  # the suite's persistent cache (conftest)
        assert fresh and not fresh_again
    _later_process()
    _call(tmp_path, 5)  # JAX's cache has it: nothing stored
    assert not list(tmp_path.glob("polynomial-*.bin"))


@pytest.mark.parametrize("damage, power", [("garbage", 7), ("loads_but_fails", 9)])
def test_a_stored_file_that_does_not_work_is_compiled_again(tmp_path, damage, power):
    _later_process()
    _call(tmp_path, power)  # a power no other test compiles: fresh, so stored
    (stored,) = tmp_path.glob("polynomial-*.bin")
    if damage == "garbage":
        stored.write_bytes(b"not an executable")
    else:  # what jax 0.10 writes for an executable loaded from its persistent cache
        from jax.experimental.serialize_executable import serialize

        _later_process()
        stored.write_bytes(serialize(_polynomial.lower(*ARGS, power=power).compile())[0])
    _later_process()
    for a, b in zip(_call(tmp_path, power), _expected(power)):
        np.testing.assert_array_equal(a, b)


def test_without_a_directory_it_is_the_jitted_function(tmp_path):
    executables.set_cache_directory(None)
    try:
        run = executables.cached_executable(_polynomial, ARGS, name="polynomial", n_outputs=2,
                                            static={"power": 2})
    finally:
        executables.reset_cache_directory()
    for a, b in zip(run(*ARGS), _expected(2)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_the_key_follows_the_sources_the_module_imports_and_no_others():
    modules = executables.source_modules("reaxopt.single_points")
    # the energy it compiles, the package's __init__ (float64), its own module
    assert {"reaxopt", "reaxopt.single_points", "reaxopt.energy.total", "reaxopt.energy.bonded",
            "reaxopt.forcefield", "reaxopt.packed"} <= set(modules)
    # drivers it does not import: editing them keeps the stored executables
    assert not {"reaxopt.cli", "reaxopt.minimize", "reaxopt.fit", "reaxopt.report"} & set(modules)
    assert executables._imported("from reaxopt.energy import (total,\n    bonded)  # note\n"
                                 "    import reaxopt.cli\nfrom reaxopt import a as b, c\n") == [
        "reaxopt.energy", "reaxopt.energy.total", "reaxopt.energy.bonded", "reaxopt.cli",
        "reaxopt", "reaxopt.a", "reaxopt.c"]
