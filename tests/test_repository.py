"""The repository is self-contained: no tracked file names a path outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the product is made of (source, tests, benchmarks, studies, docs).
SCOPES = ("diffdesign", "tests", "benchmarks", "experiments", "surrogates", "README.md")

_SLASH = "/"
_SHARED = "shared" + _SLASH
#: Paths that leave the repository, built from pieces so that this file does not match itself:
#: absolute home/work folders, the team's shared folder next to the clone.
OUTSIDE = re.compile(
    "|".join(
        [
            re.escape(_SLASH + name + _SLASH) + r"\w"
            for name in ("work", "home", "root")  # /work/..., /home/..., /root/...
        ]
        + [
            re.escape(".." + _SLASH + _SHARED),  # the shared folder beside the clone
            re.escape(_SHARED) + r"(?:data|peers|hooks|seeds)\b",  # its data and peer scripts
            re.escape(_SHARED) + r"[\w.-]*\.md\b",  # its design notes
        ]
    )
)


def tracked_files() -> list[Path]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--", *SCOPES],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listing.decode().split("\0") if name]


def outside_references(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line that names a path outside the repository."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if OUTSIDE.search(line)
    ]


@pytest.mark.parametrize(
    ("line", "outside"),
    [
        ("lattice = Path('" + _SLASH + "work" + _SLASH + "shared/x.m')", True),
        ("see " + _SLASH + "home" + _SLASH + "me/file", True),
        ("open('" + _SLASH + "root" + _SLASH + "data')", True),
        ("see `.." + _SLASH + _SHARED + "README`", True),
        ("the " + _SHARED + "data" + _SLASH + "rings folder", True),
        ("the script in " + _SHARED + "peers" + _SLASH + "x.py", True),
        (_SHARED + "DESIGN.md says", True),
        ("weights shared by the members", False),
        ("diffdesign/ring/data/nsls2.m", False),
        ("a shared/compiled program", False),
        ("/tmp/smoke and results/ring", False),
    ],
)
def test_the_pattern_catches_outside_paths_only(line, outside):
    assert bool(OUTSIDE.search(line)) is outside


def test_no_tracked_file_names_a_path_outside_the_repository():
    hits = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary data, or deleted in the working tree
        hits += [f"{path.relative_to(ROOT)}:{n}: {line}" for n, line in outside_references(text)]
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)


def test_ci_runs_the_readmes_test_command():
    """`.ci/run` and README's "Run the tests" are one command (install, default run, then the
    slow and smoke tests)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Run the tests**", 1)[1]
    command = re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
    assert command.endswith("python -m pytest && .venv/bin/python -m pytest -m 'slow or smoke'")
