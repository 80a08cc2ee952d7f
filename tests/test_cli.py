"""The ``reaxopt`` command line: --version, check, convert, and one-paragraph errors for bad input.

Counts printed by ``check`` are compared with counts taken from the files directly (plain line
counting here, independent of the readers). Malformed inputs are copies of the published data
edited in ``tmp_path``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import reaxopt
from reaxopt.cli import main
from input_helpers import assert_input_error, cobalt_copy, edit_line, line_of, run

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
ENTRY_POINT = Path(sys.executable).parent / "reaxopt"


# ---------------------------------------------------------------------------------------------
# Independent counts from the files


def count_structures(geo: Path) -> tuple[int, int]:
    """(structures, atoms) of a BGF file: DESCRP lines and HETATM/ATOM lines."""
    lines = geo.read_text().splitlines()
    return (sum(line.startswith("DESCRP") for line in lines),
            sum(line.startswith(("HETATM", "ATOM ")) for line in lines))


def count_items(trainset: Path) -> dict[str, int]:
    """Data lines per section of a trainset.in (not blank, not a comment)."""
    counts, section = {}, None
    for line in trainset.read_text().splitlines():
        word = line.split("!")[0].strip()
        if not word or word.startswith("#"):
            continue
        upper = word.upper()
        if upper.startswith("END"):
            section = None
        elif section is None:
            section = upper.split()[0].lower()
            counts[section] = 0
        else:
            counts[section] += 1
    return counts


def count_params(params: Path) -> int:
    return sum(1 for line in params.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def summary_block(output: str, title: str) -> str:
    """The lines of one data section of the summary (from its title to the next top-level line)."""
    lines = output.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(title))
    end = next((k for k in range(start + 1, len(lines)) if not lines[k].startswith(" ")),
               len(lines))
    return "\n".join(lines[start:end])


def assert_counts(block: str, geo: Path, trainset: Path) -> None:
    n_structures, n_atoms = count_structures(geo)
    assert re.search(rf"structures: {n_structures};.*total {n_atoms}\b", block), block
    items = count_items(trainset)
    for section, n in items.items():
        assert re.search(rf"\b{section} {n}\b", block), (section, n, block)
    assert f"(total {sum(items.values())})" in block


# ---------------------------------------------------------------------------------------------
# --version, --help


def test_version_in_process():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"reaxopt {reaxopt.__version__}"


def test_installed_entry_point_version_and_error_exit_code(tmp_path):
    """The console script itself, as users run it (a real subprocess)."""
    if not ENTRY_POINT.exists():
        pytest.fail(f"{ENTRY_POINT} is missing: install the project (pip install -e .)")
    done = subprocess.run([str(ENTRY_POINT), "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"reaxopt {reaxopt.__version__}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("force_field: [unclosed\n")
    done = subprocess.run([str(ENTRY_POINT), "check", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and str(bad) in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_python_dash_m_reaxopt_is_the_same_command_line(tmp_path):
    """``python -m reaxopt`` where no script is on the PATH, every command included."""
    done = subprocess.run([sys.executable, "-m", "reaxopt", "--version"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"reaxopt {reaxopt.__version__}"
    done = subprocess.run([sys.executable, "-m", "reaxopt", "evaluate", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "--ffield" in done.stdout


def test_help_documents_every_option_and_points_to_the_key_reference():
    check_help = run("check", "--help").output
    assert "configs/README.md" in check_help
    convert_help = run("convert", "--help").output
    for option in ("--ffield", "--geo", "--trainset", "--params", "--validation-geo",
                   "--validation-trainset", "--output", "--force"):
        assert option in convert_help
    main_help = run("--help").output
    for text in ("--version", "--verbose", "check", "convert"):
        assert text in main_help


# ---------------------------------------------------------------------------------------------
# check on the published data sets


def test_check_cobalt(shared_datasets):
    result = run("check", CONFIGS / "cobalt.yaml")
    assert result.exit_code == 0, result.output
    d = shared_datasets / "cobalt"
    assert_counts(summary_block(result.output, "training data"), d / "geo", d / "trainset.in")
    assert "validation data: none" in result.output
    assert f"parameters to fit: {count_params(d / 'params')} " in result.output


def test_check_disulfide_with_validation(shared_datasets):
    result = run("check", CONFIGS / "disulfide.yaml")
    assert result.exit_code == 0, result.output
    d = shared_datasets / "disulfide"
    assert_counts(summary_block(result.output, "training data"), d / "geo", d / "trainset.in")
    assert_counts(summary_block(result.output, "validation data"), d / "valSet" / "geo",
                  d / "valSet" / "trainset.in")
    assert f"parameters to fit: {count_params(d / 'params')} " in result.output


def test_parameter_table_shows_bounds_from_the_params_file(shared_datasets):
    result = run("check", CONFIGS / "cobalt.yaml")
    assert result.exit_code == 0, result.output
    table = result.output.split("parameters to fit:")[1].splitlines()[3:]
    rows = [line.split() for line in table if line.strip()]
    expected = [line.split()[4:6] for line in (shared_datasets / "cobalt" / "params")
                .read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(rows) == len(expected)
    for row, (lower, upper) in zip(rows, expected):
        # columns: # parameter section value lower upper step line (parameter may hold spaces)
        assert float(row[-4]) == pytest.approx(float(lower))
        assert float(row[-3]) == pytest.approx(float(upper))


def test_quickstart_config_checks():
    cho = REPO / "datasets" / "cho"
    if not (cho / "ffield_cho").exists() or not (cho / "params").exists():
        pytest.skip("the bundled C/H/O dataset (datasets/cho) is not there yet")
    result = run("check", CONFIGS / "quickstart.yaml")
    assert result.exit_code == 0, result.output
    n_frames = (cho / "cho.extxyz").read_text().count("Properties=")
    train = re.search(r"training data:.*?\n  structures: (\d+);", result.output, re.S)
    val = re.search(r"validation data.*?\n  structures: (\d+);", result.output, re.S)
    assert int(train.group(1)) + int(val.group(1)) == n_frames
    assert 0.2 * n_frames <= int(val.group(1)) < n_frames


# ---------------------------------------------------------------------------------------------
# convert


def test_convert_round_trip(shared_datasets, tmp_path):
    d = shared_datasets / "disulfide"
    out = tmp_path / "runs" / "disulfide.yaml"
    out.parent.mkdir()
    result = run("convert", "--ffield", d / "ffield_lit", "--geo", d / "geo",
                 "--trainset", d / "trainset.in", "--params", d / "params",
                 "--validation-geo", d / "valSet" / "geo",
                 "--validation-trainset", d / "valSet" / "trainset.in", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    paths = re.findall(r"^\s*(?:force_field|params|geo|trainset): (.*)$", text, re.M)
    assert len(paths) == 6 and all(not p.startswith("/") for p in paths)
    assert (out.parent / paths[0]).resolve() == (d / "ffield_lit").resolve()
    # short: the inputs and the output directory only; every setting keeps its default
    data = yaml.safe_load(text)
    assert set(data) == {"force_field", "params", "geo", "trainset", "validation", "output_dir"}
    from reaxopt.config import MinimizeConfig, OptimizerConfig, config_from_dict
    converted = config_from_dict(data, out)
    assert (converted.optimizer, converted.minimize) == (OptimizerConfig(), MinimizeConfig())
    checked = run("check", out)
    assert checked.exit_code == 0, checked.output
    direct = run("check", CONFIGS / "disulfide.yaml")
    # identical summaries apart from the config path and the output directory
    strip = lambda s: [line for line in s.splitlines()  # noqa: E731
                       if not line.startswith(("config:", "optimizer:"))]
    assert strip(checked.output) == strip(direct.output)
    assert not list(out.parent.glob(".*"))  # no temporary file left


def test_convert_cobalt_then_check_in_a_subprocess(shared_datasets, tmp_path):
    d = shared_datasets / "cobalt"
    out = tmp_path / "cobalt.yaml"
    result = run("convert", "--ffield", d / "ffield_lit", "--geo", d / "geo", "--trainset",
                 d / "trainset.in", "--params", d / "params", "-o", out)
    assert result.exit_code == 0, result.output
    done = subprocess.run([str(ENTRY_POINT), "check", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_counts(summary_block(done.stdout, "training data"), d / "geo", d / "trainset.in")


def test_convert_refuses_to_overwrite_without_force(shared_datasets, tmp_path):
    d = shared_datasets / "cobalt"
    out = tmp_path / "config.yaml"
    out.write_text("keep me\n")
    args = ["convert", "--ffield", d / "ffield_lit", "--geo", d / "geo", "--trainset",
            d / "trainset.in", "--params", d / "params", "-o", out]
    result = run(*args)
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert "--force" in result.stderr and str(out) in result.stderr
    assert out.read_text() == "keep me\n"
    result = run(*args, "--force")
    assert result.exit_code == 0, result.output
    assert out.read_text().count("geo:") == 1


def test_convert_with_a_missing_input_writes_nothing(shared_datasets, tmp_path):
    d = shared_datasets / "cobalt"
    out = tmp_path / "config.yaml"
    result = run("convert", "--ffield", d / "ffield_lit", "--geo", tmp_path / "nope",
                 "--trainset", d / "trainset.in", "--params", d / "params", "-o", out)
    assert result.exit_code == 2 and "--geo" in result.stderr and "nope" in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Malformed inputs: exit code 2, one paragraph starting "error:", the file and line or key


@pytest.fixture
def cobalt(shared_datasets, tmp_path) -> Path:
    """A config over copies of the cobalt inputs in tmp_path (edit them freely)."""
    return cobalt_copy(shared_datasets, tmp_path)


def test_truncated_ffield(cobalt):
    ff = cobalt.parent / "ffield_lit"
    lines = ff.read_text().splitlines()
    ff.write_text("\n".join(lines[:30]) + "\n")
    assert_input_error(run("check", cobalt), str(ff), "line 30", "truncated")


def test_wrong_atom_count_in_ffield(cobalt):
    ff = cobalt.parent / "ffield_lit"
    number = line_of(ff, r"Nr of atoms")
    line = ff.read_text().splitlines()[number - 1]
    count = int(line.split()[0])
    edit_line(ff, number, line.replace(str(count), str(count + 1), 1))
    # the count line, 3 more header lines, 4 lines per atom: then the bond count comes instead
    # of the extra atom's symbol
    assert_input_error(run("check", cobalt), str(ff), f"line {number + 3 + 4 * count + 1}",
                       "atom count")


def test_unknown_structure_name_in_trainset(cobalt):
    trainset = cobalt.parent / "trainset.in"
    number = line_of(trainset, r"Co_3_atom/3")
    edit_line(trainset, number, "2.00  + Co_3_atoms/3 - Co_1_atom/1   -38.80")
    assert_input_error(run("check", cobalt), str(trainset), f"line {number}", "Co_3_atoms")


def test_trainset_with_a_bad_weight(cobalt):
    trainset = cobalt.parent / "trainset.in"
    number = line_of(trainset, r"Co_2_atom/2")
    edit_line(trainset, number, "heavy  + Co_2_atom/2 - Co_1_atom/1   -29.79")
    assert_input_error(run("check", cobalt), str(trainset), f"line {number}", "heavy")


def test_params_line_pointing_at_a_missing_bond(cobalt):
    params = cobalt.parent / "params"
    n_lines = len(params.read_text().splitlines())
    params.write_text(params.read_text() + "3 7 1 0.1 30.0 100.0\n")  # cobalt has one bond
    assert_input_error(run("check", cobalt), str(params), f"line {n_lines + 1}")


def test_bad_yaml_key_with_suggestion(cobalt):
    cobalt.write_text(cobalt.read_text() + "optimizer:\n  trails: 3\n")
    assert_input_error(run("check", cobalt), str(cobalt), "line 6", "optimizer.trails",
                       "did you mean 'trials'")


def test_wrong_type_for_optimizer_steps(cobalt):
    cobalt.write_text(cobalt.read_text() + "optimizer:\n  steps: [3]\n")
    assert_input_error(run("check", cobalt), str(cobalt), "line 6", "optimizer.steps",
                       "expected an integer")


def test_invalid_optimizer_method(cobalt):
    cobalt.write_text(cobalt.read_text() + "optimizer:\n  method: adam\n")
    assert_input_error(run("check", cobalt), str(cobalt), "optimizer.method", "L-BFGS-B", "SLSQP")


def test_missing_geo_file(cobalt):
    (cobalt.parent / "geo").unlink()
    assert_input_error(run("check", cobalt), str(cobalt), "line 3", "key 'geo'",
                       str(cobalt.parent / "geo"))


def test_yaml_syntax_error(cobalt):
    cobalt.write_text(cobalt.read_text() + "optimizer:\n  steps: 3\n method: SLSQP\n")
    assert_input_error(run("check", cobalt), str(cobalt), "line 7", "YAML syntax error")


def test_element_in_geo_absent_from_the_ffield(cobalt):
    geo = cobalt.parent / "geo"
    number = line_of(geo, r"^HETATM\s+1 Co")
    line = geo.read_text().splitlines()[number - 1]
    edit_line(geo, number, line.replace("Co", "Ni"))
    assert_input_error(run("check", cobalt), str(geo), f"line {number}", "'Ni'", "Co_3_atom")


def test_malformed_hetatm_line(cobalt):
    geo = cobalt.parent / "geo"
    number = line_of(geo, r"^HETATM\s+2 Co")
    edit_line(geo, number, "HETATM     2 Co                  8.73520   six   7.49725    Co  0 0")
    assert_input_error(run("check", cobalt), str(geo), f"line {number}")


def test_lgvdw_requested_for_a_force_field_without_it(cobalt):
    cobalt.write_text(cobalt.read_text() + "energy:\n  lgvdw: true\n")
    assert_input_error(run("check", cobalt), str(cobalt), "key 'energy.lgvdw'", "lgvdw")


def test_structure_name_used_in_two_files(cobalt):
    extxyz = cobalt.parent / "extra.extxyz"
    extxyz.write_text('1\nProperties=species:S:1:pos:R:3 name=Co_2_atom energy=-1.0 '
                      'energy_unit=kcal/mol pbc="F F F"\nCo 0.0 0.0 0.0\n')
    cobalt.write_text(cobalt.read_text() + "structures: [extra.extxyz]\n")
    assert_input_error(run("check", cobalt), str(extxyz), "'Co_2_atom'", "twice",
                       str(cobalt.parent / "geo"))


def test_verbose_adds_the_traceback(cobalt):
    (cobalt.parent / "params").unlink()
    result = run("-v", "check", cobalt)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "error: " in result.stderr
