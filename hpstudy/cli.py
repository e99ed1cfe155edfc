"""The command line: the only place that prints or exits. Subcommands map to plain functions."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpstudy import __version__
from hpstudy.errors import DiskFull, NoChampion, UserError
from hpstudy.report import terminal
from hpstudy.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from hpstudy.train import interrupts

if TYPE_CHECKING:  # Optuna, tqdm, torch and MLflow are imported by the commands that use them
    import optuna
    from optuna.trial import FrozenTrial
    from tqdm import tqdm

    from hpstudy.data import Dataset
    from hpstudy.run.optimize import Plan
    from hpstudy.spec.study_file import StudyConfig

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 2, 130
EXIT_NO_CHAMPION = NoChampion.exit_code  # the study ran, but no trial qualifies as champion
EXIT_TRIALS_FAILING = 4  # stopped after `max_failures` failed trials in a row, or a worker failed


# ------------------------------------------------------------------------------- commands


def _load(args: argparse.Namespace) -> StudyConfig:
    """The `--study` file with its `--set` overrides, checked before torch or MLflow is imported."""
    import optuna  # checking [sampler] and [pruner] builds them, and a sampler may log

    from hpstudy.spec.study_file import load_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = load_study(args.study, args.overrides, getattr(args, "enqueue", ()))
    for note in config.notes:
        print(f"hpstudy: note: {note}", file=sys.stderr)
    return config


def _plan(args: argparse.Namespace) -> Plan:
    """The checked plan of an `optimize` or `worker` call: bad input stops here, silently."""
    config = _load(args)  # first: the runner imports torch and MLflow, which take seconds
    _check_flags(args)  # so are the stores, the device's name and --jobs
    from hpstudy.run.optimize import Stores, plan

    _quiet_mlflow()
    return plan(config, Stores(args.storage, args.tracking_uri), args.trials, args.timeout,
                args.device, args.jobs, args.data_dir, args.create)


def _check_flags(args: argparse.Namespace) -> None:
    """The flags that need no torch: store URLs, the device's spelling, --jobs (plan re-checks)."""
    from hpstudy import storage
    from hpstudy.run import flags

    storage.check_storage(args.storage, create=args.create)
    storage.check_tracking(args.tracking_uri, create=args.create)
    flags.check_device_name(args.device)
    flags.check_jobs(args.jobs)


def _progress(plan: Plan, command: str, note: str = "") -> tqdm:
    """The header line (and `note`), then a progress bar over the trials on stderr."""
    from tqdm import tqdm

    print(terminal.header(plan, command), flush=True)
    if note:
        print(note, flush=True)
    return tqdm(total=plan.trials, unit="trial", desc=plan.config.name, file=sys.stderr,
                dynamic_ncols=True)


