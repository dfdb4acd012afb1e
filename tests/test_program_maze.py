"""The digit maze and the program space: the generator's documented properties, loaders, the
genotype round trip, config errors, and ``nas-search configs/program_maze.yaml`` end to end."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nas.config import load_config
from nas.searcher.run import check_space, make_estimator, make_loaders, make_supernet
from nas.data.maze import MazeInput, MazeLoader, MazeOptions, digit_pools, follow, generate
from nas.errors import CheckpointError, ConfigError
from nas.estimators import build_estimator
from nas.spaces import get_space
from nas.spaces.program import ProgramGenotype
from nas.spaces.program.maze import MazeSupernet, scores

REPO = Path(__file__).resolve().parents[1]
SMALL = ["data.train=120", "data.test=60", "data.batch_size=32", "trainer.epochs=2",
         "space.steps=12", "space.look_hidden=8"]


def test_every_maze_halts_where_and_when_its_targets_say():
    o = MazeOptions(train=300)
    data = generate("train", 3, o)
    assert data.images.shape == (300, 3, 5, 64) and float(data.images.max()) <= 1.0
    for i in range(len(data)):
        x, y, n = follow(data.digits[i], tuple(data.start[i].tolist()), o.max_moves)
        assert (x, y, n) == (*data.final[i].tolist(), int(data.moves[i]))   # halts within the budget
        # the path never touches the border in a direction off the grid (no clamped move)
        cx, cy = data.start[i].tolist()
        for _ in range(n):
            d = int(data.digits[i, cy, cx])
            cx, cy = cx + (0, 1, 0, -1, 0)[d], cy + (0, 0, -1, 0, 1)[d]
            assert 0 <= cx < 5 and 0 <= cy < 3
    t = data.targets()
    assert torch.equal(t, (data.final[:, 0] * 3 + data.final[:, 1]) * 15 + data.moves)


def test_lengths_follow_the_geometric_law_and_the_seed_fixes_everything():
    o = MazeOptions(train=1500, decay=0.7)
    data = generate("train", 0, o)
    p = torch.tensor([0.7 ** k for k in range(15)])
    p = p / p.sum()
    freq = torch.bincount(data.moves, minlength=15).float() / len(data)
    assert torch.allclose(freq[:4], p[:4], atol=0.04)          # 0.30, 0.21, 0.15, 0.10
    again = generate("train", 0, o)
    assert torch.equal(again.images, data.images) and torch.equal(again.digits, data.digits)
    assert not torch.equal(generate("train", 1, o).digits, data.digits)
    uniform = generate("train", 0, MazeOptions(train=600, decay=1.0))
    assert uniform.moves.float().mean() > 5                     # mean 7 under the uniform law


def test_train_and_test_mazes_use_disjoint_digit_images():
    train_pools, test_pools = digit_pools("train"), digit_pools("test")
    data = generate("test", 0, MazeOptions(test=50))
    for d in range(5):
        shown = data.images[data.digits == d]
        assert shown.shape[0] > 0
        in_test = (shown[:, None] == test_pools[d][None]).all(-1).any(-1)
        in_train = (shown[:, None] == train_pools[d][None]).all(-1).any(-1)
        assert bool(in_test.all()) and not bool(in_train.any())


def test_bad_maze_options_are_config_errors():
    for bad in (MazeOptions(max_moves=15), MazeOptions(decay=0.0), MazeOptions(count=1), MazeOptions(width=0)):
        with pytest.raises(ConfigError, match="^data[.:]"):
            generate("train", 0, bad)


def test_loader_batches_and_resumes_the_same_order():
    data = generate("train", 0, MazeOptions(train=40))
    a = MazeLoader(data, batch_size=16, shuffle=True, seed=5)
    x, y = next(iter(a))
    assert isinstance(x, MazeInput) and x.images.shape == (16, 3, 5, 64) and x.start.shape == (16, 2)
    state = a.state_dict()
    first = [yy.tolist() for _, yy in a]
    b = MazeLoader(data, batch_size=16, shuffle=True, seed=99)
    b.load_state_dict(state)
    assert [yy.tolist() for _, yy in b] == first
    assert len(a) == 3


def test_genotype_round_trips_and_bad_files_are_one_line_errors():
    space = get_space("program")
    g = ProgramGenotype(("LOOK", "MOVE", "INC"), (1, 2, 0))
    assert str(g) == "0: LOOK; goto 1 / 1: MOVE; goto 2 / 2: INC; goto 0"
    assert g.text() == "0: LOOK; goto 1\n1: MOVE; goto 2\n2: INC; goto 0\n"
    assert space.genotype_from_dict(yaml.safe_load(yaml.safe_dump(space.genotype_to_dict(g)))) == g
    assert eval(repr(g)) == g
    for bad in ({"lines": [{"instr": "JUMP", "goto": 0}]}, {"lines": [{"instr": "INC", "goto": 3}]},
                {"lines": "x"}, {"lines": [{"instr": "INC", "goto": "a"}]}):
        with pytest.raises(CheckpointError, match="genotype"):
            space.genotype_from_dict(bad)


def test_network_of_a_genotype_scores_like_the_supernet_in_eval():
    data = generate("test", 0, MazeOptions(test=64))
    space = get_space("program")
    sup = space.build_supernet(build_estimator("softmax"), num_classes=225, width=5, height=3, count=15)
    g = sup.genotype()
    net = space.build_network(g, width=5, height=3, count=15)
    net.block.functions.load_state_dict(sup.block.functions.state_dict())
    assert scores(net, data) == scores(sup, data)
    assert net.genotype() == g


def test_config_keys_are_validated_and_spaces_and_data_must_match():
    with pytest.raises(ConfigError, match=r"^unknown config key 'data.widht' \(did you mean 'data.width'\?\)"):
        load_config(REPO / "configs" / "program_maze.yaml", ["data.widht=4"])
    with pytest.raises(ConfigError, match="^space.lines: expected int"):
        load_config(REPO / "configs" / "program_maze.yaml", ["space.lines=two"])
    with pytest.raises(ConfigError, match="^data.decay=0.0 is out of range"):
        load_config(REPO / "configs" / "program_maze.yaml", ["data.decay=0"])
    cfg = load_config(REPO / "configs" / "program_maze.yaml", ["data.dataset=synthetic_dnf"])
    with pytest.raises(ConfigError, match=r"the program space takes maze data: choose a dataset of that kind \(maze\)"):
        check_space(cfg)
    cfg = load_config(REPO / "configs" / "program_maze.yaml", ["space.name=dnf"])
    with pytest.raises(ConfigError, match="data.dataset=maze is maze data.* or space.name=program"):
        check_space(cfg)
    with pytest.raises(ConfigError, match=r"^unknown config key 'space.rules'.*; allowed under 'space': name, lines"):
        load_config(REPO / "configs" / "program_maze.yaml", ["space.rules=8"])
    with pytest.raises(ConfigError, match=r"^unknown config key 'space.lines'; allowed under 'space': name, ops"):
        load_config(REPO / "configs" / "quickstart.yaml", ["space.lines=2"])


def test_the_search_builds_the_space_from_its_own_keys_and_the_maze():
    cfg = load_config(REPO / "configs" / "program_maze.yaml", [*SMALL, "data.width=4", "data.max_moves=8", "space.lines=2"])
    check_space(cfg)
    train, _, info = make_loaders(cfg, torch.device("cpu"))
    assert info["num_classes"] == 4 * 3 * 15 and len(info["test_set"]) == 60
    _, model = make_supernet(cfg, make_estimator(cfg), info["num_classes"], info["shape"][0], info)
    assert model.template.registers == {"X": 4, "Y": 3, "dir": 5, "reg": 15}
    assert (model.template.lines, model.template.steps) == (2, 12)
    x, y = next(iter(train))
    assert model(x).shape == (32, 180)


@pytest.mark.slow
def test_nas_search_program_maze_writes_the_program_and_the_test_scores(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "nas", str(REPO / "configs" / "program_maze.yaml"), *SMALL,
                        "--out", str(out), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    program = (out / "program.txt").read_text().splitlines()
    assert len(program) == 3 and all(line.startswith(f"{i}: ") and "; goto " in line
                                     for i, line in enumerate(program))
    m = json.loads((out / "metrics.json").read_text())
    assert {"test_acc", "oracle_acc", "look_acc", "program_correct"} <= set(m)
    assert m["genotype"] == " / ".join(program) and f"genotype: {m['genotype']}" in r.stdout
    g = get_space("program").genotype_from_dict(yaml.safe_load((out / "genotype.yaml").read_text()))
    assert str(g) == m["genotype"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(out / "tb"))
    ea.Reload()
    assert "hparams/test_acc" in ea.Tags()["scalars"]
    assert ea.Scalars("hparams/test_acc")[-1].value == pytest.approx(m["test_acc"])
