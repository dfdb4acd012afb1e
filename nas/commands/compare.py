"""Compare estimators by the NAS-Bench-201 ground truth of the cells their searches find.

    nas-compare --config configs/nb201_cifar10_cpu.yaml \
        --estimators softmax,gumbel,gumbel_hard,ste,bop --seeds 0,1,2 [key=value ...]

For every estimator and seed it runs one search (``nas-search`` in a subprocess, so runs can go in
parallel with ``--jobs``), looks the derived cell up in the NB201 table, and adds a random-search
baseline with the same wall-clock budget (the mean search time unless ``--random-budget``). It
writes ``report.md`` (a markdown table: mean ± std of the CIFAR-10 test accuracy, rank, search
minutes, derived cells) and ``results.json`` into ``--out``, and prints the table.

Recipes: ``--recipes drnas,sdarts_rs,...`` runs shipped method configs (``configs/recipes/NAME.yaml``)
or YAML paths, each as it is (``LABEL=PATH`` to label one), every one with every seed, beside or
instead of the estimator specs; ``--config`` is then optional (the random baseline uses the first
recipe's config when it is absent).

Estimator specs: a registered name (``gumbel_hard``), or ``NAME+noise`` for adaptive noise,
optionally labelled ``LABEL=SPEC`` to compare variants of one estimator (``fast=softmax`` with
``--set fast:optim.arch.lr=1e-3``). The config's ``estimator`` section applies to the estimator it
names; any other estimator starts from its own defaults, except ``derive_max_skip`` and
``derive_min_skip`` (P-DARTS's control of the derived cell's skips, a prior on the cell rather
than a setting of one relaxation), which carry over to every estimator with logits. ``--set NAME:key=value`` adds an override
for the specs whose label, spec or estimator name is NAME. A finished run
(its ``metrics.json`` exists) is reused and a search an interruption kept (its ``checkpoint.pt``)
is resumed, so an interrupted comparison continues where it stopped; ``--restart`` starts every
search over instead. A finished run is reused only for the config its command asks for today: a
recipe whose derive rule changed (any ``derive.*`` key: ``exclude``, ``max_skip``, ...) has its cell
derived again from the run's checkpoint (the search is the same), and any other change is a
one-line error naming the key, so an edited recipe never reports its old cells.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nas.benchmarks import DEFAULT_TABLE, NB201Table
from nas.config import load_yaml
from nas.commands import entry, guarded
from nas.errors import ConfigError, NasError

RANDOM = "random"
REFERENCES = [("optimum", 94.37), ("all nor_conv_3x3", 93.76), ("GDAS (NB201 paper, GPU, 250 ep)", 93.61),
              ("mean of a random cell", 87.06), ("DARTS (collapse to skip)", 54.30)]


@dataclass
class Job:
    method: str
    seed: int
    out: Path
    cmd: List[str]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-compare", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every search")
    p.add_argument("--config", default=None, help="search config (YAML path or name in configs/) the "
                                                   "--estimators switch (required unless --recipes is given)")
    p.add_argument("--estimators", default=None,
                   help="comma-separated estimator specs (NAME, NAME+noise, or LABEL=SPEC for a variant); "
                        "default softmax,gumbel,gumbel_hard without --recipes")
    p.add_argument("--recipes", default=None,
                   help="comma-separated recipes: names in configs/recipes/ or YAML paths (LABEL=PATH to label one)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--set", action="append", default=[], metavar="NAME:key=value",
                   help="an override for one estimator or recipe only, by its label (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="folder (default runs/compare-<timestamp>)")
    p.add_argument("--table", type=Path, default=None, help=f"NB201 table CSV (default {DEFAULT_TABLE})")
    p.add_argument("--partial-table", action="store_true",
                   help="accept a table of a subset of the cells (ranks among those); default: all 15,625 required")
    p.add_argument("--no-random", action="store_true", help="skip the random-search baseline")
    p.add_argument("--random-budget", type=float, default=None,
                   help="seconds per random search (default: the mean search time of the estimators)")
    p.add_argument("--random-epochs", type=int, default=1, help="training epochs per random cell")
    p.add_argument("--jobs", type=int, default=1, help="searches run at the same time")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per search (default: cores / jobs)")
    p.add_argument("--device", default=None, help="device override for every search (cpu, cuda, auto)")
    p.add_argument("--restart", action="store_true",
                   help="start every search over, removing the runs a previous comparison kept (default: "
                        "reuse the finished ones and resume the interrupted ones)")
    return p


def parse_spec(spec: str) -> Dict[str, str]:
    from nas.estimators import parse_spec as parse
    parsed = parse(spec)
    return {"estimator.name": parsed.name, **({"estimator.noise": parsed.noise} if parsed.noise != "none" else {})}


def split_label(entry: str) -> tuple:
    """``"LABEL=SPEC"`` -> (LABEL, SPEC); a bare ``"SPEC"`` is its own label."""
    label, sep, spec = entry.partition("=")
    return (label.strip(), spec.strip()) if sep else (entry.strip(), entry.strip())


def has_logits(name: str) -> bool:
    """Whether estimator ``name`` keeps real logits (what derive keys rank candidates by)."""
    from nas.estimators import build_estimator
    roles = {role for _, role in build_estimator(name).create((1, 2), "categorical").values()}
    return "logits" in roles


def estimator_overrides(spec: str, config_estimator: Dict, sets: Sequence[str], label: str = "",
                        config_derive: Optional[Dict] = None) -> List[str]:
    """Overrides that switch the config to ``spec``: keep the config's estimator section only for the
    estimator it names (its temperatures etc. may not exist for another one); the config's
    ``derive:`` rules, which rank candidates by their logits, are turned off for an estimator
    without logits (bop)."""
    base = parse_spec(spec)
    out = []
    if base["estimator.name"] != config_estimator.get("name"):
        out.append("estimator=" + json.dumps({"name": base["estimator.name"]}))
        if not has_logits(base["estimator.name"]):
            offs = (("exclude", "[]"), ("max_skip", "null"), ("min_skip", "null"))
            out += [f"derive.{k}={off}" for k, off in offs if (config_derive or {}).get(k)]
    out += [f"{k}={v}" for k, v in base.items()]
    return out + set_overrides(sets, (spec, label, base["estimator.name"]))


def resolve_recipe(entry: str) -> Path:
    """A recipe name (``configs/recipes/NAME.yaml``) or a YAML path."""
    from nas.config import CONFIG_DIR
    if Path(entry).is_file():
        return Path(entry).resolve()
    shipped = CONFIG_DIR / "recipes" / f"{entry}.yaml"
    if shipped.is_file():
        return shipped
    known = sorted(p.stem for p in (CONFIG_DIR / "recipes").glob("*.yaml"))
    raise NasError(f"--recipes: '{entry}' is neither a YAML file nor a shipped recipe; shipped: {', '.join(known)}")


def check_recipe(path: Path) -> None:
    """A recipe that cannot run fails now (unknown keys, options out of range), not after hours."""
    from nas.config import load_config
    from nas.searcher.run import make_hooks
    make_hooks(load_config(path))


def set_overrides(sets: Sequence[str], names: Sequence[str]) -> List[str]:
    out = []
    for s in sets:
        name, sep, kv = s.partition(":")
        if not sep or "=" not in kv:
            raise NasError(f"--set '{s}': expected NAME:key=value")
        if name in names:
            out.append(kv)
    return out


def job_command(job: Job, restart: bool = False) -> Optional[List[str]]:
    """The command that (re)runs ``job``: None for a finished run (reused), ``nas-search --resume``
    for one an interruption kept with a checkpoint, else ``job.cmd`` (after removing what a run
    without a checkpoint left, or everything with ``restart``)."""
    import shutil
    if restart and job.out.exists():
        shutil.rmtree(job.out)
    if (job.out / "metrics.json").is_file():
        return None
    ckpt = job.out / "checkpoint.pt"
    if ckpt.is_file():
        print(f"nas-compare: {job.method} seed {job.seed}: resuming the run kept in {job.out} "
              f"(--restart starts it over)", file=sys.stderr)
        return [job.cmd[0], "-m", "nas", "--resume", str(job.out), "--quiet"]
    if job.out.exists():
        shutil.rmtree(job.out)  # stopped before its first checkpoint: nothing in it to resume
    return job.cmd


def config_changes(job: Job) -> Dict[str, tuple]:
    """``{dotted key: (the run's value, the command's)}`` where the config a finished search's
    ``config.yaml`` holds differs from the one ``job.cmd`` asks for (``{}`` for a run without a
    readable config, or not a search)."""
    from nas.config import Config, config_from_cli, from_dict, to_dict

    if job.cmd[1:3] != ["-m", "nas"] or "--out" not in job.cmd:
        return {}
    try:
        have = to_dict(from_dict(Config, load_yaml(job.out / "config.yaml")))
    except (NasError, OSError, TypeError, ValueError):
        return {}
    try:
        want = to_dict(config_from_cli([a for a in job.cmd[3:job.cmd.index("--out")] if not a.startswith("--")]))
    except ConfigError:
        return {}  # the command itself is refused when it runs

    def flat(d: dict, prefix: str = "") -> Dict[str, object]:
        out: Dict[str, object] = {}
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    h, w = flat(have), flat(want)
    return {k: (h.get(k), w.get(k)) for k in sorted(set(h) | set(w)) if h.get(k) != w.get(k)}


def refresh_derive(job: Job) -> None:
    """Bring a finished search in line with its command: derive its cell again where only the
    derive rule changed; a one-line error where the search itself would differ."""
    import yaml

    changes = config_changes(job)
    if not changes:
        return
    other = [k for k in changes if not k.startswith("derive.")]  # the derive rules, read after the search
    if other:
        have, want = changes[other[0]]
        raise NasError(f"{job.out} was searched with {other[0]}={have!r} and the command asks for {want!r}; "
                       f"give another --out, or --restart to search again")
    from nas.searcher.derive import derive
    want = {k.split(".", 1)[1]: v for k, (_, v) in changes.items()}
    derive(job.out, rules=[f"{k}={json.dumps(v)}" for k, v in want.items()], write=job.out / "genotype.yaml")
    path = job.out / "config.yaml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data.setdefault("derive", {}).update(want)  # so the next comparison finds the run current
    header = "".join(line + "\n" for line in text.splitlines()[:1] if line.startswith("#"))
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    print(f"nas-compare: {job.method} seed {job.seed}: derived again with "
          f"{' '.join(f'derive.{k}={v}' for k, v in want.items())} (the search is the same)", file=sys.stderr)


class Running:
    """The searches running now, and whether the comparison is stopping (then none starts)."""

    def __init__(self) -> None:
        self.procs: set = set()
        self.stopping = False
        self.lock = threading.Lock()

    def start(self, cmd: List[str], **kw) -> Optional[subprocess.Popen]:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, **kw)
            self.procs.add(proc)
            return proc

    def stop(self) -> None:
        """SIGINT to every running search: each ends keeping its last checkpoint."""
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)


def run_job(job: Job, env: Dict[str, str], restart: bool = False, running: Optional[Running] = None) -> None:
    cmd = job_command(job, restart)
    if cmd is None:
        return  # finished earlier: reuse
    job.out.parent.mkdir(parents=True, exist_ok=True)
    running = running or Running()
    with open(job.out.parent / f"{job.out.name}.log", "a" if cmd is not job.cmd else "w") as log:
        proc = running.start(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc is None:
            return  # the comparison is stopping
        rc = proc.wait()
    if rc != 0:
        tail = (job.out.parent / f"{job.out.name}.log").read_text().strip().splitlines()[-1:]
        raise NasError(f"{job.method} seed {job.seed} failed (exit {rc}): {tail[0] if tail else ''}")


def run_all(jobs: List[Job], n_parallel: int, threads: int, restart: bool = False) -> None:
    """Run ``jobs``, ``n_parallel`` at a time. The first failure, a signal or Ctrl-C stops the
    comparison at once: queued searches never start and running ones get SIGINT (a search
    keeps its checkpoint, which the next run of the comparison resumes)."""
    from concurrent.futures import FIRST_EXCEPTION, wait
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    running = Running()
    pool = ThreadPoolExecutor(max(n_parallel, 1))
    futures = [pool.submit(run_job, j, env, restart, running) for j in jobs]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f in done and f.exception() is not None:
                raise f.exception()
    finally:
        for f in futures:
            f.cancel()
        running.stop()
        pool.shutdown(wait=True)


def mean_std(xs: Sequence[float]) -> str:
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def collect(table: NB201Table, jobs: List[Job]) -> Dict[str, List[dict]]:
    rows: Dict[str, List[dict]] = {}
    for j in jobs:
        m = json.loads((j.out / "metrics.json").read_text())
        s = table.score(j.out)
        rows.setdefault(j.method, []).append({
            "seed": j.seed, "arch": s.arch, "cifar10": s.acc["cifar10"], "cifar100": s.acc["cifar100"],
            "imagenet16_120": s.acc["imagenet16_120"], "rank": s.rank["cifar10"], "n": s.n,
            "search_seconds": m["search_seconds"], "proxy_val_acc": m.get("val_acc"),
            "cells_trained": m.get("cells")})
    return rows


def md_cell(text: str) -> str:
    """``|`` escaped, so that a cell string stays one cell of a markdown table."""
    return text.replace("|", "\\|")


def report(rows: Dict[str, List[dict]], title: str) -> str:
    lines = [f"### {title}", "",
             "| method | NB201 CIFAR-10 test acc (%) | rank (mean) | CIFAR-100 | ImageNet16-120 | search min "
             "(mean, longest) | seeds | derived cells (CIFAR-10 %) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rand = rows.get(RANDOM)
    rand_mean = statistics.mean(r["cifar10"] for r in rand) if rand else None
    for method, rs in rows.items():
        accs = [r["cifar10"] for r in rs]
        cells = "<br>".join(f"`{md_cell(r['arch'])}` ({r['cifar10']:.2f})" for r in rs)
        name = method if method == RANDOM or rand_mean is None else (
            f"{method} {'>' if statistics.mean(accs) > rand_mean else '≤'} random")
        if method == RANDOM:
            name = f"random search ({statistics.mean(r['cells_trained'] or 0 for r in rs):.0f} cells)"
        secs = [r["search_seconds"] for r in rs]
        lines.append(f"| {name} | {mean_std(accs)} | {statistics.mean(r['rank'] for r in rs):.0f} / {rs[0]['n']} "
                     f"| {mean_std([r['cifar100'] for r in rs])} | {mean_std([r['imagenet16_120'] for r in rs])} "
                     f"| {statistics.mean(secs) / 60:.1f}, {max(secs) / 60:.1f} | "
                     f"{','.join(str(r['seed']) for r in rs)} | {cells} |")
    lines += ["", "Reference (NB201 CIFAR-10 test %): " + ", ".join(f"{n} {a:.2f}" for n, a in REFERENCES), ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    table = NB201Table.load(args.table, partial=args.partial_table)  # fail before hours of searching, not after
    # a bare path is labelled by its file name
    recipes = [(Path(label).stem if label == path else label, resolve_recipe(path)) for label, path in
               (split_label(r) for r in (args.recipes or "").split(",") if r.strip())]
    for _, path in recipes:
        check_recipe(path)
    if args.config is None and not recipes:
        raise NasError("give --config (with --estimators) or --recipes")
    estimators = args.estimators if args.estimators is not None else ("" if recipes else "softmax,gumbel,gumbel_hard")
    if estimators and args.config is None:
        raise NasError("--estimators switch the estimator of --config: give --config too")
    config = args.config or str(recipes[0][1])
    cfg_data = load_yaml(config)
    cfg_path = str(Path(config).resolve()) if Path(config).is_file() else config
    specs = [split_label(s) for s in estimators.split(",") if s.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise NasError(f"--seeds '{args.seeds}': expected comma-separated integers") from None
    if not (specs or recipes) or not seeds:
        raise NasError("give at least one estimator or recipe, and one seed")
    from nas.estimators import ESTIMATORS
    for _, spec in specs:  # a typo fails now, not after the first searches
        ESTIMATORS.get(parse_spec(spec)["estimator.name"], "--estimators")
    labels = [label for label, _ in specs + recipes]
    if len(set(labels)) < len(labels):
        raise NasError("--estimators/--recipes: each entry needs its own label (LABEL=SPEC for variants)")
    out = args.out or Path("runs") / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    common = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(args.jobs, 1))
    jobs = [Job(label, seed, out / label / f"seed{seed}",
                [sys.executable, "-m", "nas", cfg_path, *common,
                 *estimator_overrides(spec, cfg_data.get("estimator", {}), args.set, label,
                                      cfg_data.get("derive", {})),
                 f"seed={seed}", "--out", str(out / label / f"seed{seed}"), "--quiet"])
            for label, spec in specs for seed in seeds]
    jobs += [Job(label, seed, out / label / f"seed{seed}",
                 [sys.executable, "-m", "nas", str(path), *common, *set_overrides(args.set, (label, path.stem)),
                  f"seed={seed}", "--out", str(out / label / f"seed{seed}"), "--quiet"])
             for label, path in recipes for seed in seeds]
    what = Path(config).name if not recipes else "recipes " + ",".join(label for label, _ in recipes)
    if not args.restart:  # before any search starts: a stale run is an error now, not after hours
        for j in jobs:
            if (j.out / "metrics.json").is_file():
                refresh_derive(j)
    t0 = time.time()
    done: List[Job] = []
    try:
        run_all(jobs, args.jobs, threads, args.restart)
        done += jobs
        if not args.no_random:
            rows = collect(table, jobs)
            budget = args.random_budget or statistics.mean(
                r["search_seconds"] for rs in rows.values() for r in rs)
            rjobs = [Job(RANDOM, seed, out / RANDOM / f"seed{seed}",
                         [sys.executable, "-m", "nas.commands.random_search", cfg_path, *common,
                          f"seed={seed}", "--budget", f"{budget:.1f}", "--epochs-per-cell",
                          str(args.random_epochs), "--out", str(out / RANDOM / f"seed{seed}"), "--quiet"])
                     for seed in seeds]
            run_all(rjobs, args.jobs, threads, args.restart)
            done += rjobs
    except (NasError, KeyboardInterrupt) as e:
        finished = [j for j in jobs if (j.out / "metrics.json").is_file()]
        where = write_report(out, collect(table, finished), f"{what} {' '.join(args.overrides)} "
                             f"— partial: {len(finished)} of {len(jobs)} searches") if finished else None
        kept = (f"the partial report of {len(finished)} finished search(es) is in {where}" if where else
                "no search finished")
        again = "run the same command again to resume the rest (--restart starts over)"
        if isinstance(e, NasError):
            raise NasError(f"{e}; the other searches were stopped, {kept}; {again}") from None
        from nas.engine.signals import as_interrupted
        stop = as_interrupted(e)
        stop.note = f"interrupted by {stop.name}: {kept}; {again}"
        raise stop from None
    title = (f"{what} {' '.join(args.overrides)} — seeds {args.seeds}, "
             f"{args.jobs} parallel job(s) x {threads} thread(s), {(time.time() - t0) / 60:.0f} min total")
    rows = collect(table, done)
    write_report(out, rows, title)
    print(report(rows, title))
    print(f"written: {out / 'report.md'}")
    return 0


def write_report(out: Path, rows: Dict[str, List[dict]], title: str) -> Path:
    """``report.md`` and ``results.json`` of ``rows`` in ``out``; the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report(rows, title))
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    return out / "report.md"


def main(args: argparse.Namespace) -> int:
    return guarded("nas-compare", run, args)


def cli(argv=None) -> int:
    return entry("compare", argv)


if __name__ == "__main__":
    sys.exit(cli())