def _on_trial(bar: tqdm) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A line per finished trial, above the bar."""
    def on_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        bar.write(terminal.trial_line(study, trial))
        bar.update()

    return on_trial


def cmd_optimize(args: argparse.Namespace) -> int:
    """Run trials of a study, log them to MLflow, and select the champion."""
    plan = _plan(args)  # checks the study file before the runner is imported
    from hpstudy.run.estimate import cost_note
    from hpstudy.run.optimize import optimize

    phases: list[str] = []

    def on_phase(what: str) -> None:
        phases.append(what)
        bar.write(f"{what[0].upper()}{what[1:]} ...")

    with _progress(plan, "Study", cost_note(plan)) as bar:
        try:
            outcome = optimize(plan, _on_trial(bar), on_phase)
        except KeyboardInterrupt:
            if not phases:
                raise
            print(terminal.interrupted_after_trials(
                phases[-1], terminal.command_line(args, "--trials 0")), file=sys.stderr)
            return EXIT_INTERRUPTED
    print(terminal.summary(outcome, plan.config, plan.stores, args.ui_port))
    if outcome.stopped or outcome.worker_problems:
        return EXIT_TRIALS_FAILING
    return EXIT_OK if outcome.selection is not None else EXIT_NO_CHAMPION


def cmd_worker(args: argparse.Namespace) -> int:
    """Join a study as one more worker (this machine or another): run trials, no selection."""
    plan = _plan(args)  # checks the study file before the runner is imported
    from hpstudy.run.optimize import work

    if args.quiet:  # under `optimize --jobs`: the parent shows the progress
        outcome = work(plan, None, args.parent_run, args.worker_index)
    else:
        with _progress(plan, "Worker on") as bar:
            outcome = work(plan, _on_trial(bar), args.parent_run, args.worker_index or os.getpid())
        print(f"\nWorker done: {terminal.repairs(outcome)}trials {outcome.first_trial} and on "
              "are in the study; select the champion with `hpstudy select --study "
              f"{plan.config.name}` (same --storage and --tracking-uri).")
    for failure in outcome.figure_failures:
        print(f"hpstudy: warning: a figure was not written: {failure}", file=sys.stderr)
    if outcome.stopped:
        print(f"hpstudy: {outcome.stopped}", file=sys.stderr)
        return EXIT_TRIALS_FAILING
    return EXIT_OK


def cmd_select(args: argparse.Namespace) -> int:
    """Choose the champion again among all trials of a study."""
    config = _load(args)  # first: the runner imports torch and MLflow, which take seconds
    from hpstudy.run.optimize import Stores, select_only

    _quiet_mlflow()
    stores = Stores(args.storage, args.tracking_uri)
    result = select_only(config, stores, args.dry_run, data_dir=args.data_dir)
    lines = (terminal.selection_lines(result) if args.dry_run else
             terminal.selection_lines(result.decision, result))
    print("\n".join(lines))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the champion over HTTP: MLflow's scoring server (POST /invocations), guarded."""
    from hpstudy.serve.guard import serve_command
    from hpstudy.tracking.artifacts import model_folder, registered_version

    _quiet_mlflow()
    name = Path(args.study).stem
    uri = f"models:/{name}@{args.alias}"
    if registered_version(args.tracking_uri, name, args.alias) is None:
        raise UserError(f"no model {uri} in {args.tracking_uri}: run `hpstudy optimize --study "
                        f"{name}` first (or pass the --tracking-uri it used).")
    command, env = serve_command(str(model_folder(uri, args.tracking_uri)), args.host, args.port)
    print(f"Serving {uri} at http://{args.host}:{args.port}/invocations (Ctrl-C stops)",
          flush=True)
    os.execve(command[0], command, env | {"MLFLOW_TRACKING_URI": args.tracking_uri})  # its own
    # signals and exit code: the process becomes the server


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict the class of image files with the champion, locally."""
    from hpstudy.serve.predictor import IMAGE_FIELD
    from hpstudy.tracking.artifacts import load_predictor, predict

    _quiet_mlflow()
    missing = [f for f in args.images if not Path(f).is_file()]
    if missing:
        raise UserError(f"no such image file: {', '.join(missing)}")
    name = Path(args.study).stem
    model = load_predictor(f"models:/{name}@{args.alias}", args.tracking_uri)
    table = predict(model, {IMAGE_FIELD: [Path(f).read_bytes() for f in args.images]},
                    args.images)
    width = max(len(f) for f in args.images)
    for file, row in zip(args.images, table.itertuples(), strict=True):
        print(f"{file:<{width}}  class {row.class_index:>3}  {row.class_name:<12} "
              f"p = {max(row.probabilities):.3f}")
    return EXIT_OK


def cmd_trials(args: argparse.Namespace) -> int:
    """List a study's trials (state, validation loss, parameters) without running any."""
    config = _load(args)
    _check_flags(args)
    from hpstudy.report.table import stored_trials

    table = stored_trials(config.name, args.storage)
    if args.csv:
        print(table.to_csv(index=False), end="")
        return EXIT_OK
    print(terminal.trials_text(table))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the study's HTML report: best trials, the study's plots, the champion."""
    config = _load(args)
    _check_flags(args)
    from hpstudy.report.reuse import write_report

    _quiet_mlflow()

    def data() -> Dataset | None:  # only the sample grid needs it: loaded when drawing
        try:
            from hpstudy.run.optimize import load_data  # (torch: only when drawing)
            return load_data(config, args.data_dir)
        except UserError as error:
            print(f"hpstudy: warning: no dataset sample in the report ({error})", file=sys.stderr)
            return None

    output = Path(args.output or f"{config.name}-report.html")
    run_id, reused = write_report(config, args.storage, args.tracking_uri, output, data)
    print(f"Report: {output.resolve()}" + (
        f"\n(as run {run_id} drew it: the study has not changed since)" if reused else
        f"\nAlso logged to run {run_id} (study/report.html)" if run_id else ""))
    return EXIT_OK


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Re-run one trial from its MLflow record and compare its validation loss per epoch."""
    from hpstudy.run.reproduce import EXIT_NOT_REPRODUCED, describe, reproduce

    _quiet_mlflow()
    comparison = reproduce(Path(args.study).stem, args.trial, args.storage, args.tracking_uri,
                           args.data_dir, args.device)
    print(describe(comparison))
    return EXIT_OK if comparison.equal() else EXIT_NOT_REPRODUCED


