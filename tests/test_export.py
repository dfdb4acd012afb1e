"""nas-export: every format run against the PyTorch network (NB201 cell, DARTS genotype, DNF and
L0 ops in their derived form, user ops), the standalone model.py in a process without nas, the
errors, and nas-bench --exported."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nas
from nas.api import build_network
from nas.blocks.dnf import DNFOp
from nas.blocks.l0 import ChannelGatedOp
from nas.deploy import TOLERANCE, export_source, parse_formats
from nas.deploy.deps import missing
from nas.deploy.forms import DNFLogic, ScatterChannels, export_form
from nas.deploy.source import Source
from nas.errors import CheckpointError, ConfigError
from nas.ops.common import Zero

HAVE_EXTRA = not missing("onnx", "onnxruntime", "onnxscript")


def need_extra():
    """The ONNX tests skip only outside CI without the extra; in CI (which installs it) they run."""
    if not HAVE_EXTRA:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI must install the export extra: pip install -e '.[export]'")
        pytest.skip("the export extra is not installed (pip install 'nas[export]')")


def randomise_bn(net, seed=0):
    """BN statistics and affine away from their identity start, so that a wrong channel shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


NB201_CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def test_formats_parse_and_unknown_lists_them():
    assert parse_formats("all") == ["onnx", "pt2", "python"]
    assert parse_formats("python,pt2") == ["python", "pt2"]
    with pytest.raises(ConfigError, match=r"unknown export format 'tflite'; formats: onnx, pt2, python, all"):
        parse_formats("tflite")


def test_nb201_cell_all_formats(tmp_path):
    need_extra()
    import onnx
    import onnxruntime as ort
    net = randomise_bn(build_network("nb201", NB201_CELL, num_classes=5, C=4, N=1, in_channels=3))
    res = export_source(Source.of(net, (3, 8, 8)), "all", tmp_path, batch=2, dynamic_batch=True)
    assert set(res.max_abs_diff) == {"onnx", "pt2", "python"}
    assert all(d <= TOLERANCE for d in res.max_abs_diff.values()), res.max_abs_diff
    model = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"] and [o.name for o in sess.get_outputs()] == ["logits"]
    x = torch.randn(7, 3, 8, 8)  # another batch size than the traced one: the batch is dynamic
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = net(x)
    assert torch.allclose(torch.from_numpy(y), ref, atol=TOLERANCE)
    # the pt2 program loads in plain torch and gives the same logits
    prog = torch.export.load(str(tmp_path / "model.pt2")).module()
    assert torch.allclose(prog(x), ref, atol=TOLERANCE)
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["input"]["shape"] == ["batch", 3, 8, 8] and meta["onnx_opset"] == 18


def _python_roundtrip(net, shape, tmp_path):
    res = export_source(Source.of(net, shape), "python,pt2", tmp_path, batch=3)
    assert res.max_abs_diff["python"] <= TOLERANCE and res.max_abs_diff["pt2"] <= TOLERANCE
    source = (tmp_path / "model.py").read_text()
    assert "import nas" not in source and "from nas" not in source
    return source, torch.load(tmp_path / "weights.pt")


def test_darts_genotype_without_aux_head_and_drop_path(tmp_path):
    net = build_network("darts", "DARTS_V2", num_classes=10, C=4, layers=3, auxiliary=True, in_channels=3)
    net.drop_path_prob = 0.3  # retrain's setting: eval mode must not drop paths
    randomise_bn(net)
    source, weights = _python_roundtrip(net, (3, 8, 8), tmp_path)
    assert not any("auxiliary" in k for k in weights)  # the aux head runs only in training
    assert "sep_conv" not in source and "nn.Conv2d(" in source  # ops spelled out as layers
    # a sep_conv is 2 DilConvs, each with one depthwise conv (groups=C), a dil_conv one: all spelled out
    pairs = [p for cell in net.cells for p in (net.genotype.reduce if cell.reduction else net.genotype.normal)]
    assert source.count("groups=") == sum(2 * op.startswith("sep_conv") + op.startswith("dil_conv") for op, _ in pairs)


DNF_L0_CELL = "|dnf_1x1~0|+|l0_nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|l0_sep_conv_3x3~1|l0_nor_conv_1x1~2|"


