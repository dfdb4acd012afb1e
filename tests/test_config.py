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
