"""Dependencies run one way: experiments -> design -> domains and inference -> core and the
shared modules. Statistics and surrogates know no physics; no domain knows the design layer
or the experiments; the core knows nothing but the shared modules.

Every ``import`` of every module (function bodies included) is read from the source, so a
lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "diffdesign"
#: What each package may import from diffdesign: itself, the shared modules and the core.
ALLOWED = {
    "inference": ("diffdesign.inference", "diffdesign._", "diffdesign.core"),
    "surrogates": ("diffdesign.surrogates", "diffdesign._", "diffdesign.core"),
    "xpcs": ("diffdesign.xpcs", "diffdesign.inference", "diffdesign._", "diffdesign.core"),
    "beamline": ("diffdesign.beamline", "diffdesign.inference", "diffdesign._", "diffdesign.core"),
    "ring": ("diffdesign.ring", "diffdesign.inference", "diffdesign._", "diffdesign.core"),
    "muography": (
        "diffdesign.muography",
        "diffdesign.inference",
        "diffdesign._",
        "diffdesign.core",
    ),
    "core": ("diffdesign.core", "diffdesign._"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            # ``from diffdesign import design`` names the subpackage in the alias
            if node.module == "diffdesign":
                found += [(node.lineno, f"diffdesign.{alias.name}") for alias in node.names]
    return found


def forbidden_imports(package: str) -> list[str]:
    hits = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for line, module in imported_modules(path):
            outside = module.startswith(("diffdesign.", "experiments"))
            if outside and not module.startswith(ALLOWED[package]):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return hits


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    assert forbidden_imports(package) == []


def test_the_check_sees_lazy_imports(tmp_path, monkeypatch):
    module = tmp_path / "surrogates" / "bad.py"
    module.parent.mkdir()
    module.write_text(
        "def f():\n    from diffdesign.design import bayesopt\n    import experiments\n"
    )
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    assert [hit.split(" imports ")[1] for hit in forbidden_imports("surrogates")] == [
        "diffdesign.design",
        "experiments",
    ]
