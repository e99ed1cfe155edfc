"""What a call says: a line per finished trial, the closing table, the selection.

Plain strings built from the study and the call's outcome; the CLI prints them.
"""

from __future__ import annotations

import math
import shlex
from typing import TYPE_CHECKING

from hpstudy.errors import UserError
from hpstudy.search.record import DIVERGED, TrialRecord, state_counts
from hpstudy.spec.space import edges
from hpstudy.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, runs_link

if TYPE_CHECKING:
    import argparse

    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial

    from hpstudy.run.optimize import Outcome, Plan, Stores
    from hpstudy.run.select import Decision, Selection
    from hpstudy.spec.study_file import StudyConfig

SUMMARY_ROWS = 5  # best trials shown in the final table


def _used(trial: FrozenTrial) -> dict[str, object]:
    """A trial's searched parameters but those its network ignores (an MLP's width at depth 0)."""
    record = TrialRecord.of(trial)
    return {k: v for k, v in trial.params.items() if not record or k not in record.unused}


def _params(trial: FrozenTrial) -> str:
    """A trial's searched parameters, compactly."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in _used(trial).items())


def _number(value: float) -> str:
    """A loss to four decimals, or '-' when there is none."""
    return "-" if math.isnan(value) else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _best(study: optuna.Study) -> FrozenTrial | None:
    """The best trial so far, or None."""
    from hpstudy.run.select import best_trial

    try:
        return best_trial(study)
    except UserError:
        return None


def _cell(value: object) -> str:
    """A parameter value in a 10-wide table column."""
    return f"{value:>10.4g}" if isinstance(value, int | float) else f"{value!s:>10}"


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: number, state, validation loss, parameters, best so far."""
    from optuna.trial import TrialState

    state = {TrialState.COMPLETE: "done", TrialState.PRUNED: "pruned",
             TrialState.FAIL: "failed"}.get(trial.state, trial.state.name.lower())
    loss = trial.value if trial.value is not None else (  # a pruned trial's last report
        trial.intermediate_values[max(trial.intermediate_values)]
        if trial.intermediate_values and trial.state == TrialState.PRUNED else math.nan)
    record = TrialRecord.of(trial)
    if record is not None and record.state == DIVERGED:
        state, loss = "diverged", math.nan
    best = _best(study)
    best_text = f"best {best.value:.4f} (#{best.number})" if best else "best -"
    seconds = trial.duration.total_seconds() if trial.duration else math.nan
    why = record.fail_reason if record and (trial.state != TrialState.PRUNED
                                            or record.state == DIVERGED) else ""
    if trial.state == TrialState.FAIL and not why:
        why = "its worker was lost"
    retry = f"  (retry of #{record.retry_of})" if record and record.retry_of is not None else ""
    return (f"trial {trial.number:>4}  {state:<8}  val_loss {_number(loss):>8}  "
            f"val_acc {_percent(record.val_acc if record else None):>6}  {seconds:5.1f}s  "
            f"{best_text}  | {_params(trial)}{retry}" + (f"  [{why}]" if why else ""))


def selection_lines(decision: Decision, selection: Selection | None = None) -> list[str]:
    """What selection did to the champion, or (with no `selection`: a dry run) would do."""
    best = f"trial {decision.trial} (val_loss {decision.val_loss:.4f})"
    held = (f"version {decision.current_version} (trial {decision.current_trial}"
            + (f", val_loss {decision.current_val_loss:.4f})" if decision.current_val_loss
               is not None else ")"))
    if selection is None:
        if not decision.moves:
            return [f"Would keep the champion, {held}: {decision.reason}."]
        after = f"; {held} would become 'previous'" if decision.current_version else ""
        return [f"Would make {best} the champion: {decision.reason}{after}."]
    if not decision.moves:
        return [f"Champion kept: {held} -> models:/{decision.name}@champion "
                f"({decision.reason})."]
    lines = [f"Champion: {best}, test loss {selection.test_loss:.4f}, test accuracy "
             f"{_percent(selection.test_acc)} -> {selection.model_uri} (version "
             f"{selection.version})"]
    if decision.current_version:
        lines.append(f"Previous champion: version {decision.current_version} -> "
                     f"models:/{decision.name}@previous ({decision.reason})")
    return lines


