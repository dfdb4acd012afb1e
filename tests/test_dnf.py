"""Neural DNF block: forward against truth tables and hand numbers, gradients under every binary
estimator, the sparsity penalty, rule extraction/printing against the block, the genotype round
trip and the discrete network, the logical 1x1 cell op, and the dnf space end to end."""
import itertools
import math
import re

import pytest
import torch
import torch.nn.functional as F
import yaml

from nas.blocks import DNFBlock, DNFOp, class_logits, dnf_forward, dnf_op, literals, sparsity
from nas.blocks.rules import clauses_of
from nas.errors import CheckpointError
from nas.estimators import BINARY, ESTIMATORS, build_estimator
from nas.supernet import MixedOp, arch_parameters
from nas.spaces import get_space
from nas.spaces.dnf import DNFGenotype

BINARY_ESTIMATORS = [n for n in ESTIMATORS.names() if BINARY in ESTIMATORS.get(n).kinds]
NOISY = [n for n in BINARY_ESTIMATORS if getattr(ESTIMATORS.get(n), "supports_noise", False)]
SPECS = [(n, "none") for n in BINARY_ESTIMATORS] + [(n, "adaptive") for n in NOISY]


def all_inputs(K):
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=K)))


def set_binary(choice, bits):
    """Make a binary choice derive to ``bits`` whatever its estimator (logits or discrete state)."""
    with torch.no_grad():
        for name, role in choice.roles.items():
            p = getattr(choice, name)
            if role == "logits":
                p.copy_(torch.where(bits.bool().view_as(p), 5.0, -5.0))
            elif role == "discrete":
                p.copy_(bits.float().view_as(p))


# ----------------------------------------------------------------------------- forward

def test_literals_interleave_features_and_negations():
    c = torch.tensor([[1.0, 0.0, 0.25]])
    assert literals(c).tolist() == [[1.0, 0.0, 0.0, 1.0, 0.25, 0.75]]


def test_forward_on_hand_made_rules_equals_the_truth_table():
    # tower 0: (x0 AND NOT x1) OR (x2);  tower 1: (NOT x0 AND NOT x2); rule slot 2 unselected
    K, N = 3, 3
    W = torch.zeros(2, 2 * K, N)
    S = torch.zeros(2, N)
    W[0, 0, 0] = W[0, 3, 0] = 1; W[0, 4, 1] = 1; S[0, :2] = 1
    W[1, 1, 0] = W[1, 5, 0] = 1; S[1, 0] = 1
    W[:, :, 2] = 1  # an unselected rule must not matter
    x = all_inputs(K)
    y, not_y = dnf_forward(literals(x), W, S)
    b = x.bool()
    truth0 = (b[:, 0] & ~b[:, 1]) | b[:, 2]
    truth1 = ~b[:, 0] & ~b[:, 2]
    assert y[:, 0].tolist() == truth0.float().tolist()
    assert y[:, 1].tolist() == truth1.float().tolist()
    assert torch.equal(not_y, 1 - y)


def test_forward_on_relaxed_values_matches_a_hand_computation():
    # K=1, c=0.3 -> b = [0.3, 0.7]; W = [[0.5], [1.0]], S = [0.8]
    # r = (1 - 0.5·0.7)(1 - 1.0·0.3) = 0.65·0.7 = 0.455;  ŷ = 1 - (1 - 0.8·0.455) = 0.364
    y, not_y = dnf_forward(literals(torch.tensor([[0.3]])), torch.tensor([[[0.5], [1.0]]]), torch.tensor([[0.8]]))
    assert y.item() == pytest.approx(0.364, abs=1e-6)
    assert not_y.item() == pytest.approx(0.636, abs=1e-6)


def test_dnf_forward_gradient_matches_finite_differences_including_zero_factors():
    g = torch.Generator().manual_seed(0)
    b = literals(torch.rand(4, 3, generator=g, dtype=torch.float64))
    b[0, 2] = 0.0                     # a literal exactly 0 ...
    W = torch.rand(2, 6, 5, generator=g, dtype=torch.float64)
    W[:, 2, :] = 1.0                  # ... included everywhere: exact zero factors for sample 0
    S = torch.rand(2, 5, generator=g, dtype=torch.float64)
    W.requires_grad_(); S.requires_grad_()
    assert torch.autograd.gradcheck(lambda w, s: dnf_forward(b, w, s)[0], (W, S))