def _dnf_l0_net():
    torch.manual_seed(0)
    net = build_network("nb201", DNF_L0_CELL, num_classes=4, C=6, N=1, in_channels=3).eval()
    gated = [m for m in net.modules() if isinstance(m, ChannelGatedOp)]
    with torch.no_grad():
        for i, m in enumerate(gated):
            la = m.gate.log_alpha
            la.fill_(5.0)             # open, test-time gate 1
            la[::2] = -5.0            # closed
            la[1] = 0.3 if i % 2 else 5.0   # open with a fractional gate on some ops
        gated[-1].gate.log_alpha.fill_(-5.0)  # every gate of one op closed: the op is Zero
    return randomise_bn(net), gated


def test_dnf_and_l0_ops_export_in_their_derived_smaller_form(tmp_path):
    net, gated = _dnf_l0_net()
    form = export_form(net)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert (form(x) - net(x)).abs().max() <= TOLERANCE
    logic = [m for m in form.modules() if isinstance(m, DNFLogic)]
    dnf = [m for m in net.modules() if isinstance(m, DNFOp)]
    assert len(logic) == len(dnf) == 3   # one per stage
    for lg, op in zip(logic, dnf):
        W, S = op.block.derived()
        M = int(S.sum(1).max())
        assert lg.rules.shape == (2 * op.block.K, op.block.T * M) and lg.select.sum() == S.sum()
    scatter = [m for m in form.modules() if isinstance(m, ScatterChannels)]
    assert len(gated) == 3 * 3 and len(scatter) == 8 and sum(isinstance(m, Zero) for m in form.modules()) == 1
    for s in scatter:  # every other gate closed: the op's last conv computes half the channels
        convs = [m for m in s.op.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
        assert 2 * convs[-1].out_channels == len(s.index) and s.index[::2].eq(len(s.index) // 2).all()
    n_params = lambda m: sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
    assert n_params(form) < n_params(net)
    source, weights = _python_roundtrip(net, (3, 8, 8), tmp_path)
    assert "class DNFLogic(nn.Module)" in source and "# IF " in source  # the rules beside the op
    assert sum(w.numel() for w in weights.values()) < n_params(net)


def test_gated_op_of_another_structure_stays_exact_as_a_mask():
    from nas.deploy.forms import gated_channels

    class Twice(nn.Module):   # not a Sequential: its output channels cannot be traced back
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.conv(x) * 2

    op = ChannelGatedOp(Twice(), 4).eval()
    with torch.no_grad():
        op.gate.log_alpha.copy_(torch.tensor([5.0, -5.0, 0.2, 5.0]))
    form = gated_channels(op)
    assert isinstance(form, ScatterChannels) and form.index is None
    assert form.scale.flatten()[1] == 0 and 0 < form.scale.flatten()[2] < 1
    x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        assert torch.allclose(form(x), op(x), atol=1e-6)


def test_folder_without_weights_asks_for_a_retrain_or_allow_untrained(tmp_path):
    from nas.deploy.source import load_source
    (tmp_path / "genotype.yaml").write_text(f"space: nb201\narch: '{NB201_CELL}'\n")
    with pytest.raises(CheckpointError, match=r"no trained weights; retrain it first \(nas-retrain --genotype .*--allow-untrained"):
        load_source(str(tmp_path))
    src = load_source(str(tmp_path), allow_untrained=True, resolution=8)
    assert src.input_shape == (3, 8, 8) and not src.trained and src.genotype == NB201_CELL


def test_dnf_logic_is_the_rule_by_hand():
    """One output channel, rule 0: in0 AND NOT in1; rule 1: in1 (K=2, two rules kept)."""
    logic = DNFLogic(2, 1, 2, 1).eval()
    with torch.no_grad():
        logic.rules[0, 0] = 1.0     # literal 0: in0
        logic.rules[3, 0] = 1.0     # literal 3: NOT in1
        logic.rules[2, 1] = 1.0     # literal 2: in1
        logic.select.fill_(1.0)
        logic.bn.running_var.fill_(1.0 - logic.bn.eps)   # BN as the identity
    x = torch.tensor([[[[2.0]], [[-1.0]]]])              # B=1, C=2, 1x1
    c0, c1 = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(-1.0))
    r0, r1 = c0 * (1 - c1), c1
    expected = 1 - (1 - r0) * (1 - r1)
    with torch.no_grad():
        assert torch.allclose(logic(x).flatten(), expected.view(1), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["dnf_l0", "darts", "user_op"])
def test_onnx_in_onnx_runtime(which, tmp_path):
    need_extra()
    net = {"dnf_l0": lambda: _dnf_l0_net()[0], "user_op": lambda: _cell("test_export_spelled"),
           "darts": lambda: randomise_bn(build_network("darts", "DARTS_V2", num_classes=10, C=4, layers=3))}[which]()
    res = export_source(Source.of(net, (3, 8, 8)), "onnx", tmp_path, batch=2)
    assert res.max_abs_diff["onnx"] <= TOLERANCE


# ---------------------------------------------------------------- user ops

SHAPE_SCALED_SOURCE = '''class ShapeScaled(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 3, padding=1, bias=False)

    def forward(self, x):
        if x.shape[-1] > 4:
            return self.conv(x) * 2.0
        return self.conv(x)
'''

# the op the test registers is the one its spelling writes out (one text: the two cannot drift)
_namespace = {"nn": nn}
exec(SHAPE_SCALED_SOURCE, _namespace)
ShapeScaled = _namespace["ShapeScaled"]
ShapeScaled.__doc__ = "Reads the input's width in Python: torch.fx cannot trace it, torch.export can."


@nas.register_op("test_export_spelled", spelling=lambda m: (SHAPE_SCALED_SOURCE, f"ShapeScaled({m.conv.in_channels})"))
def _spelled(C_in, C_out, stride, affine, **_):
    return ShapeScaled(C_in)


@nas.register_op("test_export_unspelled")
def _unspelled(C_in, C_out, stride, affine, **_):
    return ShapeScaled(C_in)


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x  # control flow on values: no exporter follows it


@nas.register_op("test_export_data_dependent")
def _data_dependent(C_in, C_out, stride, affine, **_):
    return DataDependent()


@nas.register_op("test_export_plain")
def _plain(C_in, C_out, stride, affine, **_):
    return nn.Sequential(nn.Conv2d(C_in, C_out, 1, bias=False), nn.Hardswish())


def _cell(op):
    return randomise_bn(build_network("nb201", f"|{op}~0|+|test_export_plain~0|nor_conv_1x1~1|+|skip_connect~0|none~1|{op}~2|",
                                      num_classes=3, C=4, N=1, in_channels=3))


def test_user_op_with_a_spelling_and_a_traceable_one_export(tmp_path):
    net = _cell("test_export_spelled")
    source, _ = _python_roundtrip(net, (3, 8, 8), tmp_path)
    assert "class ShapeScaled(nn.Module)" in source and "nn.Hardswish()" in source


def test_user_op_without_spelling_names_itself_and_the_format(tmp_path):
    net = _cell("test_export_unspelled")
    with pytest.raises(ConfigError, match=r"^op 'test_export_unspelled' cannot be exported to python: .*spelling"):
        export_source(Source.of(net, (3, 8, 8)), "python", tmp_path)
    assert export_source(Source.of(net, (3, 8, 8)), "pt2", tmp_path).max_abs_diff["pt2"] <= TOLERANCE


def test_op_no_exporter_follows_names_itself(tmp_path):
    net = _cell("test_export_data_dependent")
    with pytest.raises(ConfigError, match=r"^op 'test_export_data_dependent' cannot be exported to pt2 \("):
        export_source(Source.of(net, (3, 8, 8)), "pt2", tmp_path)


# ---------------------------------------------------------------- a process without nas

NO_NAS = """
import sys
sys.modules['nas'] = None          # 'import nas' raises ImportError in this process
sys.path.insert(0, sys.argv[1])
import torch, model
net = model.load()
x, expected = torch.load(sys.argv[2])
with torch.no_grad():
    print(float((net(x) - expected).abs().max()))
"""


def run_without_nas(export_dir, data_file, script=NO_NAS):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script, str(export_dir), str(data_file)], capture_output=True,
                         text=True, env=env, cwd=str(export_dir), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_python_export_runs_in_a_process_where_nas_cannot_be_imported(tmp_path):
    net, _ = _dnf_l0_net()
    export_source(Source.of(net, (3, 8, 8)), "python", tmp_path / "exp")
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.save((x, net(x)), tmp_path / "data.pt")
    assert float(run_without_nas(tmp_path / "exp", tmp_path / "data.pt")) <= TOLERANCE