def summary(outcome: Outcome, config: StudyConfig, stores: Stores, ui_port: int = 5000) -> str:
    """The closing table: the best trials, the champion, warnings, and where to look."""
    from optuna.trial import TrialState

    study = outcome.study
    trials = study.get_trials(deepcopy=False)
    lines = [f"\nStudy '{study.study_name}': {len(trials)} trials in all "
             f"({state_counts(trials)})", ""]
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: (t.value, t.number))[:SUMMARY_ROWS]
    names = list(dict.fromkeys(n for t in done for n in t.params))  # all calls' searched keys
    lines.append(f"{'rank':>4} {'trial':>5} {'val_loss':>9} {'val_acc':>7}  "
                 + "  ".join(f"{n:>10}" for n in names))
    for rank, t in enumerate(done, 1):
        values = "  ".join(_cell(_used(t).get(n, "" if n in t.params else "-")) for n in names)
        record = TrialRecord.of(t)
        lines.append(f"{rank:>4} {t.number:>5} {t.value:>9.4f} "
                     f"{_percent(record.val_acc if record else None):>7}  {values}")
    lines.append("")
    if outcome.repairs:
        lines.append(repairs(outcome).capitalize().strip())
    lines += [f"Warning: {problem}" for problem in outcome.worker_problems]
    lines += [f"Warning: a figure was not written: {failure}" for failure in
              outcome.figure_failures]
    if outcome.cleanup and outcome.cleanup.trials:
        lines.append(f"Storage: weights of {len(outcome.cleanup.trials)} trial(s) outside the "
                     f"best {config.keep_models} deleted ({outcome.cleanup.freed_bytes / 1e6:.1f} "
                     "MB freed; keep_models in the study file)")
    if outcome.stopped:
        lines.append(f"Stopped early: {outcome.stopped}")
    if outcome.selection is None:
        lines.append(f"No champion: {outcome.no_selection_reason}")
    else:
        lines += selection_lines(outcome.selection.decision, outcome.selection)
        best = study.trials[outcome.selection.decision.trial]
        lines += [f"Note: the best {name} = {value:.4g} lies at the edge of its search range; "
                  f"consider widening [search] {name}."
                  for name, value in edges(config.search, best.params, complete)]
    link = runs_link(stores.tracking_uri, outcome.experiment_id, ui_port)
    lines += ["", f"Compare trials:  {link}",
              f"Serve the model: hpstudy serve --study {study.study_name}"
              + ("" if stores.tracking_uri == DEFAULT_TRACKING_URI
                 else f" --tracking-uri {stores.tracking_uri}")]
    return "\n".join(lines)


def repairs(outcome: Outcome) -> str:
    """What the call repaired at start, as a sentence (or '')."""
    repairs = outcome.repairs
    if not repairs:
        return ""
    failed = ", ".join(f"#{n}" for n in repairs.failed_trials)
    parts = ([f"trial(s) {failed} of dead workers failed and queued again"] if failed else []) + (
        [f"{len(repairs.ended_runs)} MLflow run(s) left RUNNING were closed"]
        if repairs.ended_runs else [])
    return "recovered from an earlier crash: " + "; ".join(parts) + ". "


def header(plan: Plan, command: str) -> str:
    """The line a call opens with: the study file, what will run, and how."""
    config = plan.config
    jobs = f", {plan.jobs} worker processes" if plan.jobs > 1 else ""
    epochs = f"{config.train.epochs} epoch{'s' if config.train.epochs != 1 else ''} each"
    if plan.trials == 0:
        what = "no new trials (--trials 0): repair, select and refresh the study's views"
    else:
        count = (f"{plan.trials} trial{'s' if plan.trials != 1 else ''}" if plan.trials
                 else f"as many trials as fit in {plan.timeout:g} s")
        what = (f"{count} of {config.model.architecture} on {config.data.name}, "
                f"{epochs}{jobs}")
    return f"{command} '{config.name}' ({config.path}): {what}"


def command_line(args: argparse.Namespace, extra: str) -> str:
    """The parsed command line again (its study, stores, data and --set; defaults left out),
    `extra` in place of its trial count, quoted to paste into a shell."""
    parts = ["hpstudy", args.command, "--study", args.study]
    parts += [word for override in args.overrides for word in ("--set", override)]
    parts += [] if args.storage == DEFAULT_STORAGE else ["--storage", args.storage]
    parts += [] if args.tracking_uri == DEFAULT_TRACKING_URI else [
        "--tracking-uri", args.tracking_uri]
    parts += ["--data-dir", args.data_dir] if args.data_dir else []
    return " ".join([*map(shlex.quote, parts), extra])


def interrupted_after_trials(phase: str, finish: str) -> str:
    """What an interrupt once the trials were over kept, and the command that finishes."""
    return (f"\nhpstudy: interrupted while {phase}. Every trial is saved (none was running); "
            "a champion is registered whole (version and alias) or not at all. To finish the "
            f"job run: {finish}")


def trials_text(table: pd.DataFrame) -> str:
    """`hpstudy trials`: the trial table, best validation loss first, the champion marked."""
    shown = table.sort_values(["val_loss", "number"], na_position="last").drop(
        columns=["run_id", "datetime_start", "datetime_complete", "fail_reason"])
    shown["val_acc"] = [f"{100 * v:.1f}%" if v == v and v is not None else "" for v in
                        shown["val_acc"]]
    shown["champion"] = ["<- champion" if c else "" for c in shown["champion"]]
    for column in shown.columns[shown.dtypes == "Int64"]:  # a parameter the network ignores
        shown[column] = shown[column].astype("string").fillna("")
    shown.columns = [c.removeprefix("params_") for c in shown.columns]
    return (shown.rename(columns={"champion": ""}).to_string(
        index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        + f"\n\n{len(table)} trials, best validation loss first; --csv for every column (run "
        "ids, times, failure reasons).")
