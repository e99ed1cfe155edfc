"""Study-level views: drawn from a real study, titled and labelled; warnings where they belong."""

from __future__ import annotations

import io

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpstudy.report.table import trials_table
from hpstudy.report.views import (
    best_params,
    edge_warnings,
    lr_momentum_map,
    study_views,
)
from hpstudy.run.optimize import load_data
from hpstudy.search.record import COMPLETE, DIVERGED, Process, TrialRecord
from hpstudy.spec.study_file import load_study

PNG = b"\x89PNG\r\n\x1a\n"


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60)
    return buffer.getvalue()


@pytest.mark.slow
def test_every_view_of_a_finished_study_is_drawn_titled_and_labelled(finished_study):
    config, stores, _, _ = finished_study
    study = optuna.load_study(study_name=config.name, storage=stores.storage)
    views = study_views(study, config, load_data(config))
    names = {v.filename for v in views}
    assert {"optimization_history.png", "intermediate_values.png", "parallel_coordinate.png",
            "param_importances.png", "slice.png", "lr_momentum.png", "size_accuracy.png",
            "samples.png"} <= names
    for view in views:
        assert view.figure is not None, (view.filename, view.why_not)
        assert view.figure._suptitle or any(ax.get_title() for ax in view.figure.axes), view
        main = view.figure.axes[0]
        assert main.get_xlabel() or main.get_xticklabels(), view.filename  # parallel: names
        assert main.get_ylabel() or view.filename == "parallel_coordinate.png", view.filename
        data = png_bytes(view.figure)
        assert data.startswith(PNG) and len(data) > 5_000, view.filename


def test_a_study_with_one_completed_trial_says_why_a_view_is_missing(write_study):
    config = load_study(str(write_study()))
    study = optuna.create_study()
    study.add_trial(create_trial(params={"lr": 0.1}, value=0.5,
                                 distributions={"lr": FloatDistribution(0.01, 0.3, log=True)}))
    history = next(v for v in study_views(study, config, None)
                   if v.filename == "optimization_history.png")
    assert history.figure is None and "needs 2 completed trials" in history.why_not


def test_the_edge_warning_fires_only_where_the_best_lr_sits_on_its_bound_of_10_trials(
        write_study):
    config = load_study(str(write_study()))  # lr in [0.01, 0.3], log
    lr = {"lr": FloatDistribution(0.01, 0.3, log=True)}
    for best_lr, others, warned in ((0.3, 9, True), (0.05, 9, False), (0.3, 1, False)):
        study = optuna.create_study()  # the best, then `others` worse: 2 trials are too few
        for number, (value, loss) in enumerate([(best_lr, 0.1)] + [(0.02, 0.9)] * others):
            kept = TrialRecord(trial=number, attempt=1, process=Process.this(), state=COMPLETE,
                               weights_uri=f"runs:/{number}/weights.pt")  # selectable
            study.add_trial(create_trial(params={"lr": value}, value=loss, distributions=lr,
                                         user_attrs=kept.attrs()))
        warnings = edge_warnings(study, config)
        assert any("lr = 0.3" in w for w in warnings) is warned, warnings
        assert best_params(study)["best.lr"] == best_lr


def test_the_lr_momentum_map_marks_diverged_trials_apart(write_study):
    config = load_study(str(write_study()))
    space = {"lr": FloatDistribution(0.01, 0.3, log=True), "momentum": FloatDistribution(0, 0.9)}
    study = optuna.create_study()
    study.add_trial(create_trial(params={"lr": 0.05, "momentum": 0.5}, value=0.2,
                                 distributions=space))
    diverged = TrialRecord(trial=1, attempt=1, process=Process.this(), state=DIVERGED)
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"lr": 0.3, "momentum": 0.9},
                                 distributions=space, intermediate_values={1: float("inf")},
                                 user_attrs=diverged.attrs()))
    figure = lr_momentum_map(study.trials, config).figure
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert labels == ["completed", "diverged"]
    assert figure.axes[0].get_xscale() == "log"


def test_the_trial_table_has_a_row_per_trial_with_hpstudys_record(finished_study):
    config, stores, _, _ = finished_study
    table = trials_table(optuna.load_study(study_name=config.name, storage=stores.storage))
    assert list(table["number"]) == [0, 1, 2, 3, 4]
    assert {"outcome", "val_loss", "val_acc", "params_lr", "n_params", "run_id"} <= set(table)
    assert (table["n_params"] > 0).all() and table["run_id"].str.len().gt(0).all()
