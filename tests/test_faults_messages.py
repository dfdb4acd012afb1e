"""Fault injection, tracebacks and misleading messages (issue 32, items 10, 11, 14): the shape probe
blames the image size only when another size fits, registrations are checked when they are made,
and the smaller cases (digits shown, a subset's classes, a syntax error's file and line...)."""
import pytest
import torch
from torch import nn

from nas.engine.shapes import check_input_fits
from nas.errors import ConfigError, NasError


class NoSample(nn.Module):
    def forward(self, x):
        raise NotImplementedError("the estimator has no sample()")


@pytest.mark.parametrize("bad, where, error", [
    (nn.Conv2d(5, 4, 1), "1 (Conv2d)", "RuntimeError: Given groups=1, weight of size [4, 5, 1, 1], expected "
                                       "input[2, 4, 8, 8] to have 5 channels, but got 4 channels instead"),
    (NoSample(), "1 (NoSample)", "NotImplementedError: the estimator has no sample()")])
def test_the_shape_probe_names_the_module_when_no_size_is_the_cause(bad, where, error):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), bad, nn.AdaptiveAvgPool2d(1))
    with pytest.raises(NasError) as e:
        check_input_fits(net, (3, 8, 8), "test network")
    assert not isinstance(e.value, ConfigError) or "data.resize" not in str(e.value)
    assert str(e.value) == (f"the test network fails on a batch of 3x8x8 inputs (and on every size near it) in {where}: "
                            f"{error}; check that module (its channels, its input size, the methods it must have)")


def test_the_shape_probe_still_blames_a_size_that_does_not_fit():
    net = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))  # only 8x8 images fit
    with pytest.raises(ConfigError, match=r"^data.resize: 9x9 images do not fit the test network \(sizes near it "
                                          r"that fit: 8\); set data.resize=<one of them>$"):
        check_input_fits(net, (3, 9, 9), "test network")
    check_input_fits(net, (3, 8, 8), "test network")


def test_an_estimator_without_its_contracts_methods_is_refused_at_registration():
    import nas
    from nas.estimators import ESTIMATORS, Estimator

    class NoCreate(Estimator):
        def sample(self, params, kind, training):
            return None

    with pytest.raises(ConfigError) as e:
        nas.register_estimator("test_no_create")(NoCreate)
    assert str(e.value) == ("register_estimator('test_no_create'): NoCreate does not define create, probs, which every "
                            "Estimator must (see nas/estimators/base.py)")
    assert "test_no_create" not in ESTIMATORS.names()


@pytest.mark.parametrize("thing", [5, "conv"])
def test_an_op_that_is_not_a_builder_is_refused_at_registration(thing):
    import nas
    from nas.ops import OPS
    with pytest.raises(ConfigError) as e:
        nas.register_op("test_not_callable")(thing)
    assert str(e.value) == (f"register_op('test_not_callable'): expected a builder (C_in, C_out, stride, affine, "
                            f"**context) -> nn.Module, got {type(thing).__name__} {thing!r}")
    assert "test_not_callable" not in OPS.names()


def test_a_subset_with_one_class_names_that_class(tmp_path, capsys):
    from faults import one_line, search
    line = one_line(capsys, search("data.subset=1", "trainer.epochs=1", "--out", str(tmp_path / "o")))
    assert line == ("nas-search: error: data.dataset=digits: its training data holds 1 class (0) but a classifier "
                    "needs at least 2; check data.root (one subfolder per class), data.subset or the dataset's options")


def test_a_syntax_error_in_an_import_names_the_file_and_line(tmp_path, capsys):
    from faults import one_line, search
    bad = tmp_path / "bad_syntax.py"
    bad.write_text("x = 1\ndef f(:\n")
    line = one_line(capsys, search(f"imports=[{bad}]", "--out", str(tmp_path / "o")))
    assert line == f"nas-search: error: imports: {bad} failed at {bad}:2 (SyntaxError: invalid syntax)"


def test_the_cheapest_cell_is_printed_with_enough_digits(tmp_path, capsys):
    from faults import one_line, search
    line = one_line(capsys, search("space.C=4", "cost.target=7.783", "--out", str(tmp_path / "o")))
    # 7.783 < 7.78305: the two must not print alike
    assert line == ("nas-search: error: cost.target=7.783 M MACs is below the cheapest cell derive may pick "
                    "(7.78305); raise it or set cost.hard=false")


def test_a_user_op_with_the_wrong_channels_is_named_by_the_cost_table(tmp_path, capsys):
    import nas
    from faults import TINY, one_line, search
    nas.register_op("test_bad_channels")(lambda C_in, C_out, stride, affine, **_: nn.Conv2d(C_in + 1, C_out, 1))
    line = one_line(capsys, search(*TINY, "space.ops=[test_bad_channels,skip_connect]", "--out", str(tmp_path / "o")))
    # the cost table is of the trained network (C=16), not of the supernet
    assert line == ("nas-search: error: op 'test_bad_channels' fails on a 16x32x32 input (C_out=16, stride 1) while "
                    "its cost is counted: RuntimeError: Given groups=1, weight of size [16, 17, 1, 1], expected "
                    "input[1, 16, 32, 32] to have 17 channels, but got 16 channels instead; fix the op's builder")


def test_the_documented_benchmarks_module_works_after_a_plain_import():
    import nas
    assert nas.benchmarks.NB201Table.__name__ == "NB201Table"
    assert "benchmarks" in dir(nas)


@pytest.mark.parametrize("call, names", [
    (lambda nas: nas.load_config("quickstart", 5), "override 5"),
    (lambda nas: nas.load_config(5), "name_or_path"),
    (lambda nas: nas.build_network("nb201", None), "genotype is None"),
    (lambda nas: nas.derive(None), "run_dir is None"),
    (lambda nas: nas.build_network("nb201", "|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1|+"
                                   "|skip_connect~0|skip_connect~1|skip_connect~2|", C=0), "C=0"),
    (lambda nas: nas.build_network("nb201", "|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1|+"
                                   "|skip_connect~0|skip_connect~1|skip_connect~2|", num_classes=-1),
     "num_classes=-1"),
])
def test_api_misuse_is_one_line_naming_the_argument(call, names):
    import nas
    with pytest.raises(NasError) as e:
        call(nas)
    assert names in str(e.value) and "\n" not in str(e.value), str(e.value)