def test_sparsity_penalty_by_hand():
    W = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]])   # ‖W_·0‖=2, ‖W_·1‖=2
    S = torch.tensor([[1.0, 0.5]])
    assert sparsity(W, S, 1e-4).item() == pytest.approx(1e-4 * (1.0 * 2 + 0.5 * 2))


def test_class_logits_make_cross_entropy_the_binary_cross_entropy():
    y = torch.tensor([[0.2], [0.9]])
    target = torch.tensor([1, 0])
    ce = F.cross_entropy(class_logits(y, 1 - y), target)
    bce = F.binary_cross_entropy(y.squeeze(1), target.float())
    assert ce.item() == pytest.approx(bce.item(), rel=1e-4)
    # hard outputs give finite logits and a gradient when wrong
    yh = torch.tensor([[0.0]], requires_grad=True)
    loss = F.cross_entropy(class_logits(yh, 1 - yh), torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss) and yh.grad.abs().item() > 1.0


# ----------------------------------------------------------------------------- estimators

@pytest.mark.parametrize("name,noise", SPECS, ids=[f"{n}+noise" if z != "none" else n for n, z in SPECS])
def test_gradient_reaches_W_and_S_under_every_binary_estimator(name, noise):
    torch.manual_seed(0)
    est = build_estimator(name, noise=noise)
    block = DNFBlock(est, 4, rules=6, towers=2, generator=torch.Generator().manual_seed(0))
    c = 0.2 + 0.6 * torch.rand(16, 4)     # inputs strictly inside (0, 1): no factor is exactly 0
    y, not_y = block(c)
    loss = F.cross_entropy(class_logits(y, not_y), torch.randint(0, 2, (16,))) + block.penalty()
    loss.backward()
    for choice in (block.W, block.S):
        trained = [getattr(choice, n) for n, r in choice.roles.items() if r in ("logits", "discrete")]
        assert trained, f"{name}: no trainable W/S parameters"
        for p in trained:
            assert p.grad is not None and torch.isfinite(p.grad).all()
            assert (p.grad != 0).any(), f"{name}: zero gradient for {choice}"


def test_eval_mode_uses_the_derived_binary_rules():
    est = build_estimator("softmax")
    block = DNFBlock(est, 3, rules=4)
    g = torch.Generator().manual_seed(1)
    set_binary(block.W, torch.rand(2 * 3 * 4, generator=g) < 0.3)
    set_binary(block.S, torch.rand(4, generator=g) < 0.7)
    block.eval()
    y, _ = block(all_inputs(3))
    W, S = block.derived()
    assert torch.equal(y, dnf_forward(literals(all_inputs(3)), W.float(), S.float())[0])
    assert set(y.flatten().tolist()) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- rules

_TOKEN = re.compile(r"\(|\)|AND|OR|NOT|TRUE|FALSE|x\d+")


def eval_condition(cond: str, bits) -> bool:
    """Evaluate a printed condition on binary inputs by translating its tokens to Python."""
    py = []
    for tok in _TOKEN.findall(cond):
        py.append({"AND": "and", "OR": "or", "NOT": "not", "TRUE": "True", "FALSE": "False"}.get(tok, tok))
        if tok.startswith("x"):
            py[-1] = str(bool(bits[int(tok[1:])]))
    return bool(eval(" ".join(py), {"__builtins__": {}}))  # noqa: S307 - test-only, tokens whitelisted


