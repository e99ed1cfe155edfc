"""The README's promises: its commands are the ones CI runs, and its snippet works."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def test_the_readme_opens_with_the_study_command_then_the_test_command():
    (lang1, run), (lang2, test) = BLOCKS[0], BLOCKS[1]
    assert lang1 == lang2 == "bash"
    assert "hpstudy optimize --study digits_mlp" in run and "pip install" in run
    assert "pytest" in test and "pip install" in test


def test_ci_runs_the_readmes_test_command_verbatim():
    test_command = BLOCKS[1][1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readme_snippet_loads_and_runs_the_champion(finished_study, capsys):
    config, stores, _, _ = finished_study
    snippet = next(code for lang, code in BLOCKS if lang == "python" and "load_model" in code)
    snippet = snippet.replace("sqlite:///mlruns/mlflow.db", stores.tracking_uri)
    exec(snippet.replace("digits_mlp", config.name), {})
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(r"\[\d(, \d){4}\]", printed)
