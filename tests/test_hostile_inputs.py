"""Hostile inputs, caught by the validation pass before anything compiles: exit 2, a message
naming the file and line or key, every problem of an input in one report, nothing written.

Each case edits copies of the published cobalt set (or a small extended-XYZ file) in tmp_path
and runs the command line in this process, with a listener counting XLA compilations.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import jax
import pytest

from input_helpers import (assert_input_error, assert_problems, cobalt_copy, edit_line, line_of,
                           run)

CHO = Path(__file__).resolve().parents[1] / "datasets" / "cho"

_COMPILES: list[float] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: _COMPILES.append(seconds)
    if event == "/jax/core/compile/backend_compile_duration" else None)


@pytest.fixture
def cobalt(shared_datasets, tmp_path) -> Path:
    return cobalt_copy(shared_datasets, tmp_path)


def before_compiling(*args):
    """``reaxopt ARGS``, asserting that nothing was compiled."""
    before = len(_COMPILES)
    result = run(*args)
    assert len(_COMPILES) == before, "the command compiled before reporting bad input"
    return result


def append(path: Path, text: str) -> None:
    """Add lines at the end of a file (whose last line may lack its newline)."""
    path.write_text(path.read_text().rstrip("\n") + "\n" + text)


def write_extxyz(path: Path, frames: list[tuple[str, list[tuple[str, float, float, float]]]],
                 cell: str | None = None) -> None:
    """Frames (comment line, atoms) in extended XYZ; energies in kcal/mol."""
    lines = []
    for comment, atoms in frames:
        lattice = f'Lattice="{cell}" pbc="T T T"' if cell else 'pbc="F F F"'
        lines += [str(len(atoms)),
                  f"Properties=species:S:1:pos:R:3 energy_unit=kcal/mol {lattice} {comment}"]
        lines += [f"{s} {x} {y} {z}" for s, x, y, z in atoms]
    path.write_text("\n".join(lines) + "\n")


def structured_config(folder: Path, extxyz: str = "data.extxyz") -> Path:
    config = folder / "config.yaml"
    config.write_text(f"force_field: {CHO / 'ffield_cho'}\nparams: {CHO / 'params'}\n"
                      f"structures: [{extxyz}]\noutput_dir: out\n")
    return config


WATER = [("O", 0.0, 0.0, 0.0), ("H", 0.96, 0.0, 0.0), ("H", -0.24, 0.93, 0.0)]


# --------------------------------------------------------------------------------- items


def test_geometry_item_naming_an_atom_beyond_the_structure(cobalt):
    trainset = cobalt.parent / "trainset.in"
    append(trainset, "GEOMETRY\nCo_4_atom 0.01 2 9 2.3\nENDGEOMETRY\n")
    number = line_of(trainset, r"Co_4_atom 0.01 2 9")
    assert_input_error(before_compiling("check", cobalt), str(trainset), f"line {number}",
                       "atom 9 of structure 'Co_4_atom', which has 4 atoms")


def test_charge_item_naming_an_atom_beyond_the_structure(cobalt):
    trainset = cobalt.parent / "trainset.in"
    append(trainset, "CHARGE\nCo_4_atom 0.1 7 0.0\nENDCHARGE\n")
    assert_input_error(before_compiling("fit", cobalt), str(trainset),
                       f"line {line_of(trainset, 'Co_4_atom 0.1 7')}", "atom 7")
    assert not (cobalt.parent / "reaxopt_output").exists()


def test_cell_item_of_a_molecule(tmp_path):
    write_extxyz(tmp_path / "data.extxyz", [("name=w energy=-230", WATER)])
    config = structured_config(tmp_path)
    (tmp_path / "t.in").write_text("CELL PARAMETERS\nw 0.1 a 5.0\nENDCELL PARAMETERS\n")
    config.write_text(config.read_text().replace("structures: [data.extxyz]",
                                                 "geo: data.extxyz\ntrainset: t.in"))
    assert_input_error(before_compiling("check", config), "t.in", "line 2", "molecule")


def test_every_missing_structure_is_named_in_one_report(cobalt):
    trainset = cobalt.parent / "trainset.in"
    first = line_of(trainset, r"Co_3_atom/3")
    second = line_of(trainset, r"dimer_sep_5/2")
    edit_line(trainset, first, "2.00  + Co_3_atomz/3 - Co_1_atom/1   -38.80")
    edit_line(trainset, second, "5.00  + dimer_sep_50/2 - Co_1_atom/1   -29.75")
    problems = assert_problems(before_compiling("check", cobalt), 2, "Co_3_atomz",
                               "dimer_sep_50")
    assert f"line {first}" in problems[0] and f"line {second}" in problems[1]


def test_bad_lines_of_several_files_come_in_one_report(cobalt):
    folder = cobalt.parent
    edit_line(folder / "trainset.in", line_of(folder / "trainset.in", "Co_2_atom/2"),
              "heavy + Co_2_atom/2 - Co_1_atom/1 -29.79")
    edit_line(folder / "trainset.in", line_of(folder / "trainset.in", "Co_4_atom/4"),
              "2.0 + Co_4_atom/4 - Co_1_atom/1 minus46")
    append(folder / "params", "3 7 1 0.1 30.0 100.0\n")
    geo = folder / "geo"
    number = line_of(geo, r"^HETATM\s+2 Co")
    edit_line(geo, number, "HETATM     2 Co                  8.73520   six   7.49725    Co  0 0")
    append(cobalt, "optimizer:\n  steps: -1\n  method: adam\n")
    assert_problems(before_compiling("check", cobalt), 2, "optimizer.steps",
                    "optimizer.method")  # the config first: its files are read after it
    cobalt.write_text(cobalt.read_text().replace("  steps: -1\n  method: adam\n", ""))
    problems = assert_problems(before_compiling("check", cobalt), 4, "heavy", "minus46",
                               f"line {number}", "params")
    assert sum("trainset.in" in p for p in problems) == 2


def test_empty_trainset_section_is_a_warning(cobalt):
    trainset = cobalt.parent / "trainset.in"
    append(trainset, "CHARGE\nENDCHARGE\n")
    result = run("check", cobalt)
    assert result.exit_code == 0
    assert "section CHARGE holds no items" in result.stderr


def test_a_trainset_without_items_is_an_error(cobalt):
    (cobalt.parent / "trainset.in").write_text("ENERGY\nENDENERGY\n")
    result = before_compiling("check", cobalt)
    assert result.exit_code == 2 and "no item to fit to" in result.stderr
    assert "holds no items" in result.stderr  # the warnings come first


# --------------------------------------------------------------------------------- parameters


def test_params_selecting_a_line_of_an_undefined_atom_type(cobalt):
    ff = cobalt.parent / "ffield_lit"
    lines = ff.read_text().splitlines()
    bond = line_of(ff, r"Nr of bonds")
    count = int(lines[bond - 1].split()[0])
    new = ["  1  7   1.0 1.0 1.0 1.0 1.0 1.0 1.0 1.0", "  1.0 1.0 1.0 1.0 1.0 1.0 1.0 1.0"]
    lines[bond - 1] = lines[bond - 1].replace(str(count), str(count + 1), 1)
    lines[bond + 1 + 2 * count:bond + 1 + 2 * count] = new
    ff.write_text("\n".join(lines) + "\n")
    result = run("check", cobalt)  # the ignored line alone: a warning, as LAMMPS skips it
    assert result.exit_code == 0 and "atom types above the 1 the file defines" in result.stderr
    params = cobalt.parent / "params"
    append(params, "3 2 1 0.1 30.0 100.0\n")
    assert_input_error(before_compiling("check", cobalt), str(params), "atom type above",
                       "no effect")


def check_with_p_bo2(cobalt: Path, bounds: str):
    """(params, the p_bo2 line's number, ``reaxopt check``) with that line's bounds edited."""
    params = cobalt.parent / "params"
    number = line_of(params, r"^3 1 14 ")
    edit_line(params, number, f"3 1 14 0.1 {bounds}")
    result = run("check", cobalt)
    assert result.exit_code == 0, result.output
    return params, number, result


def test_parameters_with_equal_bounds_are_held_exactly(cobalt):
    params, number, result = check_with_p_bo2(cobalt, "7.3256 7.3256")
    assert "parameters to fit: 11" in result.stdout
    assert f"bond Co-Co p_bo2 = 7.3256 (line {number})" in result.stdout
    params.write_text("".join(f"{' '.join(line.split()[:4])} 1.5 1.5\n"
                              for line in params.read_text().splitlines()))
    result = before_compiling("check", cobalt)
    assert result.exit_code == 2 and "Traceback" not in result.output
    *warned, error = result.stderr.splitlines()
    assert len(warned) == 12 and all("held fixed at 1.5, not at the ffield's" in line
                                     for line in warned)
    assert error.startswith(f"error: {params}: the params file selects no parameter to fit")
    assert "all 12 it selects have equal bounds" in error


def test_bounds_written_upper_first_are_read_as_a_range_with_a_warning(cobalt):
    _, number, result = check_with_p_bo2(cobalt, "9.0 5.0")
    assert f"write the upper bound before the lower one (lines {number})" in result.stderr
    row = next(line for line in result.stdout.splitlines() if "p_bo2" in line)
    assert row.split()[6:8] == ["5", "9"]  # lower, upper


def test_scientific_notation_in_the_config(cobalt):
    append(cobalt, "optimizer:\n  steps: 1e3\n  tolerance: 1E-8\n"
                      "  max_iterations: 2.0e+2\n")
    from reaxopt.config import load_config

    optimizer = load_config(cobalt).optimizer
    assert (optimizer.steps, optimizer.tolerance, optimizer.max_iterations) == (1000, 1e-8, 200)
    cobalt.write_text(cobalt.read_text().replace("2.0e+2", "2.5e0"))
    assert_input_error(run("check", cobalt), "optimizer.max_iterations", "expected an integer")


# --------------------------------------------------------------------------------- geometry


def test_non_finite_reference_energy_and_forces(tmp_path):
    frames = [("name=a energy=-230.0", WATER), ("name=b energy=nan", WATER)]
    write_extxyz(tmp_path / "data.extxyz", frames)
    config = structured_config(tmp_path)
    assert_input_error(before_compiling("fit", config), "data.extxyz", "line 6",
                       "structure 'b'", "reference energy")
    lines = (tmp_path / "data.extxyz").read_text().replace("energy=nan", "energy=-231.0")
    lines = lines.replace("Properties=species:S:1:pos:R:3",
                          "Properties=species:S:1:pos:R:3:forces:R:3")
    text = [line + ("  0 0 inf" if line.startswith("H -0.24") else "  0 0 0")
            if line[:2] in ("O ", "H ") else line for line in lines.splitlines()]
    (tmp_path / "data.extxyz").write_text("\n".join(text) + "\n")
    assert_problems(before_compiling("check", config), 2, "reference forces", "(atom 3)")
    assert not (tmp_path / "out").exists()


def test_text_where_an_energy_belongs(tmp_path):
    write_extxyz(tmp_path / "data.extxyz", [("name=a energy=-230", WATER),
                                            ("name=b energy=abc", WATER)])
    assert_input_error(before_compiling("check", structured_config(tmp_path)), "data.extxyz",
                       "line 6", "frame 'b'", "'abc'", "expected a number")


def test_two_atoms_at_one_position(tmp_path):
    atoms = WATER + [("H", 0.96, 0.0, 0.0)]
    write_extxyz(tmp_path / "data.extxyz", [("name=w energy=-230", WATER),
                                            ("name=x energy=-200", atoms)])
    assert_input_error(before_compiling("fit", structured_config(tmp_path)), "line 6",
                       "structure 'x'", "atoms 2 (H) and 4 (H) are 0 Å apart")


def test_a_cell_too_small_for_its_atoms(tmp_path):
    write_extxyz(tmp_path / "data.extxyz", [("name=w energy=-230", WATER)])
    (tmp_path / "cell.extxyz").write_text(
        '1\nProperties=species:S:1:pos:R:3 energy_unit=kcal/mol name=c energy=-10 '
        'Lattice="0.5 0 0 0 0.5 0 0 0 0.5" pbc="T T T"\nH 0.1 0.1 0.1\n')
    config = structured_config(tmp_path)
    config.write_text(config.read_text().replace("[data.extxyz]", "[data.extxyz, cell.extxyz]"))
    assert_input_error(before_compiling("check", config), "cell.extxyz", "line 1",
                       "0.125 Å^3 per atom", "cell is too small")
    (tmp_path / "cell.extxyz").write_text(
        '2\nProperties=species:S:1:pos:R:3 energy_unit=kcal/mol name=c energy=-10 '
        'Lattice="0.2 0 0 0 8 0 0 0 8" pbc="T T T"\nH 0.1 0.1 0.1\nH 0 4 4\n')
    assert_input_error(before_compiling("check", config), "atom 1 (H) is 0.2 Å from its own "
                       "periodic image: the cell is too small")


def test_closest_pair_counts_periodic_images_of_a_sheared_cell():
    import numpy as np

    from reaxopt.validate import closest_pair

    cell = np.array([[3.0, 0, 0], [2.9, 0.4, 0], [0, 0, 3.0]])
    distance, i, j = closest_pair(np.zeros((1, 3)), cell, 1.0)
    assert (i, j) == (0, 0) and distance == pytest.approx(math.hypot(0.1, 0.4))
    pair = closest_pair(np.array([[0.0, 0, 0], [0.2, 0, 0]]), None, 1.0)
    assert pair[0] == pytest.approx(0.2) and {pair[1], pair[2]} == {0, 1}
    assert closest_pair(np.array([[0.0, 0, 0], [2.0, 0, 0]]), None, 1.0) is None


# --------------------------------------------------------------------------------- outputs


def test_output_dir_under_a_file(cobalt):
    (cobalt.parent / "afile").write_text("x")
    append(cobalt, "output_dir: afile/out\n")
    assert_input_error(before_compiling("check", cobalt), "key 'output_dir'", "is a file")


def test_output_dir_on_a_full_disk(cobalt, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9, 4096))
    assert_input_error(before_compiling("fit", cobalt), "key 'output_dir'", "MiB free")


def test_output_dir_that_cannot_be_written(cobalt):
    """An immutable directory (chattr +i: even root cannot write) or, without chattr, one
    without write permission."""
    import subprocess

    out = cobalt.parent / "locked"
    out.mkdir()
    immutable = subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode == 0
    if not immutable:
        out.chmod(0o555)
    try:
        if os.access(out, os.W_OK) and not immutable:
            pytest.skip("this user can write into a read-only directory, and chattr failed")
        append(cobalt, "output_dir: locked\n")
        assert_input_error(before_compiling("fit", cobalt), "key 'output_dir'",
                           "cannot write into the output directory")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(out)], check=True)
        out.chmod(0o755)


def test_output_dir_holding_an_input(cobalt):
    folder = cobalt.parent
    shutil.move(folder / "ffield_lit", folder / "ffield")
    cobalt.write_text(cobalt.read_text().replace("ffield_lit", "ffield") + "output_dir: .\n")
    before = (folder / "ffield").read_bytes()
    assert_input_error(before_compiling("fit", cobalt), "'ffield'", "over the input")
    assert (folder / "ffield").read_bytes() == before


def test_convert_never_overwrites_its_own_input(shared_datasets, tmp_path):
    d = shared_datasets / "cobalt"
    params = tmp_path / "params"
    shutil.copy(d / "params", params)
    before = params.read_bytes()
    result = before_compiling("convert", "--ffield", d / "ffield_lit", "--geo", d / "geo",
                              "--trainset", d / "trainset.in", "--params", params,
                              "-o", params, "--force")
    assert_input_error(result, "this is the input")
    assert params.read_bytes() == before


def test_convert_drop_missing_comments_out_the_items_and_lists_them(shared_datasets, tmp_path):
    d = shared_datasets / "cobalt"
    trainset = tmp_path / "trainset.in"
    shutil.copy(d / "trainset.in", trainset)
    edit_line(trainset, line_of(trainset, r"Co_3_atom/3"), "2.00 + Co_3_atomz/3 - Co_1_atom/1 -3")
    edit_line(trainset, line_of(trainset, r"dimer_sep_5/2"), "5.0 + dimer_sep_50/2 -29.75")
    args = ["convert", "--ffield", d / "ffield_lit", "--geo", d / "geo", "--trainset", trainset,
            "--params", d / "params", "-o", tmp_path / "c.yaml"]
    assert_problems(before_compiling(*args), 2, "Co_3_atomz", "dimer_sep_50")
    result = run(*args, "--drop-missing")
    assert result.exit_code == 0, result.output
    copy = tmp_path / "c.trainset.in"
    assert f"wrote {copy}, with 2 item(s) commented out" in result.output
    assert "Co_3_atomz" in result.output and "dimer_sep_50" in result.output
    kept = copy.read_text().splitlines()
    dropped = [line for line in kept if line.startswith("# dropped by reaxopt convert")]
    assert len(dropped) == 2 and len(kept) == len(trainset.read_text().splitlines())
    assert "trainset: c.trainset.in" in (tmp_path / "c.yaml").read_text()
    assert run("check", tmp_path / "c.yaml").exit_code == 0


def test_evaluate_checks_its_output_before_computing(shared_datasets, tmp_path):
    d = shared_datasets / "cobalt"
    result = before_compiling("evaluate", "--ffield", d / "ffield_lit", "--geo", d / "geo",
                              "-o", tmp_path)
    assert_input_error(result, "--output", "found a directory")
    result = before_compiling("evaluate", "--ffield", d / "ffield_lit", "--geo", d / "geo",
                              "-o", tmp_path / "no" / "where.jsonl")
    assert_input_error(result, "does not exist")


def test_evaluate_writes_null_for_non_finite_values_and_names_them(tmp_path):
    import json

    atoms = WATER + [("H", 0.96, 0.0, 0.0)]
    write_extxyz(tmp_path / "g.extxyz", [("name=w", WATER), ("name=x", atoms)])
    out = tmp_path / "e.jsonl"
    result = run("evaluate", "--ffield", CHO / "ffield_cho", "--geo", tmp_path / "g.extxyz",
                 "-o", out)
    assert result.exit_code == 0, result.output
    assert "1 structure(s) have non-finite" in result.stderr and ": x" in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]  # strict JSON
    assert "NaN" not in out.read_text()
    assert math.isfinite(records[0]["energy"]) and records[1]["energy"] is None


# --------------------------------------------------------------------------------- last line


def test_an_internal_error_is_one_paragraph_with_the_traceback_in_a_file(cobalt, monkeypatch,
                                                                        tmp_path):
    import reaxopt.inputs

    def broken(config):
        raise ZeroDivisionError("a defect")

    monkeypatch.setattr(reaxopt.inputs, "load_inputs", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = run("check", cobalt)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr
    assert message.startswith("error: reaxopt check failed with an internal error "
                              "(ZeroDivisionError: a defect)") and message.count("\n") == 1
    logs = list((tmp_path / "cache" / "reaxopt" / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in message
    assert "Traceback" in logs[0].read_text() and "a defect" in logs[0].read_text()
