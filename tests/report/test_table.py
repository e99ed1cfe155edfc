"""The trial table `hpstudy trials` prints: from the Optuna store alone, quick to start."""

from __future__ import annotations

import subprocess
import sys

import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from hpstudy.report.table import trials_table
from hpstudy.report.terminal import trial_line, trials_text
from hpstudy.search.record import COMPLETE, Process, TrialRecord

SPACE = {"lr": FloatDistribution(1e-3, 1.0, log=True), "width": IntDistribution(16, 512),
         "depth": IntDistribution(0, 3)}


def mlp_study(storage: str | None = None) -> optuna.Study:
    """A digits_mlp study with two trials: depth 2 (width used) and depth 0 (width ignored)."""
    study = optuna.create_study(study_name="digits_mlp", storage=storage)
    study.set_metric_names(["val_loss"])
    for number, (depth, loss, unused) in enumerate(((2, 0.4, []), (0, 0.2, ["width"]))):
        record = TrialRecord(trial=number, attempt=1, process=Process("h", 1, 1), run_id="r",
                             state=COMPLETE, val_acc=0.9, n_params=650, unused=unused)
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.1, "width": 64, "depth": depth}, distributions=SPACE, value=loss,
            user_attrs=record.attrs()))
    return study


def test_a_width_the_network_ignores_is_left_blank():
    table = trials_table(mlp_study())
    assert table["params_width"].tolist()[0] == 64 and table["params_width"].isna().tolist() == [
        False, True]
    header, best, other = trials_text(table).splitlines()[:3]
    width = slice(header.index("width"), header.index("width") + len("width"))
    assert best.split()[0] == "1" and best[width].strip() == "" and other[width].strip() == "64"
    assert "<NA>" not in best and "nan" not in best
    study = mlp_study()
    assert "width=64" in trial_line(study, study.trials[0])  # the line optimize prints
    assert "width" not in trial_line(study, study.trials[1]) and "depth=0" in trial_line(
        study, study.trials[1])


def test_hpstudy_trials_reads_the_store_without_importing_torch_or_mlflow(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    mlp_study(storage)
    probe = ("import sys; from hpstudy.cli import main; code = main(['trials', '--study', "
             f"'digits_mlp', '--storage', '{storage}']); "
             "print([m for m in ('torch', 'mlflow') if m in sys.modules], code)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.stdout.splitlines()[-1] == "[] 0", done.stdout + done.stderr
    assert "<- champion" not in done.stdout and "2 trials" in done.stdout
