"""The study's trial table, read from the Optuna store alone: `hpstudy trials` imports neither
torch nor MLflow to print it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpstudy.search.record import CHAMPION_ATTR, TrialRecord
from hpstudy.search.study import load_existing

if TYPE_CHECKING:
    import optuna
    import pandas as pd


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, parameters, value, durations and hpstudy's record."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration",
                                          "datetime_start", "datetime_complete"))
    by_number = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False)}
    records = [by_number.get(n) for n in frame["number"]]
    for column, field, missing in (("outcome", "state", ""), ("val_acc", "val_acc", None),
                                   ("n_params", "n_params", None), ("run_id", "run_id", ""),
                                   ("fail_reason", "fail_reason", "")):
        frame[column] = [getattr(r, field) if r else missing for r in records]
    for row, record in enumerate(records):  # a width an MLP of depth 0 has not: no value
        for column in (f"params_{name}" for name in (record.unused if record else ())):
            if frame[column].dtype.kind == "i":
                frame[column] = frame[column].astype("Int64")  # integers that may be missing
            frame.loc[row, column] = None
    frame["duration"] = frame["duration"].dt.total_seconds().round(2)
    frame = frame.rename(columns={"value": "val_loss", "value_val_loss": "val_loss",  # named
                                  "duration": "seconds"})  # metric: set_metric_names
    params = [c for c in frame.columns if c.startswith("params_")]
    frame["champion"] = frame["number"] == study.user_attrs.get(CHAMPION_ATTR, {}).get("trial")
    return frame[["number", "state", "outcome", "val_loss", "val_acc", *params, "n_params",
                  "seconds", "champion", "datetime_start", "datetime_complete", "run_id",
                  "fail_reason"]]


def stored_trials(name: str, storage_url: str) -> pd.DataFrame:
    """`hpstudy trials`: the table of study `name` in the Optuna store at `storage_url`."""
    return trials_table(load_existing(name, storage_url))
