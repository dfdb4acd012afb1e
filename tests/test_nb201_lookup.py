"""NB201 ground-truth table: lookup by string / genotype / genotype.yaml / run folder, ranks, errors."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nas.benchmarks import NB201Table
from nas.benchmarks.nb201_table import DEFAULT_TABLE
from nas.errors import CheckpointError, DataError
from nas.spaces.nb201 import NB201Genotype

REPO = Path(__file__).resolve().parents[1]
OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
A = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
B = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
C = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
D = "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def real_table():
    # the table the package ships (the published one, 15,625 cells), not NAS_NB201_TABLE's
    return NB201Table.load(DEFAULT_TABLE)


def write_table(path, rows, header="arch,cifar10,cifar100,imagenet16_120"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_known_cells_of_the_real_table(real_table):
    assert len(real_table) == 15625
    s = real_table.score(OPTIMUM)
    assert round(s.acc["cifar10"], 2) == 94.37 and s.rank["cifar10"] == 1 and s.n == 15625
    assert real_table.best("cifar10")[1] == s.acc["cifar10"]  # two cells tie at the top
    skip = real_table.score(ALL_SKIP)
    assert round(skip.acc["cifar10"], 2) == 54.30
    assert 15000 < skip.rank["cifar10"] <= 15625
    assert round(real_table.mean("cifar10"), 2) == 87.06  # the "mean of a random cell"


def test_ranks_count_strictly_better_cells_and_ties_share(tmp_path):
    t = NB201Table.load(write_table(tmp_path / "t.csv", [(A, 10, 1, 2), (B, 50, 5, 2), (C, 90, 3, 2), (D, 50, 4, 1)]), partial=True)
    assert [t.score(a).rank["cifar10"] for a in (C, B, D, A)] == [1, 2, 2, 4]
    assert [t.score(a).rank["cifar100"] for a in (B, D, C, A)] == [1, 2, 3, 4]
    assert t.score(D).rank["imagenet16_120"] == 4 and t.score(A).rank["imagenet16_120"] == 1
    assert t.rank_of(95.0) == 1 and t.rank_of(50.0) == 2 and t.rank_of(0.0) == 5
    assert t.mean("cifar10") == pytest.approx(50.0)


def test_lookup_by_genotype_yaml_run_dir_and_whitespace(tmp_path):
    t = NB201Table.load(write_table(tmp_path / "t.csv", [(A, 10, 1, 2), (C, 90, 3, 2)]), partial=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / "genotype.yaml").write_text(yaml.safe_dump(NB201Genotype.from_string(C).to_dict()))
    for arch in (C, " " + C + "\n", NB201Genotype.from_string(C), run, run / "genotype.yaml", str(run)):
        assert t.score(arch).acc == {"cifar10": 90.0, "cifar100": 3.0, "imagenet16_120": 2.0}
    assert C in t and B not in t


def test_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="not found; pass --table"):
        NB201Table.load(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="lacks column 'cifar100'"):
        NB201Table.load(write_table(tmp_path / "bad.csv", [(A, 1, 2)], header="arch,cifar10,imagenet16_120"))
    with pytest.raises(DataError, match="line 3"):
        NB201Table.load(write_table(tmp_path / "bad2.csv", [(A, 1, 2, 3), ("|foo~0|", 1, 2, 3)]), partial=True)
    t = NB201Table.load(write_table(tmp_path / "t.csv", [(A, 10, 1, 2)]), partial=True)
    with pytest.raises(DataError, match="is not in the NB201 table"):
        t.score(B)
    with pytest.raises(CheckpointError, match="not an NB201 string"):
        t.score("|nor_conv_3x3~0|")
    with pytest.raises(CheckpointError, match="no genotype.yaml"):
        t.score(tmp_path)
    (tmp_path / "g.yaml").write_text("space: darts\narch: x\n")
    with pytest.raises(CheckpointError, match="not nb201"):
        t.score(tmp_path / "g.yaml")


def test_cli_prints_accuracies_and_rank(tmp_path):
    table = write_table(tmp_path / "t.csv", [(A, 10, 1, 2), (C, 90.123, 3, 2)])
    r = subprocess.run([sys.executable, "-m", "nas.commands.lookup", C, "--table", str(table), "--partial-table"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "CIFAR-10 90.12% (rank 1/2)" in r.stdout and "ImageNet16-120 2.00% (rank 1/2)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "nas.commands.lookup", B, "--table", str(table), "--partial-table"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nas-lookup: error:" in r.stderr


def test_disconnected_cells_are_exactly_the_ones_the_benchmark_lists_at_chance(real_table):
    """``NB201Genotype.is_connected`` (used to warn about a collapsed search) agrees with the
    ground truth: a cell outputs zeros, and scores 10% on CIFAR-10, iff no path avoids ``none``."""
    from nas.spaces.nb201 import all_genotypes
    assert not NB201Genotype.from_string(A).is_connected()
    assert not NB201Genotype.from_string(B).is_connected()  # 1<-0 open, but nothing leaves node 1
    assert NB201Genotype.from_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|").is_connected()
    assert NB201Genotype.from_string(OPTIMUM).is_connected()
    chance = {str(g) for g in all_genotypes() if real_table.score(g).acc["cifar10"] < 10.5}
    disconnected = {str(g) for g in all_genotypes() if not g.is_connected()}
    assert len(disconnected) == 341
    assert disconnected == chance


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`nb201_lookup.py CELL | head -1`: the reader is gone before the tool writes; the tool ends as
    a Unix tool does (SIGPIPE), with no BrokenPipeError traceback."""
    table = write_table(tmp_path / "t.csv", [(A, 10, 1, 2), (C, 90.123, 3, 2)])
    proc = subprocess.Popen([sys.executable, "-m", "nas.commands.lookup", C, "--table", str(table), "--partial-table"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_table_without_every_cell_once_needs_an_explicit_opt_in(tmp_path):
    """A table cut in half would rank a cell among 7,813 cells and look right: it is refused
    unless --partial-table says it is a subset of the user's own; so is a cell given twice."""
    from nas.spaces.nb201 import all_genotypes
    cells = [str(g) for g in all_genotypes()]
    assert len(cells) == 15625
    half = write_table(tmp_path / "half.csv", [(c, 50, 1, 1) for c in cells[:7813]])
    with pytest.raises(DataError, match=r"has 7,813 distinct cells, the benchmark has 15,625: ranks would be "
                                        r"wrong; give the full table, or pass --partial-table"):
        NB201Table.load(half)
    assert len(NB201Table.load(half, partial=True)) == 7813
    twice = write_table(tmp_path / "twice.csv", [(c, 50, 1, 1) for c in cells + cells[:1]])
    with pytest.raises(DataError, match=r"15,625 distinct cells \(1 cells given twice\)"):
        NB201Table.load(twice)
    full = write_table(tmp_path / "full.csv", [(c, 50, 1, 1) for c in cells])
    assert NB201Table.load(full).score(cells[0]).n == 15625
    r = subprocess.run([sys.executable, "-m", "nas.commands.lookup", cells[0], "--table", str(half)], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--partial-table" in r.stderr


def test_binary_input_to_the_lookup_is_one_line(tmp_path):
    blob = bytes(range(256)) * 4
    (tmp_path / "t.csv").write_bytes(blob)
    (tmp_path / "t.csv.gz").write_bytes(blob)
    for table in ("t.csv", "t.csv.gz"):
        with pytest.raises(DataError, match="is not a CSV text file"):
            NB201Table.load(tmp_path / table)
    (tmp_path / "genotype.yaml").write_bytes(blob)
    t = NB201Table.load(write_table(tmp_path / "ok.csv", [(A, 10, 1, 2)]), partial=True)
    with pytest.raises(CheckpointError, match="not a YAML text file"):
        t.score(tmp_path / "genotype.yaml")
    r = subprocess.run([sys.executable, "-m", "nas.commands.lookup", str(tmp_path / "genotype.yaml"), "--table",
                        str(tmp_path / "t.csv")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
