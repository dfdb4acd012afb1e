"""The documentation site (docs/, README.md): every Python and shell block a reader is told to run
runs as written, the generated configuration reference lists exactly the config keys, and every
public name is documented.

A fenced ``python`` or ``bash`` block runs unless the line before it is ``<!-- no-test: why -->``
(installs, GPU and multi-hour commands). A page's Python blocks run in order as one script, in a
fresh process (user extensions register into global registries) from an empty folder; its shell
blocks run one by one from the same folder, with the installed commands on ``PATH``.
"""
import dataclasses
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

DOCS = REPO / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
NO_TEST = re.compile(r"<!--\s*no-test:\s*\S.*?-->\s*$")
RUNNABLE = {"python", "bash"}


def pages():
    return [REPO / "README.md"] + sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def blocks(path: Path):
    """``(lang, code, skipped)`` of every fenced block of ``path``, dedented."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        indent = m.group("indent")
        code = "".join(line[len(indent):] if line.startswith(indent) else line
                       for line in m.group("body").splitlines(keepends=True))
        out.append((m.group("lang"), code, bool(NO_TEST.search(before))))
    return out


def runnable(path: Path, lang: str):
    return [code for lng, code, skipped in blocks(path) if lng == lang and not skipped]


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def env(tmp: Path):
    keep = {k: os.environ[k] for k in ("NAS_NB201_TABLE",) if k in os.environ}
    return {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NAS_CACHE": str(tmp / "cache"),
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp), **keep}


def test_the_fence_parser_reads_indented_blocks_and_markers(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n* item\n\n  ```bash\n  echo hi\n  ```\n\n"
                    "<!-- no-test: installs -->\n```bash\npip install x\n```\n\n```text\nout\n```\n")
    assert blocks(page) == [("python", "x = 1\n", False), ("bash", "echo hi\n", False),
                            ("bash", "pip install x\n", True), ("text", "out\n", False)]


@pytest.mark.parametrize("page", [p for p in pages() if runnable(p, "python")], ids=page_id)
def test_python_blocks_run(page, tmp_path):
    script = "\n\n".join(runnable(page, "python"))
    (tmp_path / "page.py").write_text(script)
    r = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=env(tmp_path), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"{page_id(page)}:\n{r.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in pages() if runnable(p, "bash")], ids=page_id)
def test_shell_blocks_run(page, tmp_path):
    for code in runnable(page, "bash"):
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env(tmp_path),
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{page_id(page)}: {code}\n{r.stderr[-3000:]}"


def test_every_skipped_block_says_why():
    for page in pages():
        text = page.read_text()
        for m in re.finditer(r"<!--\s*no-test:(.*?)-->", text):
            assert m.group(1).strip(), f"{page_id(page)}: a no-test marker without a reason"


def test_readme_is_a_front_door_with_the_commands_ci_runs():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert "pip install torch==2.14.1 torchvision==0.29.1 -e . && nas-search" in text
    assert "pip install -e '.[test]' && python -m pytest -q" in text
    assert runnable(REPO / "README.md", "python"), "the README's Python example is run"


def test_readme_links_point_to_files_of_the_checkout():
    # mkdocs checks the site's links; the README is read on the repository's front page instead
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (REPO / "README.md").read_text())
    assert links and [link for link in links if "://" not in link and not (REPO / link).is_file()] == []


def test_docs_name_installed_commands_not_checkout_scripts():
    shims = ("tools/derive.py", "tools/nb201_lookup.py", "tools/compare_estimators.py", "tools/bench_speed.py",
             "tools/retrain.py")
    for page in pages():
        text = page.read_text()
        assert not [s for s in shims if s in text], page_id(page)


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "_hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_lists_every_key_with_its_default_and_range(reference):
    from nas.bounds import walk_fields
    from nas.config import Config
    from nas.retrainer.config import RetrainConfig
    page = html.unescape(reference.render())   # the page escapes < and > for HTML
    rows = {line.split(" | ")[0].strip("| `"): line for line in page.splitlines() if line.startswith("| `")}
    for cls in (Config, RetrainConfig):
        for key, f, _ in walk_fields(cls):
            assert key in rows, key
            rng = f.metadata.get("range")
            if rng is not None:
                assert reference.describe(rng) in rows[key].replace("\\|", "|"), key
                if not any(isinstance(b, str) for b in (rng.ge, rng.gt, rng.le, rng.lt)):
                    assert reference.describe(rng) == rng.describe(), key   # the words of the error
    assert "| `estimator.tau` | `float` | `1.0` | [0.01, 10000.0] |" in page   # softmax's, gumbel's: the entry's own option
    assert "| `optim.weights.lr_min` | `float` | `0.001` | [0, lr] |" in page
    # a space's keys are listed under the space that declares them
    darts = page.split("### `darts`: `Options`", 1)[1].split("###", 1)[0]
    assert "| `space.layers` | `int` | `8` | >= 1 |" in darts and "| `derive.max_skip` |" in page


def test_field_comments_are_read_from_the_source(reference):
    @dataclasses.dataclass
    class Section:
        a: int = 1        # on the line
        # above the field
        b: int = 2
        c: int = 3

    assert reference.field_comments(Section) == {"a": "on the line", "b": "above the field"}


def test_every_public_name_and_registry_entry_has_a_docstring():
    # a fresh interpreter: entries that other tests register in this process are not the package's
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('r', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print(m.undocumented())")
    out = subprocess.run([sys.executable, "-c", code, str(DOCS / "_hooks" / "reference.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
