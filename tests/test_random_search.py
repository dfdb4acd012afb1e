"""nas-random-search keeps a run folder as every command does: a new or empty folder, its config
with the command's header, log.txt, and results the lookup reads; a folder with files is refused."""
import json

import yaml

from nas.commands import random_search as command

TINY = ["quickstart", "data.subset=120", "data.resize=8", "space.C=4", "space.N=1", "data.batch_size=32",
        "trainer.max_steps_per_epoch=1", "seed=3"]


def test_random_search_writes_through_the_run_folder(tmp_path, capsys):
    out = tmp_path / "rs"
    args = command.get_args_parser().parse_intermixed_args([*TINY, "--budget", "0", "--max-cells", "1",
                                                            "--out", str(out), "--quiet"])
    assert command.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "genotype.yaml", "log.txt", "metrics.json"]
    assert (out / "config.yaml").read_text().startswith("# nas-random-search run config")
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    genotype = yaml.safe_load((out / "genotype.yaml").read_text())
    assert metrics["cells"] == 1 and genotype == {"space": "nb201", "arch": metrics["genotype"]}
    assert metrics["val_acc"] == metrics["trials"][0]["val_acc"]
    assert f"cell 1: val_acc={metrics['val_acc']:.2f}" in (out / "log.txt").read_text()
    capsys.readouterr()
    # a second run into the same folder is refused in one line, and the first run's files are kept
    before = (out / "metrics.json").read_text()
    assert command.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} is not empty" in err
    assert (out / "metrics.json").read_text() == before
