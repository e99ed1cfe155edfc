"""hpstudy from Python: `hpstudy.optimize(...)`, what `hpstudy optimize` does, for notebooks.

    import hpstudy
    result = hpstudy.optimize("studies/digits_mlp.toml", trials=10,
                              overrides={"train.epochs": 5})
    result.champion   # models:/digits_mlp@champion, or None
    result.trials     # one row per trial (a pandas DataFrame)

Your own network or data function may be given as objects (`architecture=MyNet`,
`data=my_arrays`) instead of import paths in the study file; they must be importable by
their module and name (a notebook's own functions are, in this process: keep `jobs=1`).
Bad input raises `hpstudy.errors.UserError` (its message says what and how to fix it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hpstudy.errors import NoChampion, UserError
from hpstudy.report.table import trials_table
from hpstudy.run.optimize import Outcome, Stores, plan
from hpstudy.run.optimize import optimize as run_optimize
from hpstudy.spec.study_file import load_study
from hpstudy.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI


@dataclass(frozen=True)
class StudyResult:
    """What `optimize` leaves: the champion (if one qualifies) and every trial so far."""

    study: str  # the study's name: its Optuna study, MLflow experiment and registered model
    champion: str | None  # the URI that loads the champion (`mlflow.pyfunc.load_model`)
    version: str | None  # its registry version
    test_acc: float | None  # measured when the champion moved (None when it stayed)
    trials: pd.DataFrame  # one row per trial: state, value, parameters, durations, record
    outcome: Outcome  # everything the call knows (the Optuna study, the parent run, ...)


def optimize(study: str, *, trials: int | None = None, timeout: float | None = None,
             overrides: Mapping[str, Any] | Sequence[str] = (),
             enqueue: Sequence[Mapping[str, Any]] = (),
             architecture: Callable[..., Any] | str | None = None,
             data: Callable[..., Any] | str | None = None,
             storage: str = DEFAULT_STORAGE, tracking_uri: str = DEFAULT_TRACKING_URI,
             device: str = "auto", jobs: int = 1, data_dir: str | None = None) -> StudyResult:
    """Run `trials` of `study` (a name in studies/ or a .toml path) and select the champion.

    `overrides` are `--set` keys ({"train.epochs": 5} or ["train.epochs=5"]); `enqueue`
    points tried first ([{"lr": 0.1}]); `architecture` and `data` replace the study
    file's [model] architecture and [data] name.
    """
    sets = [f"{k}={_toml(v)}" for k, v in overrides.items()] if isinstance(overrides, Mapping) \
        else list(overrides)
    if architecture is not None:
        sets.append(f"model.architecture={_toml(_import_path(architecture))}")
    if data is not None:
        sets.append(f"data.name={_toml(_import_path(data))}")
    points = [",".join(f"{k}={_toml(v)}" for k, v in point.items()) for point in enqueue]
    config = load_study(study, sets, points)
    outcome = run_optimize(plan(config, Stores(storage, tracking_uri), trials, timeout, device,
                                jobs, data_dir))
    selection = outcome.selection
    return StudyResult(
        study=config.name, champion=selection.model_uri if selection else None,
        version=selection.version if selection else None,
        test_acc=(selection.test_acc if selection and selection.test_acc == selection.test_acc
                  else None),
        trials=trials_table(outcome.study), outcome=outcome)


def _import_path(target: Callable[..., Any] | str) -> str:
    """`module:qualified.name` of a class or function (or the string given)."""
    if isinstance(target, str):
        return target
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
    if not module or "<locals>" in name:
        raise UserError(f"{target!r}: give a class or function defined at the top of a module "
                        "(it is imported again by module and name), or its import path "
                        "'package.module:name'.")
    return f"{module}:{name}"


def _toml(value: Any) -> str:
    """A Python value as the TOML that `--set` reads."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


__all__ = ["NoChampion", "StudyResult", "optimize"]
