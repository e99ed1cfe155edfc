"""A user's own network and data, end to end: every command, --jobs, serving without the code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from user_package import write_package, write_study

import hpstudy
from hpstudy.errors import UserError
from hpstudy.search.record import ATTR, TrialRecord
from hpstudy.spec.study_file import load_study
from hpstudy.tracking.artifacts import load_weights

pytestmark = pytest.mark.slow

ENQUEUED = {"lr": 0.05, "channels": 8, "act": "tanh"}


def hpstudy_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the user's cwd only
    return subprocess.run([sys.executable, "-m", "hpstudy", *args, "--storage",
                           f"sqlite:///{cwd}/optuna.db", "--tracking-uri",
                           f"sqlite:///{cwd}/mlflow.db"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def user_study(tmp_path_factory):
    """A user's package and study file in a folder of their own, optimized once by the CLI."""
    folder = tmp_path_factory.mktemp("user")
    module = write_package(folder)
    path = write_study(folder, module)
    path.write_text(path.read_text() + "\n[[enqueue]]\n" + "\n".join(
        f"{k} = {json.dumps(v)}" for k, v in ENQUEUED.items()) + "\n")
    done = hpstudy_cli("optimize", "--study", path.name, "--trials", "4", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder, module, path


def test_four_trials_search_the_users_keys_and_a_champion_is_registered(user_study):
    folder, module, _ = user_study
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    study = optuna.load_study(study_name="mine", storage=f"sqlite:///{folder}/optuna.db")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].params == ENQUEUED  # [[enqueue]]: the first trial is the queued point
    for trial in trials:
        params = client.get_run(TrialRecord.of(trial).run_id).data.params
        assert params["channels"] in ("4", "8") and params["act"] in ("relu", "tanh")
        assert params["model.code.path"] == f"{module}:SmallCNN"
        assert len(params["model.code.sha256"]) == 64
        assert params["data.code.path"] == f"{module}:stripes"
    assert str(client.get_model_version_by_alias("mine", "champion").version) == "1"


@pytest.mark.parametrize("command", [["select"], ["trials"], ["report"],
                                     ["reproduce", "--trial", "0"]])
def test_every_command_works_on_the_same_study_file(user_study, command):
    folder, _, path = user_study
    done = hpstudy_cli(command[0], "--study", path.name, *command[1:], cwd=folder)
    assert done.returncode == 0, done.stderr
    if command[0] == "reproduce":
        assert "Reproduced" in done.stdout