# ---------------------------------------------------------------- the command's errors

def run_cli(capsys, module, *argv):
    """``nas-<module> argv`` in this process: (exit code, stdout, stderr)."""
    import importlib
    threads = torch.get_num_threads()
    try:
        mod = importlib.import_module(f"nas.commands.{module}")
        code = mod.main(mod.get_args_parser().parse_args(list(argv)))   # cli() would reset SIGPIPE here
    finally:
        torch.set_num_threads(threads)   # nas-bench --threads sets them for the process
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_one_line_exit_2(capsys):
    code, _, err = run_cli(capsys, "export", NB201_CELL, "--format", "python")
    assert code == 2 and "--allow-untrained" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "export", NB201_CELL, "--format", "tflite")
    assert code == 2 and "formats: onnx, pt2, python, all" in err and len(err.strip().splitlines()) == 1


def test_missing_extra_says_what_to_install(monkeypatch, tmp_path):
    import nas.deploy.deps as deps
    monkeypatch.setattr(deps, "missing", lambda *m: ["onnxruntime"])
    net = build_network("nb201", NB201_CELL, num_classes=3, C=4, N=1)
    with pytest.raises(ConfigError, match=r"pip install 'nas\[export\]'"):
        export_source(Source.of(net, (3, 8, 8)), "onnx", tmp_path)


