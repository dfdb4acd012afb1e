"""A finished run's accuracy recomputed from its folder, to compare with its ``metrics.json``: the
checkpointed supernet or network rebuilt from the run's own config and genotype, scored on the
split the command scores on, the correct predictions counted here (not by the library's meter).
A run whose metric were wrong, stale or of another split fails the comparison; ``0 <= acc <= 100``
would not."""
import itertools
from pathlib import Path

import torch


def accuracy(model: torch.nn.Module, batches) -> float:
    """Top-1 accuracy in % of ``model`` in eval mode over ``batches`` of ``(x, y)``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x)
            logits = logits[0] if isinstance(logits, tuple) else logits  # (logits, auxiliary logits)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    assert total > 0, "no batch to score"
    return 100.0 * correct / total


def search_val_acc(run_dir, dataset=None) -> float:
    """``val_acc`` of a finished search: the supernet as checkpointed (the estimator state
    included), its BN statistics recalibrated on the first ``trainer.bn_batches`` plain training
    batches as the search does after its last checkpoint, scored on the plain validation split.
    ``dataset``: the dataset object the search was given (``nas.search(..., dataset=)``)."""
    from nas.searcher.derive import load_supernet
    from nas.searcher.run import make_loaders
    from nas.supernet import recalibrate_bn
    cfg, _, model = load_supernet(Path(run_dir))
    train, val, _ = make_loaders(cfg, torch.device("cpu"), dataset)
    if cfg.trainer.bn_batches:
        recalibrate_bn(model, itertools.islice(iter(train.eval_loader()), cfg.trainer.bn_batches))
    return accuracy(model, val.eval_loader())


def retrain_test_acc(run_dir, dataset=None) -> float:
    """``test_acc`` of a finished retraining: the network of its genotype.yaml (with the op
    options recorded there) holding the checkpoint's weights, on the real test split.
    ``dataset``: the ``{"train": ..., "test": ...}`` objects the run was given."""
    from nas.config import load_config
    from nas.data import build_eval_loaders, own_options
    from nas.retrainer import RetrainConfig, make_network
    from nas.retrainer.genotypes import resolve_record
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", cls=RetrainConfig)
    space, genotype, extras = resolve_record(str(run_dir / "genotype.yaml"))
    d = cfg.data
    _, test, info = build_eval_loaders(d.dataset, root=d.root, download=False, resize=d.resize, subset=d.subset,
                                       batch_size=d.batch_size, workers=0, seed=cfg.seed, device="cpu",
                                       augment=False, test_subset=d.test_subset, stream=d.stream, given=dataset,
                                       options=own_options(d.dataset, d))
    net = make_network(cfg, space, genotype, info["num_classes"], info["shape"][0], extras["op_args"])
    net.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"])
    return accuracy(net, test)
