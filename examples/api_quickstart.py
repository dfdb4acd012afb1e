"""The Python API end to end: search, derive, build the discrete network, retrain.

    python examples/api_quickstart.py [WORK_DIR]

A tiny search on scikit-learn's bundled digits (seconds on a CPU); every call below is what the
commands nas-search, nas-derive and nas-retrain do, as functions.
"""
import sys
import tempfile
from pathlib import Path

import torch

import nas


def main(work: Path) -> None:
    print("spaces:", nas.list_spaces())
    print("nb201 ops:", nas.list_ops("nb201"))
    print("estimators:", nas.list_estimators())

    # a search config by name plus overrides, exactly as on the command line
    cfg = nas.load_config("quickstart", "trainer.epochs=2", "space.C=4", "data.subset=400",
                          "estimator.name=softmax")
    result = nas.search(cfg, work / "search")
    print("searched:", result.genotype, f"(val_acc {result.metrics['val_acc']:.1f} %)")

    # derive again from the run folder, here as DARTS does (leaving 'none' out)
    genotype = nas.derive(result.out_dir, exclude="none")
    print("derived without none:", genotype)

    # the discrete network as a plain nn.Module, for your own training loop
    net = nas.build_network("nb201", genotype, num_classes=10, C=8, N=1, in_channels=3)
    logits = net(torch.randn(2, 3, 16, 16))
    print("network:", type(net).__name__, tuple(logits.shape))

    # or retrain it with the shipped recipe
    rcfg = nas.load_config("retrain_nb201_digits", "trainer.epochs=1", "data.subset=400")
    trained = nas.retrain(rcfg, genotype, work / "retrain")
    print(f"retrained: test_acc {trained.metrics['test_acc']:.1f} %, {trained.metrics['params_m']:.3f}M params")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d))
