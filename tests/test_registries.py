"""The extension points: one op registry for every space, ``nas.register_*``, ``imports:`` in a
run folder (search, derive, resume, retrain, TensorBoard), and the NB201 lookup of a cell with an
op the benchmark does not have."""
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from torch import nn

import nas
from nas.errors import CheckpointError, ConfigError
from nas.estimators import build_estimator
from nas.ops import OPS, build_op, check_op_args, op_options
from nas.registry import Registry
from nas.spaces import get_space
from nas.spaces.nb201 import NB201Genotype

from conftest import REPO

TINY = ["trainer.epochs=2", "trainer.max_steps_per_epoch=3", "space.C=4", "space.N=1", "data.resize=8",
        "data.batch_size=16", "data.subset=120", "device=cpu", "trainer.bn_batches=2"]

USER_OPS = '''
import torch
from torch import nn
import nas


class Scale(nn.Module):
    """ReLU, 3x3 conv and a learned per-channel scale: a candidate the package does not have."""

    def __init__(self, C_in, C_out, stride, affine, gain):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)
        self.scale = nn.Parameter(torch.full((1, C_out, 1, 1), float(gain)))

    def forward(self, x):
        return self.bn(self.conv(torch.relu(x))) * self.scale


@nas.register_op("user_scaled_conv")
def user_scaled_conv(C_in, C_out, stride, affine, *, gain=1.0, **_):
    return Scale(C_in, C_out, stride, affine, gain)
'''


def write_ops(tmp_path):
    path = tmp_path / "user_ops.py"
    path.write_text(USER_OPS)
    return path


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "NAS_CACHE": str(cwd / "cache")})


# ----------------------------------------------------------------------------- the registry itself

def test_registry_refuses_a_second_definition_and_accepts_the_same_one_again():
    reg = Registry("thing", "hint text")

    def a():
        pass
    reg.register("a", a)
    reg.register("a", a)  # the same object
    same_name = type(a)(a.__code__, a.__globals__, "a")  # another function object of the same definition
    same_name.__qualname__ = a.__qualname__
    reg.register("a", same_name)
    assert reg.get("a") is same_name

    def b():
        pass
    with pytest.raises(ConfigError, match="thing 'a' is registered twice") as e:
        reg.register("a", b)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"unknown thing 'c'; known: a \(hint text\)"):
        reg.get("c")


def test_builtin_ops_are_one_table_for_both_spaces():
    nb201 = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    darts = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5"]
    assert nas.list_ops("nb201") == nb201 and nas.list_ops("darts") == darts
    extra = {"dnf_1x1"} | {f"l0_{c}" for c in ("nor_conv_1x1", "nor_conv_3x3", "sep_conv_3x3", "sep_conv_5x5",
                                               "dil_conv_3x3", "dil_conv_5x5")}
    assert set(nb201) | set(darts) | extra <= set(nas.list_ops()) == set(OPS.names())
    x = torch.randn(2, 4, 8, 8)
    for name in set(nb201) | set(darts) | extra:
        for stride, size in ((1, 8), (2, 4)):
            out = build_op(name, 4, 6, stride, False)(x)
            assert out.shape == (2, 6, size, size), (name, stride)


def test_builders_get_only_the_context_they_name():
    seen = {}

    @nas.register_op("test_strict_builder")
    def strict(C_in, C_out, stride, affine, estimator=None):  # no **: an unknown key must not reach it
        seen["estimator"] = estimator
        return nn.Identity()
    est = build_estimator("softmax")
    build_op("test_strict_builder", 4, 4, 1, False, estimator=est, generator=None, pool_bn=True)
    assert seen["estimator"] is est
    assert op_options("dnf_1x1") == ("rules", "lambda_g", "form", "density") and op_options("l0_sep_conv_3x3") == ("l0_lambda",)
    assert op_options("test_strict_builder") == ()


