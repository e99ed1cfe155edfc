"""`hpstudy report` on a study that has not changed: the page its latest `optimize` drew.

Read with Optuna and MLflow alone (no torch, no matplotlib), so reusing a page is quick;
only a study that changed since loads `publish` to draw it again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpstudy.search.record import CHAMPION_ATTR
from hpstudy.search.study import load_existing
from hpstudy.tracking.artifacts import latest_call, read_text

if TYPE_CHECKING:
    import optuna

    from hpstudy.data import Dataset
    from hpstudy.spec.study_file import StudyConfig

SHOWS_TAG = "hpstudy.report_shows"  # the study state (`study_state`) the run's report shows
REPORT_FILE = "report.html"  # under the run's study/


def study_state(study: optuna.Study) -> str:
    """What a report shows, in one line: it changes when a trial starts or ends, or when the
    champion moves (so an unchanged study's report can be reused)."""
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state.is_finished() for t in trials)
    champion = study.user_attrs.get(CHAMPION_ATTR, {}).get("version")
    return f"{len(trials)} trials, {finished} finished, champion version {champion}"


def write_report(config: StudyConfig, storage_url: str, tracking_uri: str, output: Path,
                 data: Callable[[], Dataset | None]) -> tuple[str | None, bool]:
    """`hpstudy report`: the HTML page at `output`, and on the study's latest `optimize` run.

    When the study has not changed since that run drew its report, the page is that one
    (no figure drawn, `data` not loaded); else `publish.redraw_report` draws it. Returns the
    run's id (None if the study has none) and whether its page was reused. Reads the study;
    runs nothing.
    """
    study = load_existing(config.name, storage_url)
    run_id, tags = latest_call(tracking_uri, config.name, "optimize") or (None, {})
    state = study_state(study)
    if run_id is not None and tags.get(SHOWS_TAG) == state:
        output.write_text(read_text(tracking_uri, run_id, f"study/{REPORT_FILE}"),
                          encoding="utf-8")
        return run_id, True
    from hpstudy.report.publish import redraw_report  # torch, matplotlib: only to draw

    output.write_text(redraw_report(study, config, tracking_uri, run_id, state, data),
                      encoding="utf-8")
    return run_id, False
