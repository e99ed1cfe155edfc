"""The package's layout: what the README's map says, what the wheel ships, what imports what."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hpstudy"
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def top_level_imports(path: Path) -> set[str]:
    """hpstudy modules imported when `path` is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports nothing at run time
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpstudy"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hpstudy")}
    return found


def test_the_readme_map_names_every_subpackage_and_nothing_that_is_gone():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Code map"):]
    tree = section[section.index("```text"):section.index("```", section.index("```text") + 3)]
    named = set(re.findall(r"^  (\w+)/ ", tree, flags=re.M))  # the folders under hpstudy/
    assert named == set(SUBPACKAGES)


def test_pyproject_packages_every_subpackage_and_the_studies():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert listed == {"hpstudy", "hpstudy.studies"} | {f"hpstudy.{p}" for p in SUBPACKAGES}
    assert config["package-dir"]["hpstudy.studies"] == "studies"


def test_no_import_cycle_between_hpstudy_modules():
    graph = {name: top_level_imports(path) & MODULES.keys() - {name}
             for name, path in MODULES.items()}
    done, path = set(), []

    def visit(name: str) -> None:
        if name in path:
            cycle = [*path[path.index(name):], name]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        path.append(name)
        for child in graph[name]:
            if not (name.startswith(child + ".")):  # a package's own __init__
                visit(child)
        path.pop()
        done.add(name)

    for name in graph:
        visit(name)


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
    return roots


def test_only_tracking_and_serving_talk_to_mlflow_and_training_knows_no_optuna():
    for name, path in MODULES.items():
        roots = imported_roots(path)
        if "mlflow" in roots:
            assert name.startswith(("hpstudy.tracking", "hpstudy.serve")), name
        if name.startswith(("hpstudy.train", "hpstudy.models", "hpstudy.data")):
            assert not roots & {"optuna", "mlflow"}, name


def test_no_module_is_much_over_three_hundred_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 420}
    assert not long


@pytest.mark.slow
def test_the_wheel_holds_every_shipped_study(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("hpstudy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "studies").glob("*.toml")}
    assert shipped and {f"hpstudy/studies/{n}" for n in shipped} <= names
    assert {f"hpstudy/{p}/__init__.py" for p in SUBPACKAGES} <= names
    assert any(n.endswith("dist-info/licenses/LICENSE") or n.endswith("LICENSE") for n in names)