def test_untrained_genotype_export_and_bench(tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", NB201_CELL, "--format", "python,pt2", "--allow-untrained",
                           "--resolution", "8", "--out", str(tmp_path / "e"))
    assert code == 0, err
    meta = json.loads((tmp_path / "e" / "export.json").read_text())
    assert meta["input"]["shape"] == [1, 3, 8, 8] and meta["trained"] is False and meta["test_acc"] is None
    code, out, err = run_cli(capsys, "bench", "--exported", str(tmp_path / "e"), "--threads", "1", "--steps", "3",
                             "--warmup", "1")
    assert code == 0, err
    assert "| pytorch eager (model.py) |" in out and "median of 3 after 1 warm-up" in out
    code, _, err = run_cli(capsys, "bench", "--exported", str(tmp_path / "e"), "--batch", "8")
    assert code == 2 and "exported for batch 1" in err


# ---------------------------------------------------------------- end to end

ACC_WITHOUT_NAS = """
import sys
sys.modules['nas'] = None
sys.path.insert(0, sys.argv[1])
import torch, model
net = model.load()
x, y = torch.load(sys.argv[2])
with torch.no_grad():
    pred = torch.cat([net(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
print(repr(100.0 * float((pred == y).sum()) / len(y)))
"""


@pytest.mark.slow
def test_search_retrain_export_reproduces_the_retrain(tmp_path, capsys):
    """quickstart search -> nas-retrain -> nas-export --format all: ONNX Runtime predicts as the
    PyTorch network on the digits test set, model.py reproduces the test accuracy without nas."""
    need_extra()
    import numpy as np
    import onnxruntime as ort
    from nas.data import build_eval_loaders
    from nas.deploy.source import load_source
    search = nas.search(nas.load_config("quickstart", "trainer.epochs=1", "data.subset=200"), tmp_path / "search")
    cfg = nas.load_config("retrain_nb201_digits", "trainer.epochs=1", "data.subset=300")
    retrain = nas.retrain(cfg, str(search.out_dir), tmp_path / "retrain")
    code, out, err = run_cli(capsys, "export", str(tmp_path / "retrain"), "--format", "all", "--dynamic-batch")
    assert code == 0, err
    assert "max abs diff" in out and "(ONNX Runtime)" in out
    exp = tmp_path / "retrain" / "export"
    meta = json.loads((exp / "export.json").read_text())
    assert meta["test_acc"] == retrain.metrics["test_acc"] and meta["classes"] == [str(i) for i in range(10)]
    d = cfg.data
    _, test, _ = build_eval_loaders(d.dataset, root=d.root, download=False, resize=d.resize, subset=d.subset,
                                    batch_size=64, workers=0, seed=cfg.seed, device="cpu", augment=False)
    x, y = map(torch.cat, zip(*[(xb, yb) for xb, yb in test]))
    net = load_source(str(tmp_path / "retrain")).network
    with torch.no_grad():
        pt_pred = net(x).argmax(1)
    sess = ort.InferenceSession(str(exp / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = sess.run(["logits"], {"input": np.ascontiguousarray(x.numpy())})
    assert torch.equal(torch.from_numpy(onnx_logits).argmax(1), pt_pred)
    torch.save((x, y), tmp_path / "test.pt")
    acc = float(run_without_nas(exp, tmp_path / "test.pt", ACC_WITHOUT_NAS))
    assert acc == retrain.metrics["test_acc"]
    # the folder without its weights is refused, naming both ways out
    (tmp_path / "retrain" / "checkpoint.pt").unlink()
    code, _, err = run_cli(capsys, "export", str(tmp_path / "retrain"), "--format", "python")
    assert code == 2 and "--allow-untrained" in err and "nas-retrain" in err
