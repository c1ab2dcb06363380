"""The README's Python examples run exactly as printed: each block on its own, in a fresh
namespace, from an empty working folder (so no block leans on another's imports or on the
repository root being the current folder)."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_as_printed(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(BLOCKS[index], f"README.md block {index + 1}", "exec"), namespace)