@pytest.mark.parametrize("op_args, msg", [
    ({"dnf_1x1": {"rulez": 3}}, r"space.op_args.dnf_1x1.rulez is not an option of op 'dnf_1x1'; it takes: rules, lambda_g, form, density"),
    ({"nor_conv_3x3": {"k": 1}}, "it takes: no options"),
    ({"conv_9": {"k": 1}}, "unknown op 'conv_9'"),
    ({"dnf_1x1": 3}, "must be a mapping"),
])
def test_op_args_errors_are_one_line(op_args, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        check_op_args(op_args)
    assert "\n" not in str(e.value)


def test_a_builder_that_fails_or_returns_no_module_is_one_line():
    with pytest.raises(ConfigError, match="op 'dnf_1x1' cannot be built"):
        build_op("dnf_1x1", 4, 4, 1, False, rules=0)

    @nas.register_op("test_not_a_module")
    def bad(C_in, C_out, stride, affine, **_):
        return 3
    with pytest.raises(ConfigError, match="returned a int, not an nn.Module"):
        build_op("test_not_a_module", 4, 4, 1, False)


def test_any_registered_op_in_either_space_and_the_genotype_round_trip():
    @nas.register_op("test_conv_5x5")
    def conv5(C_in, C_out, stride, affine, **_):
        return nn.Sequential(nn.ReLU(), nn.Conv2d(C_in, C_out, 5, stride, 2, bias=False), nn.BatchNorm2d(C_out, affine=affine))
    est = build_estimator("softmax")
    nb = get_space("nb201").build_supernet(est, num_classes=3, C=4, N=1, ops=["skip_connect", "sep_conv_3x3", "test_conv_5x5"])
    darts = get_space("darts").build_supernet(est, num_classes=3, C=4, layers=3, ops=["nor_conv_3x3", "test_conv_5x5"])
    for model in (nb, darts):
        model(torch.randn(2, 3, 8, 8)).sum().backward()
    with torch.no_grad():
        nb.arch["cell"].alpha.zero_()
        nb.arch["cell"].alpha[:, 2] = 1.0
    g = nb.genotype()
    assert g.ops == ("test_conv_5x5",) * 6
    space = get_space("nb201")
    assert space.genotype_from_dict(yaml.safe_load(yaml.safe_dump(space.genotype_to_dict(g)))) == g
    net = nas.build_network("nb201", str(g), num_classes=3, C=4, N=1)
    assert isinstance(net.cells[0].ops["0"][1], nn.Conv2d) and net.cells[0].ops["0"][1].kernel_size == (5, 5)
    dg = darts.genotype()
    dspace = get_space("darts")
    assert dspace.genotype_from_dict(yaml.safe_load(yaml.safe_dump(dspace.genotype_to_dict(dg)))) == dg
    with pytest.raises(CheckpointError, match="unknown op 'nope_op'.*imports") as e:
        NB201Genotype.from_string("|nope_op~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert "\n" not in str(e.value)


def test_register_space_and_estimator_check_what_they_register():
    with pytest.raises(ConfigError, match="expected a SearchSpace subclass"):
        nas.register_space("test_bad_space")(object)
    with pytest.raises(ConfigError, match="expected an Estimator subclass"):
        nas.register_estimator("test_bad_estimator")(object)


# ----------------------------------------------------------------------------- imports: and the run folder

@pytest.mark.parametrize("item, msg", [
    ("no_such_module_xyz", "imports: no module named 'no_such_module_xyz'"),
    ("missing.py", "imports: .*missing.py is not a file"),
])
def test_bad_imports_are_one_line(item, msg, tmp_path, monkeypatch):
    from nas.plugins import import_user_modules
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=msg):
        import_user_modules([item])
    (tmp_path / "broken.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"imports: .*broken.py failed at .*broken.py:2 \(RuntimeError: boom\)"):
        import_user_modules(["broken.py"])


@pytest.mark.slow
def test_user_op_search_derive_resume_retrain_and_tensorboard(tmp_path):
    """A user's op reaches every command through imports:, recorded in the run folder."""
    ops = write_ops(tmp_path)
    run = tmp_path / "run"
    first = cli("nas", "quickstart", f"imports=[{ops.name}]", "space.ops=[skip_connect, nor_conv_3x3, user_scaled_conv]",
                "space.op_args={user_scaled_conv: {gain: 0.5}}", *TINY, "trainer.epochs=1", "--out", str(run), "--quiet",
                cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # resume from another folder: the recorded absolute path is imported again
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = cli("nas", "trainer.epochs=2", "--resume", str(run), "--quiet", cwd=other)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["imports"] == [str(ops)]
    record = yaml.safe_load((run / "genotype.yaml").read_text())
    assert record["imports"] == [str(ops)] and record["op_args"] == {"user_scaled_conv": {"gain": 0.5}}
    # derive rebuilds the supernet with the user's op; resolving the genotype imports it again
    d = cli("nas.commands.derive", str(run), "--out", str(tmp_path / "g.yaml"), cwd=other)
    assert d.returncode == 0, d.stderr
    derived = yaml.safe_load((tmp_path / "g.yaml").read_text())
    assert derived.pop("derived")["from"] == "run" and derived == record
    # TensorBoard: the user's op has its probability curve on every edge
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert "probs/cell/1<-0/user_scaled_conv" in acc.Tags()["scalars"]
    # retrain builds the user's op with the searched options, from the run folder alone
    out = tmp_path / "retrain"
    cell = "|user_scaled_conv~0|+|user_scaled_conv~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    (tmp_path / "cell.yaml").write_text(yaml.safe_dump({"space": "nb201", "arch": cell, "imports": [str(ops)],
                                                        "op_args": {"user_scaled_conv": {"gain": 0.5}}}))
    rt = cli("nas.commands.retrain", "retrain_nb201_digits", "--genotype", str(tmp_path / "cell.yaml"), "model.C=4",
             "data.subset=96", "data.test_subset=64", "data.resize=8", "trainer.epochs=1",
             "trainer.max_steps_per_epoch=2", "--out", str(out), "--quiet", cwd=other)
    assert rt.returncode == 0, rt.stderr
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert len([k for k in ckpt["model"] if k.endswith(".scale")]) == 2 * 3  # two user ops in each of 3 cells
    assert ckpt["genotype"]["imports"] == [str(ops)]
    assert ckpt["genotype"]["op_args"] == {"user_scaled_conv": {"gain": 0.5}}


