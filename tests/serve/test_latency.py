"""Fast answers: `--help`, `list` and mistakes in the input import none of the heavy libraries.

torch, torchvision, scikit-learn and MLflow take seconds to import (Optuna a quarter of
one), so the commands that only read a study file or print must not import them. Each
case runs in a fresh interpreter and checks `sys.modules` afterwards; timing is left to
benchmarks (see the README), not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpstudy.spec.finding import BUNDLED_STUDIES_DIR

HEAVY = ("torch", "torchvision", "sklearn", "mlflow", "scipy", "pandas", "matplotlib")
RUN = """
import json, sys
from hpstudy.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exit:  # --help and argparse's usage errors
    code = exit.code
with open(sys.argv[1], "w") as fh:
    json.dump({"code": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}, fh)
"""


def run(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """`hpstudy ARGS` in a fresh interpreter in tmp_path: its exit code and top-level modules."""
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-c", RUN, str(report), *args], cwd=tmp_path, check=True,
                   capture_output=True)
    done = json.loads(report.read_text())
    return done["code"], set(done["modules"])


def stores(tmp_path: Path) -> list[str]:
    """--storage and --tracking-uri in tmp_path, so that a wrong check could not touch ./mlruns."""
    return ["--storage", f"sqlite:///{tmp_path}/optuna.db",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]


@pytest.mark.parametrize("args", [["--help"], ["optimize", "--help"], ["list"]],
                         ids=["help", "optimize-help", "list"])
def test_help_and_list_import_no_library(tmp_path, args):
    code, modules = run(tmp_path, *args)
    assert code == 0
    assert modules.isdisjoint((*HEAVY, "optuna", "tqdm"))


def test_a_typo_in_a_study_file_is_reported_without_importing_torch_or_mlflow(tmp_path):
    text = (BUNDLED_STUDIES_DIR / "digits_mlp.toml").read_text()
    assert "\nepochs = " in text
    path = tmp_path / "typo.toml"
    path.write_text(text.replace("\nepochs = ", "\nepcohs = "))
    code, modules = run(tmp_path, "optimize", "--study", str(path), *stores(tmp_path))
    assert code == 2
    assert modules.isdisjoint(HEAVY)
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("args", [
    ["optimize", "--study", "no_such_study"],
    ["optimize", "--study", "digits_mlp", "--set", "train.epochs"],
    ["optimize", "--study", "digits_mlp", "--set", "train.epochs=0"],
    ["optimize", "--study", "digits_mlp", "--trials", "-1"],
    ["optimize", "--study", "digits_mlp", "--jobs", "two"],
    ["select", "--study", "digits_mlp", "--set", "sampler.name=tpf"],
    ["optimize", "--study", "digits_mlp", "--device", "gpu"],
    ["optimize", "--study", "digits_mlp", "--jobs", "0"],
], ids=["unknown-study", "set-without-value", "set-bad-value", "negative-trials", "jobs-not-int",
        "select-unknown-sampler", "bad-device", "zero-jobs"])
def test_flag_and_study_errors_are_reported_without_importing_torch_or_mlflow(tmp_path, args):
    code, modules = run(tmp_path, *args, *stores(tmp_path))
    assert code == 2
    assert modules.isdisjoint(HEAVY)


def test_a_bad_store_url_is_reported_without_importing_torch_or_mlflow(tmp_path):
    code, modules = run(tmp_path, "optimize", "--study", "digits_mlp", "--storage",
                        "optuna.db", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert code == 2
    assert modules.isdisjoint(HEAVY)


def test_every_shipped_study_is_checked_without_importing_torch_or_mlflow():
    code = ("import sys\nfrom hpstudy.spec.finding import BUNDLED_STUDIES_DIR\n"
            "from hpstudy.spec.study_file import load_study\n"
            "for path in BUNDLED_STUDIES_DIR.glob('*.toml'):\n    load_study(str(path))\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
