"""Config fuzz test: for every key of every section of the search and the retrain config, a value
of the wrong type and a value out of range each end the command with exit 2 and one stderr line
that starts with that key: never a traceback, never exit 0. The commands run in process (their
entry points; tests/test_search_e2e.py runs the installed command once). The keys are read off
the dataclasses, so a key added later is fuzzed too, and a numeric key without a declared range
fails here."""
import dataclasses
import re
import typing

import pytest

from faults import NEEDS_3X3
from nas.bounds import Range, undeclared_numeric_fields, walk_fields
from nas.cli import main as search_main
from nas.commands import retrain as retrain_command
from nas.config import Config, config_fields, load_config
from nas.errors import ConfigError
from nas.retrainer.config import RetrainConfig

# Text keys: a value that is of the right type but names nothing that exists, and the overrides
# that make the key matter (data.root only matters for a dataset read from disk).
BAD_TEXT = {
    "name": ("a/b", ()),
    "data.dataset": ("no_such_dataset", ()),
    "data.root": ("/nonexistent/nas-fuzz", ("data.dataset=imagefolder",)),
    "space.name": ("no_such_space", ()),
    "space.ops": ("[no_such_op]", ()),
    "estimator.name": ("no_such_estimator", ()),
    "derive.exclude": ("[no_such_op]", ()),
    "model.genotype": ("no_such_genotype", ()),
    "imports": ("[no_such_module_nas_fuzz]", ()),
    "space.op_args": ("{no_such_op: {rules: 8}}", ()),
    "optim.regularisers": ("{no_such_regulariser: {}}", ()),
    "optim.hooks": ("{no_such_hook: {}}", ()),
    "estimator.kinds": ("{no_such_kind: ste}", ()),
    "model.op_args": ("{no_such_op: {rules: 8}}", ()),
    "model.args": ("{no_such_keyword: 1}", ()),
    "cost.latency_table": ("/nonexistent/nas-fuzz.json", ("cost.metric=latency",)),
    "cost.device": ("no_such_device", ("cost.metric=latency",)),
}
# keys whose every value of the right type is allowed (switches)
ANY_VALUE = bool


def keys(cls):
    """Every key of ``cls`` with the overrides that select the registry entry declaring it."""
    if cls is Config:
        return [(key, f, tp, select) for key, f, tp, select, _ in config_fields(Config)]
    return [(key, f, tp, ()) for key, f, tp in walk_fields(cls)]


def base(tp):
    """The type inside Optional[...]."""
    if typing.get_origin(tp) is typing.Union:
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def wrong_type(tp) -> str:
    t = base(tp)
    origin = typing.get_origin(t)
    if t is bool:
        return "maybe"
    if t in (int, float) or origin is tuple:
        return "abc"
    if origin is typing.Literal:
        return "[1]"
    if origin is list or t is str:
        return "{a: 1}"
    if origin is dict:
        return "[1]"
    raise AssertionError(f"no wrong-type value for {tp}")


def out_of_range(key, f, tp):
    """(value, extra overrides) outside what ``key`` allows, or None for a switch."""
    t = base(tp)
    if t is ANY_VALUE:
        return None
    if typing.get_origin(t) is typing.Literal:
        return "no_such_choice", ()
    rng: Range = f.metadata.get("range")
    if rng is not None:
        number = float if float in (t, *typing.get_args(t)) else int
        if isinstance(rng.ge, (int, float)):
            v = number(rng.ge - 1)
        elif isinstance(rng.gt, (int, float)):
            v = number(rng.gt - 1)
        elif isinstance(rng.le, (int, float)) or isinstance(rng.lt, (int, float)):
            v = number((rng.le if rng.le is not None else rng.lt) + 1)
        else:  # bounded only by a sibling key
            v = number(10 ** 9)
        return (f"[{v}, {v}]" if typing.get_origin(t) in (list, tuple) else str(v)), ()
    assert key in BAD_TEXT, f"{key}: give it a range (nas.bounds.ranged) or a bad value in BAD_TEXT"
    return BAD_TEXT[key]


CASES = []
for cls, run in ((Config, "search"), (RetrainConfig, "retrain")):
    for key, f, tp, select in keys(cls):
        CASES.append(pytest.param(run, key, wrong_type(tp), select, id=f"{run}-{key}-type"))
        bad = out_of_range(key, f, tp)
        if bad is not None:
            CASES.append(pytest.param(run, key, bad[0], (*select, *bad[1]), id=f"{run}-{key}-range"))


def test_every_numeric_key_declares_a_range():
    entries = {cls for *_, cls in config_fields(Config)}
    assert [k for cls in entries for k in undeclared_numeric_fields(cls)] == []
    assert undeclared_numeric_fields(RetrainConfig) == []


