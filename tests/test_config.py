"""The YAML configuration: defaults, path resolution, validation messages, round trip, splits."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from reaxopt.config import (Config, EnergyConfig, LossConfig, MinimizeConfig, OptimizerConfig,
                            Split, load_config)
from reaxopt.errors import InputError
from reaxopt.inputs import DataSet, StructuredSet, split_data
from reaxopt.structure import Structure

INPUT_FILES = ("ffield", "params", "geo", "trainset.in", "a.extxyz", "b.extxyz")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with (empty) input files: config validation only checks that they exist."""
    data = tmp_path / "data"
    data.mkdir()
    for name in INPUT_FILES:
        (data / name).write_text("")
    return tmp_path


BASE = """\
force_field: data/ffield
params: data/params
geo: data/geo
trainset: data/trainset.in
"""


def write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def error_of(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_config(path)
    return info.value


def test_minimal_config_gets_documented_defaults_and_resolved_paths(folder):
    config = load_config(write(folder, BASE))
    assert config.force_field == folder / "data" / "ffield"
    assert config.training.geo == folder / "data" / "geo"
    assert config.training.trainset == folder / "data" / "trainset.in"
    assert config.training.structures == ()
    assert config.output_dir == folder / "reaxopt_output"
    assert config.validation is None and config.split is None
    assert config.optimizer == OptimizerConfig()
    assert config.minimize == MinimizeConfig()
    assert config.loss == LossConfig()
    assert config.energy == EnergyConfig()
    assert config.energy.lgvdw is None
    assert config.energy.enobonds is True
    assert config.clusters == "auto"


def test_paths_resolve_from_the_config_directory_not_the_working_directory(folder, monkeypatch):
    sub = folder / "runs"
    sub.mkdir()
    path = write(sub, BASE.replace("data/", "../data/") + "output_dir: out\n")
    monkeypatch.chdir(folder / "data")
    config = load_config(Path("..") / "runs" / "config.yaml")
    assert config.params == (folder / "data" / "params",)
    assert config.output_dir == sub / "out"
    assert config.path == path


def test_every_option_is_read(folder):
    text = BASE + """\
structures:
  - data/a.extxyz
  - {path: data/b.extxyz, energy_unit: eV, weight_energy: 0.5, weight_forces: 2}
optimizer:
  method: slsqp
  steps: 0
  trials: 3
  init: educated
  seed: 7
  max_iterations: 50
  tolerance: 1e-8
  random_search: 20
  regularization: 0.01
  trust_radius: 0.3
  early_stopping: 4
validation: {fraction: 0.5}
minimize: {steps: 10, rms_force: 0.2, method: fire, carry: true}
loss: {energy_weight: 2.0, forces_weight: 0.5, energy_mode: absolute}
energy: {lgvdw: true, enobonds: false}
clusters: 3
"""
    config = load_config(write(folder, text))
    a, b = config.training.structures
    assert a.path == folder / "data" / "a.extxyz" and a.energy_unit is None
    assert a.weight_energy is None and a.weight_forces is None
    assert (b.energy_unit, b.weight_energy, b.weight_forces) == ("eV", 0.5, 2.0)
    assert config.optimizer == OptimizerConfig("SLSQP", 0, 3, "educated", 7, 50, 1e-8, 20, 0.01,
                                               0.3, 4)
    assert config.minimize == MinimizeConfig(10, 0.2, "fire", True)
    assert config.loss == LossConfig(2.0, 0.5, "absolute")
    assert config.energy == EnergyConfig(True, False)
    assert config.clusters == 3


def test_dump_writes_a_config_that_loads_back_identically(folder):
    text = BASE + """\
structures: [{path: data/a.extxyz, energy_unit: Hartree}]
validation: {fraction: 0.25, seed: 3, by: family}
optimizer: {steps: 2, tolerance: 1.0e-7}
"""
    config = load_config(write(folder, text))
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    config.dump(elsewhere / "resolved.yaml")
    again = load_config(elsewhere / "resolved.yaml")
    assert dataclasses.replace(again, path=config.path) == config
    assert again.split == Split(0.25, 3, "family")
    assert not list(elsewhere.glob(".*tmp*"))  # the atomic write left no temporary file


def test_classic_validation_files(folder):
    text = BASE + "validation:\n  geo: data/geo\n  trainset: data/trainset.in\n"
    config = load_config(write(folder, text))
    assert config.validation.geo == folder / "data" / "geo"
    assert config.split is None


@pytest.mark.parametrize("text, key, line, expected", [
    (BASE + "optimiser:\n  steps: 3\n", "optimiser", 5, "did you mean 'optimizer'"),
    (BASE + "optimizer:\n  metod: SLSQP\n", "optimizer.metod", 6, "did you mean 'method'"),
    (BASE + "optimizer:\n  steps: five\n", "optimizer.steps", 6, "expected an integer"),
    (BASE + "optimizer:\n  steps: 2.5\n", "optimizer.steps", 6, "expected an integer"),
    (BASE + "optimizer:\n  steps: true\n", "optimizer.steps", 6, "expected an integer"),
    (BASE + "optimizer:\n  steps: -1\n", "optimizer.steps", 6, "at least 0"),
    (BASE + "optimizer:\n  trials: 0\n", "optimizer.trials", 6, "at least 1"),
    (BASE + "optimizer:\n  method: BFGS\n", "optimizer.method", 6, "L-BFGS-B, SLSQP"),
    (BASE + "optimizer:\n  init: guess\n", "optimizer.init", 6, "fixed, educated, random"),
    (BASE + "optimizer:\n  tolerance: 0\n", "optimizer.tolerance", 6, "greater than 0"),
    (BASE + "optimizer:\n  trust_radius: 2\n", "optimizer.trust_radius", 6, "at most 1.0"),
    (BASE + "optimizer: 5\n", "optimizer", 5, "expected a mapping"),
    (BASE + "optimizer:\n  early_stopping: -2\n", "optimizer.early_stopping", 6, "at least 0"),
    (BASE + "optimizer:\n  early_stopping: 3\n", "optimizer.early_stopping", 6,
     "no 'validation'"),
    (BASE + "minimize:\n  method: lbfgs\n", "minimize.method", 6, "fire"),
    (BASE + "loss:\n  energy_mode: total\n", "loss.energy_mode", 6, "relative, absolute"),
    (BASE + "loss:\n  forces_weight: -1\n", "loss.forces_weight", 6, "at least 0"),
    (BASE + "energy:\n  lgvdw: maybe\n", "energy.lgvdw", 6, "true or false"),
    (BASE + "energy:\n  enobonds: null\n", "energy.enobonds", 6, "found nothing"),
    (BASE + "energy:\n  hbond_cutoff: 6.0\n", "energy.hbond_cutoff", 6, "lgvdw, enobonds"),
    (BASE + "clusters: many\n", "clusters", 5, "'auto'"),
    (BASE + "clusters: 0\n", "clusters", 5, "at least 1"),
    (BASE + "structures:\n  - {path: data/a.extxyz, energy_unit: Ry}\n",
     "structures[0].energy_unit", 6, "kcal/mol"),
    (BASE + "structures:\n  - {paht: data/a.extxyz}\n", "structures[0].paht", 6,
     "did you mean 'path'"),
    (BASE + "validation: {fraction: 1.5, by: family}\n", "validation.fraction", 5,
     "between 0 and 1"),
    (BASE + "validation: {fraction: 0.2}\n", "validation.fraction", 5, "'structures'"),
    (BASE + "validation: {geo: data/geo, trainset: data/trainset.in, fraction: 0.2}\n",
     "validation", 5, "not both"),
    ("force_field: data/ffield\nparams: data/params\ngeo: data/geo\n", "trainset", None,
     "without 'trainset'"),
    ("force_field: data/ffield\ngeo: data/geo\ntrainset: data/trainset.in\n", "params", None,
     "required key 'params' is missing"),
])
def test_bad_values_name_the_file_line_key_and_expectation(folder, text, key, line, expected):
    path = write(folder, text)
    err = error_of(path)
    assert err.file == str(path)
    assert err.key == key
    assert err.line == line
    assert expected in err.message
    assert str(path) in str(err) and f"'{key}'" in str(err)


def test_missing_file_names_key_and_resolved_path(folder):
    path = write(folder, BASE.replace("data/geo", "data/nowhere.bgf"))
    err = error_of(path)
    assert err.key == "geo" and err.line == 3
    assert str(folder / "data" / "nowhere.bgf") in err.message


def test_yaml_syntax_error_names_the_line(folder):
    path = write(folder, BASE + "optimizer:\n  steps: [1, 2\nloss: {}\n")
    err = error_of(path)
    assert "YAML syntax error" in err.message
    assert err.file == str(path) and err.line is not None and err.line >= 6


def test_duplicate_keys_are_errors(folder):
    err = error_of(write(folder, BASE + "geo: data/geo\n"))
    assert err.key == "geo" and err.line == 5 and "twice" in err.message


def test_empty_or_non_mapping_config(folder):
    assert "empty" in error_of(write(folder, "# nothing\n")).message
    assert "mapping" in error_of(write(folder, "- a\n- b\n")).message
    assert "not found" in error_of(folder / "absent.yaml").message


def test_no_training_inputs_is_an_error(folder):
    err = error_of(write(folder, "force_field: data/ffield\nparams: data/params\n"))
    assert "no training inputs" in err.message


def test_number_written_without_a_dot_is_a_number(folder):
    config = load_config(write(folder, BASE + "optimizer:\n  tolerance: 1e-9\n"))
    assert config.optimizer.tolerance == 1e-9


# ---------------------------------------------------------------------------------------------
# Validation split of structured inputs


def _structures(families: list[str], prefix: str) -> list[Structure]:
    return [Structure(f"{prefix}{k}", ["H", "H"], np.zeros((2, 3)), energy=float(k),
                      extra={"family": fam}) for k, fam in enumerate(families)]


def _data() -> DataSet:
    a = _structures(["scan"] * 6 + ["mol"] * 3 + ["path"] * 5, "a")
    b = _structures(["rattle"] * 4 + ["mol2"] * 2, "b")
    return DataSet(structured=[StructuredSet(Path("a.extxyz"), a, 1.0, 0.1),
                               StructuredSet(Path("b.extxyz"), b, 2.0, 0.5)])


def _families(data: DataSet) -> set[str]:
    return {s.extra["family"] for s in data.structures}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_by_family_keeps_families_whole_and_reaches_the_fraction(seed):
    data = _data()
    train, val = split_data(data, Split(0.3, seed, "family"), Path("c.yaml"))
    names = lambda d: {s.name for s in d.structures}  # noqa: E731
    assert names(train) | names(val) == names(data) and not names(train) & names(val)
    assert not _families(train) & _families(val)
    assert len(val.structures) >= 0.3 * len(data.structures)
    # groups are moved only until the fraction is reached: without the largest held-out
    # family (at least as large as the last one moved) validation falls short of it
    sizes = {f: sum(s.extra["family"] == f for s in data.structures) for f in _families(val)}
    assert len(val.structures) - max(sizes.values()) < 0.3 * len(data.structures)
    # weights stay with their file
    for st in val.structured + train.structured:
        assert (st.weight_energy, st.weight_forces) == ((1.0, 0.1) if st.path.name == "a.extxyz"
                                                         else (2.0, 0.5))


def test_split_is_reproducible_and_depends_on_the_seed():
    runs = {seed: tuple(s.name for s in split_data(_data(), Split(0.25, seed, None),
                                                      Path("c.yaml"))[1].structures)
            for seed in range(6)}
    assert runs[0] == tuple(s.name for s in split_data(_data(), Split(0.25, 0, None),
                                                       Path("c.yaml"))[1].structures)
    assert len(set(runs.values())) > 1
    # one structure per group: exactly a quarter of the 20 structures is held out
    assert all(len(v) == math.ceil(0.25 * 20) for v in runs.values())


def test_split_by_a_missing_key_names_the_structure():
    with pytest.raises(InputError) as info:
        split_data(_data(), Split(0.3, 0, "temperature"), Path("c.yaml"))
    assert info.value.key == "validation.by" and "a0" in info.value.message


def test_split_needs_two_groups():
    data = DataSet(structured=[StructuredSet(Path("a"), _structures(["one"] * 4, "x"), 1.0, 0.1)])
    with pytest.raises(InputError, match="only one"):
        split_data(data, Split(0.5, 0, "family"), Path("c.yaml"))


def test_config_is_frozen(folder):
    config = load_config(write(folder, BASE))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optimizer.steps = 3  # type: ignore[misc]
    assert isinstance(config, Config)


def test_energy_keywords_reach_the_force_field(folder):
    """energy.enobonds sets LAMMPS's keyword; energy.lgvdw must match the force field's format."""
    from reaxopt.fit import forcefield_for
    from reaxopt.io.ffield import read_ffield

    ffield = read_ffield(Path(__file__).resolve().parents[1] / "datasets" / "cho" / "ffield_cho")
    config = load_config(write(folder, BASE + "energy: {enobonds: false}\n"))
    _, topology = forcefield_for(ffield, config)
    assert topology.enobonds is False and topology.lgvdw is False
    _, topology = forcefield_for(ffield, load_config(write(folder, BASE)))
    assert topology.enobonds is True
    with pytest.raises(InputError) as error:
        forcefield_for(ffield, load_config(write(folder, BASE + "energy: {lgvdw: true}\n")))
    assert error.value.key == "energy.lgvdw" and "has no low-gradient" in str(error.value)


def _spec_lines(path, specs) -> list:
    """Per line of the params file ``path``: the (section, entry, parameter) of ``specs`` read
    from that line, or None."""
    by_line = {s.line: (s.section, s.entry, s.parameter) for s in specs}
    return [by_line.get(k + 1) for k in range(len(Path(path).read_text().splitlines()))]


def test_params_may_be_a_list_of_files_fitted_together(folder, tmp_path):
    """The disulfide set's params (69 lines) plus, in a second file, the 18 lines of the
    published 87-parameter selection (params_orig) it lacks: fitted together, as
    configs/disulfide87.yaml's params_orig selects them; a parameter selected in two files is
    an error naming the second file and line; the resolved config writes the list back."""
    from reaxopt.io.ffield import read_ffield
    from reaxopt.io.params import read_params_files

    repo = Path(__file__).resolve().parents[1]
    shipped = load_config(repo / "configs" / "disulfide87.yaml")
    shared = repo.parent / "shared" / "datasets" / "disulfide"
    assert shipped.params == (shared / "params_orig",)  # as written: a link stays
    ff = read_ffield(shipped.force_field)
    published = read_params_files(shipped.params, ff)
    assert len({(s.section, s.entry, s.parameter) for s in published}) == 87
    own = {(s.section, s.entry, s.parameter) for s in read_params_files((shared / "params",), ff)}
    extra = tmp_path / "extra.params"
    extra.write_text("".join(line for line, s in zip(
        (shared / "params_orig").read_text().splitlines(keepends=True), _spec_lines(
            shared / "params_orig", published)) if s is not None and s not in own))
    files = (shared / "params", extra)
    specs = read_params_files(files, ff)
    assert len(specs) == 87
    assert [s.line for s in specs[69:]] == list(range(1, 19))
    assert {(s.section, s.entry, s.parameter) for s in specs} == {
        (s.section, s.entry, s.parameter) for s in published}
    again = tmp_path / "again.params"
    again.write_text("  3  4 13  0.0050  -0.3000  -0.0001\n")
    with pytest.raises(InputError) as info:
        read_params_files(files + (again,), ff)
    assert info.value.file == str(again) and info.value.line == 1
    assert "selected twice" in info.value.message and "params" in info.value.message
    dumped = write(folder, BASE.replace("params: data/params",
                                        "params: [data/params, data/ffield]"))
    both = load_config(dumped)
    assert both.params == (folder / "data" / "params", folder / "data" / "ffield")
    out = tmp_path / "resolved.yaml"
    both.dump(out)
    assert load_config(out).params == both.params
    assert "expected a path or a list" in error_of(write(folder, BASE.replace(
        "params: data/params", "params: []"))).message
