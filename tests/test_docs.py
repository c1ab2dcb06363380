"""The documentation site builds without a warning, and every tutorial runs as printed.

Each tutorial page is one executable story: its Python blocks run in order, in one fresh
namespace per page, from an empty working folder, under the suite's strict settings (float64,
no implicit rank promotion, warnings as errors). What a page shows is therefore what the
code does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
#: One page per domain, and one for joint design.
EXPECTED = {"ares", "beamline", "inferno", "joint_design", "lgso", "muography", "ring", "xpcs"}
FENCE = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def test_one_tutorial_per_domain_each_with_code():
    assert {page.stem for page in TUTORIALS} == EXPECTED
    for page in TUTORIALS:
        assert len(python_blocks(page)) >= 3, f"{page.name} has fewer than 3 Python blocks"


def test_cli_page_has_every_command():
    """docs/cli.md is generated (docs/gen_cli.py); a new command needs a rerun of it."""
    from diffdesign import cli

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = [f"diffdesign {d} {v}" for d, verbs in cli.discover().items() for v in verbs]
    missing = [c for c in commands if f"### {c}\n" not in text]
    assert not missing, f"docs/cli.md lacks {missing}: run python docs/gen_cli.py"


def test_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's banner about MkDocs 2
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "tutorials/ares/index.html", "api/design/index.html"):
        assert (site / page).is_file(), page


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda page: page.stem)
def test_tutorial_runs_as_printed(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_tutorial_{page.stem}"}
    for number, code in enumerate(python_blocks(page), start=1):
        exec(compile(code, f"{page.relative_to(ROOT)}, block {number}", "exec"), namespace)