def test_the_champion_predicts_the_same_classes_where_the_users_code_is_not(user_study,
                                                                            tmp_path):
    folder, module, path = user_study
    sys.path.insert(0, str(folder))
    try:
        config = load_study(str(path))
        from hpstudy.data import load
        from hpstudy.models import build_model

        data = load(config.data.name, config.data.options)
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        version = client.get_model_version_by_alias("mine", "champion")
        trial = int(version.tags["trial"])
        chosen = optuna.load_study(study_name="mine",
                                   storage=f"sqlite:///{folder}/optuna.db").trials[trial]
        record = TrialRecord.of(chosen)
        network = build_model(config.model, data, chosen.params)
        network.load_state_dict(load_weights(record.weights_uri, f"sqlite:///{folder}/mlflow.db"))
        expected = network.eval()(data.test.x).argmax(1).tolist()
    finally:
        sys.path.remove(str(folder))
    np.save(tmp_path / "images.npy", data.test.x.numpy()[:, 0])
    code = textwrap.dedent(f"""
        import importlib.util, json, sys
        import mlflow, numpy as np
        assert importlib.util.find_spec({module!r}) is None, "the user's code is importable"
        mlflow.set_tracking_uri("sqlite:///{folder}/mlflow.db")
        model = mlflow.pyfunc.load_model("models:/mine@champion")
        images = np.load("images.npy")
        print(json.dumps(model.predict({{"image": list(images)}})["class_index"].tolist()))
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
    assert np.mean(np.array(expected) == data.test.y.numpy()) > 0.9  # it learnt the stripes


def test_two_worker_processes_run_the_users_study(tmp_path):
    module = write_package(tmp_path)
    path = write_study(tmp_path, module, name="mine_jobs")
    done = hpstudy_cli("optimize", "--study", path.name, "--trials", "4", "--jobs", "2",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="mine_jobs", storage=f"sqlite:///{tmp_path}/optuna.db")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert len({TrialRecord.of(t).process.pid for t in complete}) == 2  # two workers ran them
    assert "Champion: trial" in done.stdout


def test_a_worker_with_changed_code_is_refused(tmp_path):
    module = write_package(tmp_path)
    path = write_study(tmp_path, module, name="changing")
    assert hpstudy_cli("optimize", "--study", path.name, "--trials", "1", cwd=tmp_path
                       ).returncode == 0
    source = tmp_path / f"{module}.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    done = hpstudy_cli("worker", "--study", path.name, "--trials", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "was run with other code than this call has (data.code.sha256" in done.stderr
    assert "model.code.sha256: the study's" in done.stderr
    assert "Traceback" not in done.stderr
    study = optuna.load_study(study_name="changing", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 1  # nothing ran with the other code


def test_the_python_api_takes_the_network_as_an_object(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = write_package(tmp_path)
    path = write_study(tmp_path, module, name="from_python")
    sys.path.insert(0, str(tmp_path))
    try:
        network = __import__(module).SmallCNN
        result = hpstudy.optimize(str(path), trials=2, architecture=network,
                                  overrides={"train.epochs": 1}, enqueue=[ENQUEUED],
                                  storage=f"sqlite:///{tmp_path}/o.db",
                                  tracking_uri=f"sqlite:///{tmp_path}/m.db")
        with pytest.raises(UserError, match="defined at the top of a module"):
            hpstudy.optimize(str(path), architecture=lambda **kw: network(**kw))
    finally:
        sys.path.remove(str(tmp_path))
    assert result.champion == "models:/from_python@champion" and str(result.version) == "1"
    assert len(result.trials) == 2 and list(result.trials["state"]) == ["COMPLETE"] * 2
    assert result.trials.loc[0, "params_channels"] == 8
    assert result.outcome.study.trials[0].user_attrs[ATTR]  # the trial record is there


EXPLODING = '''

import torch


class Exploding(SmallCNN):
    """SmallCNN whose first logit is raised by `blow` (not learnt): a loss near `blow`, finite."""

    def __init__(self, input_shape: tuple, num_outputs: int, blow: float = 0.0):
        super().__init__(input_shape, num_outputs)
        self.register_buffer("lift", torch.nn.functional.one_hot(torch.tensor(0), num_outputs))
        self.blow = blow

    def forward(self, x):
        return super().forward(x) + self.blow * self.lift
'''


def test_a_trial_whose_loss_explodes_to_a_finite_1e20_is_diverged_and_kept_off_every_axis(
        tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from hpstudy.report.views import study_views

    module = write_package(tmp_path, EXPLODING)
    path = write_study(tmp_path, module, **{
        "SmallCNN": "Exploding", 'act = {{ choices = ["relu", "tanh"] }}'.format():
        "blow = { choices = [0.0, 1e20] }", "lr = { low = 0.02, high = 0.3, log = true }":
        "lr = { choices = [0.05, 0.1] }", 'name = "tpe"': 'name = "brute_force"',
        "channels = { choices = [4, 8] }": ""})
    done = hpstudy_cli("optimize", "--study", path.name, "--trials", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="mine", storage=f"sqlite:///{tmp_path}/optuna.db")
    blown = [t for t in study.trials if t.params["blow"] == 1e20]
    assert len(blown) == 2 and all(TrialRecord.of(t).state == "diverged" for t in blown)
    assert all("exploded to" in t.user_attrs["hpstudy.fail_reason"] for t in blown)
    assert study.user_attrs["hpstudy.champion"]["trial"] not in {t.number for t in blown}
    assert "2 diverged" in done.stdout  # the counts optimize prints
    monkeypatch.chdir(tmp_path)  # the study file's folder, where its module is found
    monkeypatch.syspath_prepend(str(tmp_path))
    views = [v for v in study_views(study, load_study(path.name), None)
             if isinstance(v.figure, Figure)]
    losses = [(v.filename, ax) for v in views for ax in v.figure.axes
              if "loss" in ax.get_ylabel().lower() or "objective" in ax.get_ylabel().lower()]
    assert len({name for name, _ in losses}) >= 3  # history, intermediate values, slice ...
    for name, ax in losses:  # no axis of a loss reaches the exploded values
        assert max(map(abs, ax.get_ylim())) < 1e6, (name, ax.get_ylabel(), ax.get_ylim())