def test_a_numeric_key_without_a_range_is_found():
    @dataclasses.dataclass
    class Section:
        ok: int = dataclasses.field(default=1, metadata={"range": Range(ge=1)})
        forgotten: typing.Optional[float] = None
        flag: bool = False

    @dataclasses.dataclass
    class Top:
        sec: Section = dataclasses.field(default_factory=Section)

    assert undeclared_numeric_fields(Top) == ["sec.forgotten"]


def run_cli(run, argv, out, capsys):
    if run == "search":
        code = search_main([*argv, "--out", str(out), "--quiet"])
    else:
        args = retrain_command.get_args_parser().parse_intermixed_args(
            ["retrain_nb201_digits", *argv, "--out", str(out), "--quiet"])
        code = retrain_command.main(args)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("run, key, value, extra", CASES)
def test_a_bad_value_is_one_line_naming_the_key(run, key, value, extra, tmp_path, capsys):
    code, err = run_cli(run, [*extra, f"{key}={value}"], tmp_path / "o", capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    # the message starts with the key (not just mentions it, as a key's default shown beside another would)
    assert re.match(rf"nas-{run}: error: {re.escape(key)}\b", lines[0]), lines[0]


FLOAT_KEYS = [pytest.param(run, key, f"[{v}, {v}]" if typing.get_origin(base(tp)) in (list, tuple) else v, select,
                           id=f"{run}-{key}-{v}")
              for cls, run in ((Config, "search"), (RetrainConfig, "retrain"))
              for key, f, tp, select in keys(cls) if float in (base(tp), *typing.get_args(base(tp)))
              for v in (".nan", "-.inf")]


@pytest.mark.parametrize("run, key, value, select", FLOAT_KEYS)
def test_only_finite_numbers(run, key, value, select, tmp_path, capsys):
    code, err = run_cli(run, [*select, f"{key}={value}"], tmp_path / "o", capsys)
    assert code == 2 and len(err.splitlines()) == 1 and key in err and "not a finite number" in err, err


@pytest.mark.parametrize("override, message", [
    ("estimator.tau=-1", "estimator.tau=-1.0 is out of range; allowed: [0.01, 10000.0]"),
    ("optim.weights.momentum=5", "optim.weights.momentum=5.0 is out of range; allowed: [0, 1)"),
    ("optim.weights.lr_min=0.1", "optim.weights.lr_min=0.1 is out of range; allowed: [0, optim.weights.lr=0.05]"),
    ("optim.arch.betas=[2, 3]", "optim.arch.betas[0]=2.0 is out of range; allowed: [0, 1)"),
    ("seed=18446744073709551617", "seed=18446744073709551617 is out of range; allowed: [0, 2^63)"),
    ("space.N=0", "space.N=0 is out of range; allowed: >= 1"),
    ("trainer.max_steps_per_epoch=-1", "trainer.max_steps_per_epoch=-1 is out of range; allowed: >= 1"),
    ("optim.warmup_epochs=-2", "optim.warmup_epochs=-2 is out of range; allowed: >= 0"),
    ("trainer.ckpt_every=0", "trainer.ckpt_every=0 is out of range; allowed: >= 1"),
    ("trainer.grad_clip=-1", "trainer.grad_clip=-1.0 is out of range; allowed: >= 0"),
    ("optim.arch.lr=.nan", "optim.arch.lr=nan is not a finite number; allowed: > 0"),
    ("dnf_breast_cancer|data.quantiles=[0.5, 1]", "data.quantiles[1]=1.0 is out of range; allowed: (0, 1)"),
])
def test_the_message_names_the_key_the_value_and_the_range(override, message):
    with pytest.raises(ConfigError) as e:
        config, _, override = override.rpartition("|")  # a config of the entry that declares the key
        load_config(config or None, [override])
    assert str(e.value) == message


def test_ranges_hold_for_configs_built_in_python(tmp_path):
    """nas.search(Config(...)) gets the checks a loaded config gets."""
    import nas
    cfg = load_config(None)
    cfg.space.C = 0
    with pytest.raises(ConfigError, match=r"^space.C=0 is out of range"):
        nas.search(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_the_image_size_must_fit_the_network(tmp_path, capsys):
    """With an op that needs 3x3 feature maps, the nb201 supernet needs 9x9 images (9 -> 5 -> 3)."""
    code, err = run_cli("search", [NEEDS_3X3, "data.resize=1", "space.C=4"], tmp_path / "o", capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "data.resize: 1x1 images do not fit the nb201 supernet" in err and "sizes near it that fit: 9, 10, 11" in err
    code, err = run_cli("search", [NEEDS_3X3, "data.resize=8", "space.C=4"], tmp_path / "o2", capsys)
    assert code == 2 and "data.resize: 8x8 images" in err, err
    code, err = run_cli("search", [NEEDS_3X3, "data.resize=9", "space.C=4", "trainer.epochs=1",
                                   "data.subset=100"], tmp_path / "o3", capsys)
    assert code == 0, err
