"""tools/alpha_trajectory.py: per-epoch cells and the cell of the last epochs' change of α, read
back from a run's TensorBoard log."""
import importlib.util
import math
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from nas.benchmarks.trajectory import argmax_ops, nb201_string, trajectory
from nas.errors import CheckpointError
from nas.spaces.nb201 import EDGE_NAMES, OPS

REPO = Path(__file__).resolve().parents[1]


def softmax(row):
    z = [math.exp(v) for v in row]
    return [v / sum(z) for v in z]


def write_run(run, alphas):
    """A run folder whose TB log holds softmax(α_t) per epoch t = 1, 2, ... as a search writes it."""
    w = SummaryWriter(str(run / "tb"))
    for t, alpha in enumerate(alphas, start=1):
        for e, edge in enumerate(EDGE_NAMES):
            for k, op in enumerate(OPS):
                w.add_scalar(f"probs/cell/{edge}/{op}", softmax(alpha[e])[k], t)
        w.add_scalar("train/loss", 1.0, t)
    w.close()


# ops: none, skip, conv1x1, conv3x3, pool. Epoch 1 rushes to skip; epoch 2 adds most to conv3x3
# but not enough to overtake: the final α still says skip on every edge, its change says conv3x3;
# edge 3<-0 keeps its skip lead in the change as well; edge 1<-0 ends on none (excluded: skip).
A1 = [[0.0, 1.0, 0.0, 0.0, 0.0]] * 6
A2 = [[1.3, 1.1, 0.1, 0.5, 0.0]] + [[0.0, 1.1, 0.1, 0.5, 0.0]] * 2 + [[0.0, 1.6, 0.1, 0.5, 0.0]] \
     + [[0.0, 1.1, 0.1, 0.5, 0.0]] * 2


def test_trajectory_rules_on_hand_made_logits(tmp_path):
    write_run(tmp_path, [A1, A2])
    rows = dict(trajectory(tmp_path))
    assert list(rows) == ["epoch 1", "epoch 2", "change 2-1"]
    assert rows["epoch 1"] == nb201_string(["skip_connect"] * 6, EDGE_NAMES)
    assert rows["epoch 2"] == nb201_string(["none"] + ["skip_connect"] * 5, EDGE_NAMES)
    # change: edge 1<-0 gained most on none (1.3), 3<-0 on skip (0.6), the others on conv3x3 (0.5)
    assert rows["change 2-1"] == nb201_string(["none", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                                               "nor_conv_3x3", "nor_conv_3x3"], EDGE_NAMES)
    ex = dict(trajectory(tmp_path, exclude=["none"]))
    assert ex["epoch 2"] == rows["epoch 1"]
    assert ex["change 2-1"] == nb201_string(["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                                             "nor_conv_3x3", "nor_conv_3x3"], EDGE_NAMES)


def test_argmax_ties_and_exclusion():
    assert argmax_ops([[0.0, 1.0, 1.0]], ["a", "b", "c"]) == ["b"]
    assert argmax_ops([[5.0, 1.0, 2.0]], ["a", "b", "c"], exclude=["a"]) == ["c"]
    with pytest.raises(ValueError):
        argmax_ops([[1.0]], ["a"], exclude=["a"])


def test_tool_prints_every_rule_with_ground_truth_and_the_means(tmp_path, capsys):
    write_run(tmp_path / "r1", [A1, A2])
    write_run(tmp_path / "r2", [A1, A1])
    cells = {nb201_string(["skip_connect"] * 6, EDGE_NAMES): 54.3,
             nb201_string(["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                           "nor_conv_3x3", "nor_conv_3x3"], EDGE_NAMES): 94.36}
    table = tmp_path / "t.csv"
    table.write_text("arch,cifar10,cifar100,imagenet16_120\n"
                     + "".join(f"{c},{a},1,1\n" for c, a in cells.items()))
    spec = importlib.util.spec_from_file_location("alpha_trajectory", REPO / "tools" / "alpha_trajectory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = [str(tmp_path / "r1"), str(tmp_path / "r2"), "--exclude", "none", "--table", str(table), "--partial-table"]
    assert mod.main(mod.get_args_parser().parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "change 2-1    94.36" in out
    # r2 did not move between epochs: its change is all zeros, ties go to the first allowed op (skip)
    assert "| change 2-1 | 2 | 74.33 ± 28.33 |" in out
    assert "| epoch 2 | 2 | 54.30 ± 0.00 |" in out
    assert mod.main(mod.get_args_parser().parse_args([str(tmp_path / "missing"), "--table", str(table), "--partial-table"])) == 2
    assert "has no TensorBoard log" in capsys.readouterr().err


def test_a_folder_without_a_log_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="no TensorBoard log"):
        trajectory(tmp_path)