def cmd_list(args: argparse.Namespace) -> int:
    """Show the studies, datasets and architectures hpstudy knows."""
    from hpstudy.report.listing import catalogue, study_keys

    print(study_keys(_load(args)) if args.study else catalogue())
    return EXIT_OK


# ------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The `hpstudy` argument parser."""
    parser = argparse.ArgumentParser(
        prog="hpstudy", description="Hyperparameter studies for small neural networks: Optuna "
        "searches, every trial tracked in MLflow, the best model registered as champion.")
    parser.add_argument("--version", action="version", version=f"hpstudy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stores(p: argparse.ArgumentParser) -> None:
        p.add_argument("--study", required=True, metavar="NAME",
                       help="a study in studies/ (e.g. digits_mlp) or a path to a .toml file")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="override a study-file key, e.g. --set train.epochs=5 (repeatable)")
        p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                       help="Optuna storage URL (default: %(default)s)")
        p.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, metavar="URI",
                       help="MLflow tracking URI (default: %(default)s)")
        p.add_argument("--data-dir", metavar="DIR",
                       help="folder holding the dataset's files (default: $HPSTUDY_DATA_DIR, "
                       "else downloads under $HPSTUDY_CACHE_DIR or ~/.cache/hpstudy)")

    def trials(p: argparse.ArgumentParser) -> None:
        p.add_argument("--trials", type=int, metavar="N",
                       help="trials to run now, shared by the workers; 0 only selects and "
                       "refreshes the study's views (default: the study file's `trials`; with "
                       "--timeout alone, as many as fit)")
        p.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="stop starting new trials after this long")
        p.add_argument("--device", default="auto",
                       help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N; with --jobs, "
                       "auto and cuda place workers on the visible GPUs round robin "
                       "(default: auto)")
        p.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="worker processes on this machine (several per GPU are fine for "
                       "small networks; default: 1, in this process)")
        p.add_argument("--create", action="store_true",
                       help="allow a new sqlite store in a folder that does not exist yet")
        p.add_argument("--enqueue", action="append", default=[], metavar="KEY=VALUE,...",
                       help="a point to try before the sampler's, e.g. lr=0.1,width=64 "
                       "(repeatable; like [[enqueue]] in the study file, once per study)")

    p = commands.add_parser("optimize", help=cmd_optimize.__doc__,
                            description=cmd_optimize.__doc__ + " Running it again continues "
                            "the same study, after retrying any trial whose worker died. Exit "
                            "codes: 0 done, 2 bad input, 3 no champion qualifies, 4 stopped by "
                            "failing trials, 6 disk full, 130 interrupted.")
    stores(p)
    trials(p)
    p.add_argument("--ui-port", type=int, default=int(os.environ.get("HPSTUDY_UI_PORT", 5000)),
                   metavar="PORT", help="the port you run `mlflow ui` on, for the printed link "
                   "(default: $HPSTUDY_UI_PORT or 5000)")
    p.set_defaults(handler=cmd_optimize)

    p = commands.add_parser("worker", help=cmd_worker.__doc__, description=cmd_worker.__doc__
                            + " Start any number, on any machine that reaches the same "
                            "--storage and --tracking-uri (see README 'Scaling out').")
    stores(p)
    trials(p)
    p.add_argument("--parent-run", help=argparse.SUPPRESS)  # set by `optimize --jobs`
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_worker)

    p = commands.add_parser("select", help=cmd_select.__doc__, description=cmd_select.__doc__
                            + " The champion moves only if the new best beats it on the same "
                            "validation split; the model it replaces becomes 'previous'.")
    stores(p)
    p.add_argument("--dry-run", action="store_true",
                   help="only say what would change; write nothing, leave the test set alone")
    p.set_defaults(handler=cmd_select)

    p = commands.add_parser("trials", help=cmd_trials.__doc__, description=cmd_trials.__doc__)
    stores(p)
    p.add_argument("--csv", action="store_true", help="print every column as CSV")
    p.set_defaults(handler=cmd_trials, create=False, device="auto", jobs=1)

    p = commands.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__
                            + " One self-contained HTML file (plots inline, no network); also "
                            "logged to the study's latest `optimize` run.")
    stores(p)
    p.add_argument("--output", metavar="FILE",
                   help="where to write it (default: NAME-report.html here)")
    p.set_defaults(handler=cmd_report, create=False, device="auto", jobs=1)

    p = commands.add_parser("reproduce", help=cmd_reproduce.__doc__,
                            description=cmd_reproduce.__doc__ + " From the trial's run alone "
                            "(params, the study file and overrides of its parent run); writes "
                            "nothing. Exit codes: 0 equal within 1e-6 relative, 2 bad input, "
                            "5 not reproduced.")
    p.add_argument("--study", required=True, metavar="NAME", help="the study's name")
    p.add_argument("--trial", type=int, required=True, metavar="N", help="the trial's number")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help="Optuna storage URL (default: %(default)s)")
    p.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, metavar="URI",
                   help="MLflow tracking URI (default: %(default)s)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset's files")
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda or cuda:N (default: the "
                   "device the trial ran on if this machine has it, else cpu)")
    p.set_defaults(handler=cmd_reproduce)

    def registry(p: argparse.ArgumentParser) -> None:
        p.add_argument("--study", required=True, metavar="NAME",
                       help="the study whose registered model to use")
        p.add_argument("--alias", default="champion", help="registry alias (default: champion)")
        p.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, metavar="URI",
                       help="MLflow tracking URI (default: %(default)s)")

    p = commands.add_parser("serve", help=cmd_serve.__doc__, description=cmd_serve.__doc__)
    registry(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=5001, help="port (default: %(default)s)")
    p.set_defaults(handler=cmd_serve)

    p = commands.add_parser("predict", help=cmd_predict.__doc__, description=cmd_predict.__doc__)
    registry(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.set_defaults(handler=cmd_predict)

    p = commands.add_parser("list", help=cmd_list.__doc__, description=cmd_list.__doc__)
    p.add_argument("--study", metavar="NAME", help="instead: the [data] and [model] keys this "
                   "study's dataset and network take (your own network's too), with its values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_list)
    return parser


def _quiet() -> None:
    """Leave the terminal to hpstudy's own lines: libraries speak only when something is wrong.

    Nothing is imported here, so that `list` and a mistake in a study file answer at once:
    `_load` turns Optuna's logger down before the study file is checked, `_quiet_mlflow`
    turns MLflow's down once a command has imported it (importing MLflow resets its loggers).
    """
    for module in ("mlflow", "optuna"):
        warnings.filterwarnings("ignore", module=module)


def _quiet_mlflow() -> None:
    """MLflow speaks only when something is wrong; call it after MLflow is imported."""
    from hpstudy.tracking.artifacts import quiet

    quiet()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hpstudy` and `python -m hpstudy`; returns the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "trials", None) is not None and args.trials < 0:
        print(f"hpstudy: error: --trials: expected an integer >= 0 (0: select and refresh the "
              f"study's views only), given {args.trials}.", file=sys.stderr)
        return EXIT_USER_ERROR
    _quiet()
    interrupts.install()  # Ctrl-C and SIGTERM: between database writes, never inside one
    try:
        return args.handler(args)
    except (NoChampion, DiskFull) as error:  # not a crash: one line, and its own exit code
        print(f"hpstudy: {error.label}: {error}", file=sys.stderr)
        return error.exit_code
    except UserError as error:
        print(f"hpstudy: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nhpstudy: interrupted. Finished trials are saved and the interrupted ones are "
              "queued again; run the same command to continue the study.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hpstudy list | head`: the reader has gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
