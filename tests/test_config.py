"""Config loading, _base_ inheritance, dotted overrides and every error path."""
import pytest
import yaml

from nas.config import Config, apply_overrides, dump_config, from_dict, load_config, load_yaml, to_dict
from nas.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_loads_with_defaults():
    cfg = load_config()
    assert cfg.name == "quickstart"
    assert cfg.space.name == "nb201" and cfg.estimator.name == "softmax"
    assert cfg.optim.mode == "alternating" and cfg.optim.order == 1
    # keys the quickstart does not set keep the ALGORITHMS.md defaults
    assert cfg.optim.arch.betas == (0.5, 0.999)
    assert cfg.trainer.grad_clip == 5.0


def test_base_inheritance_and_deep_merge(tmp_path):
    write(tmp_path / "base.yaml", {"name": "b", "data": {"batch_size": 32, "resize": 16}, "trainer": {"epochs": 3}})
    write(tmp_path / "child.yaml", {"_base_": "base.yaml", "data": {"batch_size": 8}})
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.name == "b"
    assert cfg.data.batch_size == 8 and cfg.data.resize == 16  # merged, not replaced
    assert cfg.trainer.epochs == 3


def test_base_list_later_wins_and_named_base(tmp_path):
    write(tmp_path / "a.yaml", {"seed": 1, "name": "a"})
    write(tmp_path / "b.yaml", {"seed": 2})
    write(tmp_path / "c.yaml", {"_base_": ["a.yaml", "b.yaml"]})
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.seed, cfg.name) == (2, "a")
    write(tmp_path / "d.yaml", {"_base_": "quickstart", "seed": 7})  # a name in configs/
    assert load_config(tmp_path / "d.yaml").space.C == load_config().space.C


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "x.yaml", {"_base_": "y.yaml"})
    write(tmp_path / "y.yaml", {"_base_": "x.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml(tmp_path / "x.yaml")


def test_overrides_parse_values_and_nest():
    cfg = load_config(None, ["trainer.epochs=5", "estimator.name=gumbel_hard", "data.root=/x",
                             "optim.arch.betas=[0.9, 0.99]", "space.ops=[none, nor_conv_3x3]",
                             "data.download=true", "estimator.tau=2"])
    assert cfg.trainer.epochs == 5 and cfg.estimator.name == "gumbel_hard"
    assert cfg.data.root == "/x" and cfg.data.download is True
    assert cfg.optim.arch.betas == (0.9, 0.99)
    assert cfg.space.ops == ["none", "nor_conv_3x3"]
    assert cfg.estimator.tau == 2.0 and isinstance(cfg.estimator.tau, float)
    assert load_config(None, ["optim.arch.lr=1e-3"]).optim.arch.lr == 1e-3  # YAML reads 1e-3 as a string


@pytest.mark.parametrize("override, pattern", [
    ("trainer.epoch=5", r"unknown config key 'trainer.epoch' \(did you mean 'trainer.epochs'\?\)"),
    ("foo=1", r"unknown config key 'foo'"),
    ("trainer.epochs=five", r"trainer.epochs: expected int, got 'five'"),
    ("trainer.epochs=1.5", r"trainer.epochs: expected int"),
    ("data.download=maybe", r"data.download: expected bool"),
    ("optim.mode=bilevel", r"optim.mode: 'bilevel' is not allowed; allowed: 'alternating', 'joint'"),
    ("optim.order=3", r"optim.order: 3 is not allowed"),
    ("device=tpu", r"device: 'tpu' is not allowed; allowed: 'auto', 'cpu', 'cuda'"),
    ("optim.arch.betas=[1]", r"optim.arch.betas: expected a list of 2 numbers"),
    ("data=3", r"data: expected a mapping"),
])
def test_bad_overrides_give_one_line_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_override_without_equals_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="is not key=value"):
        apply_overrides({}, ["trainer.epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_and_non_mapping(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_dump_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["trainer.epochs=3", "space.ops=[none, skip_connect]"])
    dump_config(cfg, tmp_path / "c.yaml")
    again = from_dict(Config, yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)


# ----------------------------------------------------------------------------- options of the entries

def test_a_section_takes_the_keys_its_entry_declares():
    from nas.config import SpaceConfig
    cfg = load_config(None, ["space.name=darts", "space.layers=5", "estimator.name=bop", "estimator.gamma=0.01"])
    assert (cfg.space.layers, cfg.estimator.gamma) == (5, 0.01)
    assert "N" not in to_dict(cfg)["space"] and "tau" not in to_dict(cfg)["estimator"]
    with pytest.raises(ConfigError, match=r"^unknown config key 'space\.layers'; allowed under 'space': name, "):
        load_config(None, ["space.layers=5"])  # nb201 has no layers
    with pytest.raises(ConfigError, match=r"^unknown config key 'estimator\.gamma'"):
        load_config(None, ["estimator.gamma=0.01"])
    with pytest.raises(ConfigError, match=r"^unknown config key 'derive\.exclude'; allowed under 'derive': max_skip, min_skip$"):
        load_config(None, ["space.name=darts", "derive.exclude=[none]"])
    # null means the entry's default; a section built in Python is its entry's class
    assert load_config(None, ["estimator.name=gumbel_hard", "estimator.tau=null"]).estimator.tau == 10.0
    assert SpaceConfig(name="darts", C=8).layers == 8


def test_old_keys_are_read_with_one_line_warning_each(capsys):
    from nas import options
    options._warned.clear()
    cfg = load_config("nb201_cifar10_cpu", ["estimator.derive_max_skip=2", "space.channels_last=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nas: deprecated config key estimator.derive_max_skip: use derive.max_skip (the old key is "
                   "read for one more release)",
                   "nas: deprecated config key space.channels_last: use trainer.channels_last (the old key is "
                   "read for one more release)"]
    assert (cfg.derive.max_skip, cfg.derive.exclude, cfg.trainer.channels_last) == (2, ["none"], False)
    cfg = load_config("program_maze", ["space.program.lines=4", "data.maze.count=9"])
    assert (cfg.space.lines, cfg.space.steps, cfg.data.count, cfg.data.width) == (4, 45, 9, 5)
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_an_old_key_in_a_child_config_overrides_its_bases_new_one(tmp_path, capsys):
    """The old key is what the child says, even at the old default ([] and null): the base's
    ``derive: {exclude: [none], max_skip: 1}`` gives way, as the new keys in the child would."""
    child = tmp_path / "child.yaml"
    child.write_text("_base_: nb201_cifar10_cpu\nestimator: {derive_exclude: [], derive_max_skip: null}\n")
    cfg = load_config(child)
    assert (cfg.derive.exclude, cfg.derive.max_skip) == ([], None)
    child.write_text("_base_: nb201_cifar10_cpu\nestimator: {derive_max_skip: 2}\n")
    cfg = load_config(child)
    assert (cfg.derive.exclude, cfg.derive.max_skip) == (["none"], 2)
    cfg = load_config("nb201_cifar10_cpu", ["estimator.derive_exclude=[]"])  # an override likewise
    assert (cfg.derive.exclude, cfg.derive.max_skip) == ([], 1)
    capsys.readouterr()


def test_an_old_run_config_loads_as_it_ran(capsys):
    """A config.yaml of the previous release holds every entry's keys (the union), at defaults."""
    from nas import options
    from nas.config import from_dict
    options._warned.clear()
    old = {"name": "quickstart", "seed": 0,
           "data": {"dataset": "digits", "resize": 16, "root": None, "download": False, "subset": None,
                    "train_portion": 0.5, "batch_size": 64, "workers": 0, "stream": False, "augment": True,
                    "dnf": {"features": 10, "clauses": 3, "width": 3, "noise": 0.0, "samples": 2000},
                    "maze": {"width": 5, "height": 3, "count": 15, "max_moves": 14, "decay": 0.7, "train": 2000,
                             "test": 1000},
                    "quantiles": [0.25, 0.5, 0.75]},
           "space": {"name": "program", "C": 16, "N": 5, "layers": 8, "steps": 4, "multiplier": 4,
                     "stem_multiplier": 3, "ops": None, "affine": False, "gates": "none", "l0_lambda": 1e-4,
                     "gate_estimator": "hard_concrete", "rules": 64, "lambda_g": 1e-4,
                     "program": {"lines": 3, "steps": 45, "look_hidden": 32, "halt": "value"}, "op_args": {},
                     "args": {}, "fused": True, "channels_last": True, "partial_channels": 1, "group_convs": None},
           "estimator": {"name": "gumbel", "tau": None, "tau_end": None, "schedule": None, "per": None,
                         "noise": "none", "sigma0": 0.2, "sigma_max": 0.5, "noise_lr": None, "gamma": None,
                         "gamma_end": None, "threshold": None, "threshold_end": None, "single_path": None,
                         "derive_exclude": [], "derive_max_skip": None},
           "trainer": {"channels_last": False}}
    cfg = from_dict(Config, {**old, "data": {**old["data"], "dataset": "maze", "resize": None}})
    assert capsys.readouterr().err == ""  # old defaults say nothing: no warning
    assert (cfg.space.steps, cfg.space.lines, cfg.data.width) == (45, 3, 5)  # the program's steps, not darts's
    assert (cfg.estimator.tau, cfg.estimator.tau_end) == (1.0, 0.03)  # null was "the estimator's default"
    assert cfg.trainer.channels_last is None and to_dict(cfg)["derive"] == {}
    digits = from_dict(Config, {**old, "space": {**old["space"], "name": "nb201"}})
    assert digits.space.N == 5 and not hasattr(digits.data, "features")


def test_the_reference_lists_every_entry_key_with_type_default_range_and_help():
    from nas.config import option_reference
    ref = option_reference()
    assert {"space: darts", "estimator: bop", "data: maze", "derive: nb201"} <= set(ref)
    rows = {row.key: row for row in ref["space: darts"]}
    assert (rows["space.multiplier"].default, rows["space.multiplier"].range) == (4, "[1, steps]")
    assert rows["space.layers"].help == "cells in the search network" and rows["space.layers"].type == "int"
    assert [r.key for r in ref["derive: darts"]] == ["derive.max_skip", "derive.min_skip"]
    assert all(row.help for name, table in ref.items() if name != "fixed" for row in table)