def test_retrained_user_op_uses_the_searched_options(tmp_path):
    from nas.plugins import import_user_modules
    import_user_modules([str(write_ops(tmp_path))])
    cell = "|user_scaled_conv~0|+|none~0|none~1|+|none~0|none~1|user_scaled_conv~2|"
    net = get_space("nb201").build_network(NB201Genotype.from_string(cell), num_classes=3, C=4, N=1,
                                           op_args={"user_scaled_conv": {"gain": 0.25}})
    scales = [m.scale for m in net.modules() if hasattr(m, "scale")]
    assert len(scales) == 6 and all(bool((s == 0.25).all()) for s in scales)


def test_a_run_without_its_imports_is_a_one_line_error(tmp_path):
    cell = "|user_scaled_conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"space": "nb201", "arch": cell, "imports": ["/nowhere/ops.py"]}))
    r = cli("nas.commands.retrain", "retrain_nb201_digits", "--genotype", str(tmp_path / "g.yaml"),
            "--out", str(tmp_path / "rt"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "imports: /nowhere/ops.py is not a file" in r.stderr


def test_lookup_answers_a_cell_with_a_non_benchmark_op_in_one_line(tmp_path):
    cell = "|dnf_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    r = cli("nas.commands.lookup", cell, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        "nas-lookup: error: not in NAS-Bench-201: op dnf_1x1 (the benchmark's cells use none, skip_connect, "
        "nor_conv_1x1, nor_conv_3x3, avg_pool_3x3)")
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"space": "nb201", "arch": cell.replace("dnf_1x1", "my_op")}))
    r = cli("nas.commands.lookup", str(tmp_path / "g.yaml"), cwd=tmp_path)
    assert r.returncode == 2 and "not in NAS-Bench-201: op my_op" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("extra, msg", [({"imports": "ops.py"}, "'imports' must be a list"),
                                         ({"op_args": {"dnf_1x1": 3}}, "'op_args' must map op names")])
def test_a_malformed_genotype_record_is_one_line(extra, msg, tmp_path):
    from nas.retrainer.genotypes import resolve_record
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"space": "nb201", "arch": str(NB201Genotype(("none",) * 6)), **extra}))
    with pytest.raises(CheckpointError, match=msg):
        resolve_record(str(path))