def predict_from_text(text: str, bits) -> str:
    for line in text.strip().splitlines():
        m = re.fullmatch(r"IF (.*) THEN class (\S+)", line)
        if m and eval_condition(m.group(1), bits):
            return m.group(2)
        m = re.fullmatch(r"OTHERWISE class (\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"no OTHERWISE line in {text!r}")


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_printed_rules_evaluate_like_the_block_on_all_inputs(num_classes, seed):
    K, N = 4, 6
    space = get_space("dnf")
    model = space.build_supernet(build_estimator("softmax"), num_classes=num_classes, in_channels=K, rules=N)
    g = torch.Generator().manual_seed(seed)
    set_binary(model.block.W, torch.rand(model.block.W.labels.__len__(), generator=g) < 0.25)
    set_binary(model.block.S, torch.rand(len(model.block.S.labels), generator=g) < 0.6)
    model.eval()
    x = all_inputs(K)
    pred = model(x).argmax(1).tolist()
    genotype = model.genotype()
    text = genotype.text()
    for row, p in zip(x.tolist(), pred):
        assert predict_from_text(text, row) == model.classes[p], (text, row)
    # the discrete network built from the genotype agrees as well, also after a YAML round trip
    back = space.genotype_from_dict(yaml.safe_load(yaml.safe_dump(space.genotype_to_dict(genotype))))
    assert back == genotype
    assert space.build_network(back, num_classes=num_classes)(x).argmax(1).tolist() == pred


def test_rule_simplification_drops_contradictions_duplicates_and_absorbed_clauses():
    W = torch.zeros(6, 5, dtype=torch.bool)
    S = torch.ones(5, dtype=torch.bool)
    W[[0, 1], 0] = True       # x0 AND NOT x0: never true
    W[[2], 1] = True          # x1
    W[[2, 4], 2] = True       # x1 AND x2: absorbed by x1
    W[[2], 3] = True          # duplicate of x1
    W[[3, 5], 4] = True       # NOT x1 AND NOT x2
    assert clauses_of(W, S) == [(2,), (3, 5)]


def test_printed_text_has_the_documented_form():
    g = DNFGenotype(("x0", "x1", "x2"), ("0", "1"), (("1", (("x0", "NOT x2"), ("x1",))),))
    assert g.text() == "IF (x0 AND NOT x2) OR (x1) THEN class 1\nOTHERWISE class 0\n"
    empty = DNFGenotype(("x0",), ("0", "1"), (("1", ()),))
    assert empty.lines()[0] == "IF FALSE THEN class 1"


def test_bad_genotype_files_are_one_line_errors():
    space = get_space("dnf")
    with pytest.raises(CheckpointError, match="names no feature"):
        space.genotype_from_dict({"features": ["x0"], "classes": ["0", "1"],
                                  "rules": [{"class": "1", "clauses": [["x9"]]}]})
    with pytest.raises(CheckpointError, match="needs 'features'"):
        space.genotype_from_dict({"arch": "|none~0|"})
    with pytest.raises(CheckpointError, match="classes"):
        space.genotype_from_dict({"features": ["x0"], "classes": ["0", "1"],
                                  "rules": [{"class": "0", "clauses": []}]})


# ----------------------------------------------------------------------------- cell op

def test_dnf_op_joins_a_mixed_op_and_trains_through_it():
    from nas.ops import build_op
    est = build_estimator("sigmoid" if "sigmoid" in ESTIMATORS else "softmax")
    names = ["skip_connect", "nor_conv_1x1", "dnf_1x1"]
    mixed = MixedOp([build_op(n, 4, 4, 1, False, estimator=est, rules=4) for n in names], names)
    assert mixed.ops[2].block.N == 4 and mixed.ops[2].block.W.estimator is est
    assert dnf_op(est, rules=4)(4, 4, 1, False).block.N == 4
    x = torch.randn(2, 4, 5, 5)
    out = mixed(x, torch.tensor([0.2, 0.3, 0.5]))
    assert out.shape == x.shape
    out.square().mean().backward()
    dnf = mixed.ops[2]
    for p in arch_parameters(dnf, "logits"):
        assert p.grad is not None and (p.grad != 0).any()
    assert DNFOp(4, 6, 2, False, est, rules=2)(x).shape == (2, 6, 3, 3)


# ----------------------------------------------------------------------------- the dnf space end to end

def test_dnf_space_search_writes_rules_that_rebuild_the_scored_classifier(tmp_path):
    from nas.config import load_config
    from nas.data.tabular import TabularOptions, build_tabular_search_loaders
    from nas.searcher.run import run_search

    noisy = "ste" in NOISY
    cfg = load_config("configs/dnf_synthetic.yaml", [
        "data.features=5", "data.clauses=2", "data.width=2", "data.samples=400",
        "space.rules=8", "trainer.epochs=3", "device=cpu",
        f"estimator.name={'ste' if noisy else 'softmax'}", f"estimator.noise={'adaptive' if noisy else 'none'}"])
    res = run_search(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    space = get_space("dnf")
    genotype = space.genotype_from_dict(yaml.safe_load((run / "genotype.yaml").read_text()))
    assert genotype == res.genotype
    assert (run / "rules.txt").read_text() == genotype.text()
    from nas.searcher.derive import derive
    assert derive(run)[1] == genotype  # the checkpoint keeps the feature and class names
    d = cfg.data
    _, val, _ = build_tabular_search_loaders(
        "synthetic_dnf", options=TabularOptions(features=5, clauses=2, width=2, samples=400),
        train_portion=d.train_portion, batch_size=d.batch_size, seed=cfg.seed, device="cpu")
    net = space.build_network(genotype)
    acc = 100.0 * float((net(val.x).argmax(1) == val.y).float().mean())
    assert acc == pytest.approx(res.metrics["val_acc"])


def test_dnf_space_rejects_gates():
    from nas.errors import ConfigError
    with pytest.raises(ConfigError, match="space.gates"):
        get_space("dnf").build_supernet(build_estimator("softmax"), num_classes=2, in_channels=3, gates="edge")


# ----------------------------------------------------------------------------- tabular data

def test_synthetic_dnf_labels_follow_the_rule_with_the_asked_noise_and_seed():
    from nas.data.tabular import TabularOptions, eval_dnf, load_tabular
    o = TabularOptions(features=8, clauses=3, width=2, noise=0.1, samples=5000)
    tr = load_tabular("synthetic_dnf", split="train", seed=3, options=o)
    te = load_tabular("synthetic_dnf", split="test", seed=3, options=o)
    assert tr.x.shape == (4000, 8) and te.x.shape == (1000, 8)
    assert len(tr.rule) == 3 and all(len({k for k, _ in c}) == 2 for c in tr.rule)
    assert torch.equal(te.y.bool(), eval_dnf(te.x, te.rule))                 # test labels are clean
    flipped = (tr.y.bool() != eval_dnf(tr.x, tr.rule)).float().mean().item()
    assert flipped == pytest.approx(0.1, abs=0.02)
    again = load_tabular("synthetic_dnf", split="train", seed=3, options=o)
    assert torch.equal(again.x, tr.x) and torch.equal(again.y, tr.y) and again.rule == tr.rule
    other = load_tabular("synthetic_dnf", split="train", seed=4, options=o)
    assert not torch.equal(other.x, tr.x)


def test_breast_cancer_is_binarised_at_train_quantiles():
    from nas.data.tabular import TabularOptions, load_tabular
    tr = load_tabular("breast_cancer", split="train", options=TabularOptions(quantiles=[0.5]))
    te = load_tabular("breast_cancer", split="test", options=TabularOptions(quantiles=[0.5]))
    assert tr.x.shape[1] == te.x.shape[1] == 30 and len(tr) + len(te) == 569
    assert set(tr.x.unique().tolist()) <= {0.0, 1.0}
    assert tr.x.mean(0).sub(0.5).abs().max().item() < 0.01          # a median splits train in half
    assert tr.features[0].startswith("mean radius > ") and tr.classes == ["malignant", "benign"]


def test_tabular_loader_resumes_the_same_order_and_bad_options_are_errors():
    from nas.data.tabular import TabularLoader, TabularOptions, load_tabular
    from nas.errors import ConfigError
    x, y = torch.rand(10, 3), torch.arange(10)
    a = TabularLoader(x, y, batch_size=4, shuffle=True, seed=1)
    assert len(a) == 3
    list(a)
    state = a.state_dict()
    first = [b[1].tolist() for b in a]
    b = TabularLoader(x, y, batch_size=4, shuffle=True, seed=99)
    b.load_state_dict(state)
    assert [t[1].tolist() for t in b] == first
    assert sorted(sum(first, [])) == list(range(10))
    with pytest.raises(ConfigError, match="width"):
        load_tabular("synthetic_dnf", options=TabularOptions(features=2, width=3))
    with pytest.raises(ConfigError, match="unknown dataset .iris."):
        load_tabular("iris")
