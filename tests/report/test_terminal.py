"""What `optimize` prints at the end: the link it gives opens the runs in a real MLflow UI."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from mlflow import MlflowClient
from servers import mlflow_server

from hpstudy.storage import runs_link

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered(url: str) -> str:
    """The page's DOM once its scripts have run, in headless Chromium."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_printed_link_opens_the_runs_table_with_the_trials_in_the_mlflow_ui(finished_study,
                                                                               tmp_path):
    config, stores, _, _ = finished_study
    experiment = MlflowClient(stores.tracking_uri).get_experiment_by_name(config.name)
    with mlflow_server(stores.tracking_uri, tmp_path / "artifacts") as url:
        link = runs_link(url, experiment.experiment_id)
        page = rendered(link)
        bare = rendered(f"{url}/#/experiments/{experiment.experiment_id}")  # the old link
    runs = MlflowClient(stores.tracking_uri).search_runs([experiment.experiment_id])
    trial_runs = [r for r in runs if r.info.run_name.startswith("trial-")]
    assert len(trial_runs) >= 5
    for run in trial_runs:  # every trial's row, not folded under its call's parent run
        assert f">{run.info.run_name}<" in page, (run.info.run_name, page[-2000:])
    assert "optimize from trial" in page  # and the calls' parent runs
    digests = {i.dataset.digest for r in runs for i in r.inputs.dataset_inputs}
    assert any(f'title="digits ({d})"' in page for d in digests)  # the Dataset column
    assert "optimize from trial" not in bare  # MLflow 3's GenAI overview instead


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_models_tab_lists_the_champion_as_a_logged_model(finished_study, tmp_path):
    config, stores, _, _ = finished_study
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name(config.name).experiment_id
    champion = client.get_model_version_by_alias(config.name, "champion")
    model = client.get_logged_model(champion.source.removeprefix("models:/"))
    with mlflow_server(stores.tracking_uri, tmp_path / "artifacts") as url:
        page = rendered(f"{url}/#/experiments/{experiment}/models")
    assert model.name in page, page[-2000:]  # the champion's trial, e.g. trial-3
    assert config.name in page  # and the registered model it became a version of
