"""What a call leaves for people to look at: the study's views, table and report, in MLflow.

At the end of every `optimize` call its parent run gets the study as it stands: Optuna's
views and the seeds' hand-drawn ones (`views`), the best parameters as params, the
edge-of-range warnings as a tag, the trial table as `study/trials.csv` and the HTML
report (`report`) as `study/report.html`.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from hpstudy.data import Dataset
from hpstudy.report.page import render
from hpstudy.report.reuse import REPORT_FILE, SHOWS_TAG, study_state
from hpstudy.report.table import trials_table
from hpstudy.report.views import (
    SAMPLES_PNG,
    View,
    best_params,
    edge_warnings,
    has_samples,
    sample_images,
    samples_figure,
    study_views,
)
from hpstudy.run.select import CHAMPION
from hpstudy.spec.study_file import StudyConfig
from hpstudy.storage import DEFAULT_TRACKING_URI
from hpstudy.tracking.runs import RunEnd, Tracker

EDGE_TAG = "hpstudy.edge_warning"  # searched parameters whose best value sits on a bound
TABLE_FILE = "trials.csv"  # under the run's study/, beside REPORT_FILE


def early_views(config: StudyConfig, data: Dataset, tracker: Tracker, run_id: str
                ) -> RunEnd | None:
    """The views that need no trial (the dataset's samples), as a job for the writer, which
    draws them while the first trials train; None where there are none."""
    if not has_samples(data):
        return None
    return RunEnd(tracker.uri, run_id, "", {}, figures=(
        (f"study/{SAMPLES_PNG}", samples_figure, (*sample_images(data), config.name)),))


def publish(study: optuna.Study, config: StudyConfig, data: Dataset | None, tracker: Tracker,
            run_id: str) -> list[str]:
    """Log the study's views, table and report to `run_id`; the figures that failed. What
    `early_views` drew is read back, not drawn again."""
    views, failed = [], []
    samples = tracker.study_file(run_id, SAMPLES_PNG) if has_samples(data) else None
    for view in study_views(study, config, data, samples):
        try:
            if view.figure is not None:
                view.png  # noqa: B018 - rendered once here, reused by the report
            views.append(view)
        except Exception as error:  # a figure is never worth losing the study's other views
            failed.append(f"{view.filename}: {type(error).__name__}: {error}")
    warnings = edge_warnings(study, config)
    page = report_page(study, config, tracker, views, warnings)
    tracker.log_study(run_id, {v.filename: v.png for v in views if v.figure is not None} | {
        TABLE_FILE: trials_table(study).to_csv(index=False), REPORT_FILE: page},
        best_params(study), {EDGE_TAG: "; ".join(warnings) or "none",
                             SHOWS_TAG: study_state(study)})
    return failed


def report_page(study: optuna.Study, config: StudyConfig, tracker: Tracker,
                views: list[View] | None = None, warnings: list[str] | None = None,
                data: Dataset | None = None, samples: bytes | None = None) -> str:
    """The study's HTML report (views drawn now unless given; `samples` as in study_views)."""
    if views is None:
        views = study_views(study, config, data, samples)
    if warnings is None:
        warnings = edge_warnings(study, config)
    version = tracker.version_by_alias(config.name, CHAMPION)
    return render(study, config, views, dict(version.tags) if version else None, warnings,
                  serve_hint(config.name, tracker.uri))


def serve_hint(name: str, tracking_uri: str) -> str:
    """The commands that serve a study's champion and ask it for a prediction."""
    store = "" if tracking_uri == DEFAULT_TRACKING_URI else f" --tracking-uri {tracking_uri}"
    return (f"hpstudy serve --study {name}{store} --port 5001\n"
            f"hpstudy predict --study {name}{store} IMAGE.png   # or locally, no server")


def redraw_report(study: optuna.Study, config: StudyConfig, tracking_uri: str,
                  run_id: str | None, state: str, data: Callable[[], Dataset | None]) -> str:
    """`hpstudy report` on a study that changed: the page drawn again (but for the dataset's
    samples where `run_id`, its latest optimize run, has them: `data` is loaded only without
    them), and logged to that run as showing `state`."""
    tracker = Tracker(tracking_uri, config.name)
    samples = tracker.study_file(run_id, SAMPLES_PNG) if run_id is not None else None
    page = report_page(study, config, tracker, data=None if samples else data(), samples=samples)
    if run_id is not None:
        tracker.log_text(run_id, page, f"study/{REPORT_FILE}")
        tracker.set_tags(run_id, {SHOWS_TAG: state})
    return page
