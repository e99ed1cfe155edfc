"""The command line: exit codes, messages, and that bad input leaves no trace in any store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpstudy.cli import main


def cli(*args: str, stores) -> int:
    return main([*args, "--storage", stores.storage, "--tracking-uri", stores.tracking_uri])


def nothing_written(stores) -> bool:
    return not any(Path(uri.removeprefix("sqlite:///")).exists()
                   for uri in (stores.storage, stores.tracking_uri))


@pytest.mark.parametrize(("replace", "message"), [
    ({"epochs = 3": "epcohs = 3"}, "train: expected one of the keys epochs, batch_size"),
    ({"low = 0.01, high = 0.3": "low = 0.3, high = 0.01"}, "search.lr: expected low < high"),
    ({'architecture = "mlp"': 'architecture = "resnet"'}, "model.architecture: expected one of"),
    ({"[model]": "[modle]"}, "top level: expected one of the keys"),
], ids=["typo", "inverted-range", "unknown-architecture", "typo-in-table"])
def test_bad_study_file_exits_2_with_a_message_and_writes_nothing(
        write_study, stores, capsys, replace, message):
    path = write_study(replace=replace)
    assert cli("optimize", "--study", str(path), stores=stores) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpstudy: error: {path}: ") and message in err
    assert "Traceback" not in err
    assert nothing_written(stores)


def test_missing_study_exits_2_and_lists_known_studies(stores, capsys):
    assert cli("optimize", "--study", "no_such_study", stores=stores) == 2
    err = capsys.readouterr().err
    assert "--study no_such_study: no such study file" in err and "digits_mlp" in err
    assert nothing_written(stores)


def test_a_search_space_too_deep_for_the_data_is_caught_before_any_write(write_study, stores,
                                                                         capsys):
    path = write_study(replace={'architecture = "mlp"': 'architecture = "cnn"',
                                "low = 1, high = 2": "low = 1, high = 5"})
    assert cli("optimize", "--study", str(path), stores=stores) == 2
    assert "search.depth: expected a depth that fits (1, 8, 8) inputs" in capsys.readouterr().err
    assert nothing_written(stores)


def test_select_before_optimize_exits_2(write_study, stores, capsys):
    assert cli("select", "--study", str(write_study()), stores=stores) == 2
    assert "Run `hpstudy optimize --study tiny` first" in capsys.readouterr().err
    assert nothing_written(stores)


@pytest.mark.slow
def test_optimize_prints_a_line_per_trial_and_a_summary(write_study, stores, capsys):
    path = write_study()
    assert cli("optimize", "--study", str(path), "--trials", "2", stores=stores) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 2 and all("done" in line and "val_loss" in line for line in lines)
    assert "lr=" in lines[0] and "best " in lines[0]
    assert "Study 'tiny': 2 trials in all (2 done, 0 pruned, 0 diverged, 0 failed)" in out
    assert "-> models:/tiny@champion (version 1)" in out
    assert f"mlflow ui --backend-store-uri {stores.tracking_uri}" in out
    from mlflow import MlflowClient

    experiment = MlflowClient(stores.tracking_uri).get_experiment_by_name("tiny").experiment_id
    assert (f"Compare trials:  http://127.0.0.1:5000/#/experiments/{experiment}/runs?"
            "workflowType=machine_learning" in out)


def test_list_shows_studies_datasets_and_what_width_and_depth_mean(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits_mlp" in out and "digits" in out and "width: hidden units" in out


def test_the_module_and_the_console_script_both_run():
    for command in ([sys.executable, "-m", "hpstudy", "--help"],
                    [str(Path(sys.executable).parent / "hpstudy"), "optimize", "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "usage: hpstudy" in done.stdout


def test_negative_trials_is_a_usage_error(write_study, stores, capsys):
    assert cli("optimize", "--study", str(write_study()), "--trials", "-1", stores=stores) == 2
    assert "--trials: expected an integer >= 0" in capsys.readouterr().err
    assert nothing_written(stores)


def test_trials_lists_every_trial_without_running_one(finished_study, capsys):
    import csv
    import io

    config, stores, _, _ = finished_study
    assert cli("trials", "--study", str(config.path), stores=stores) == 0
    out = capsys.readouterr().out
    assert "val_loss" in out and "momentum" in out and "5 trials" in out
    shown = out.splitlines()[1:6]  # the five trials, best validation loss first, in %
    assert cli("trials", "--study", str(config.path), "--csv", stores=stores) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["run_id"] and r["params_lr"] and r["outcome"] == "complete" for r in rows)
    best_first = sorted(rows, key=lambda r: float(r["val_loss"]))
    assert [int(line.split()[0]) for line in shown] == [int(r["number"]) for r in best_first]
    assert shown[0].split()[4] == f"{100 * float(best_first[0]['val_acc']):.1f}%"
    champion = [r for r in rows if r["champion"] == "True"]
    assert len(champion) == 1 and "<- champion" in shown[
        [int(r["number"]) for r in best_first].index(int(champion[0]["number"]))]


@pytest.mark.slow
def test_zero_trials_selects_and_refreshes_the_views_only(write_study, stores, capsys):
    from mlflow import MlflowClient

    path = str(write_study())
    assert cli("optimize", "--study", path, "--trials", "2", stores=stores) == 0
    assert cli("optimize", "--study", path, "--trials", "0", stores=stores) == 0
    out = capsys.readouterr().out
    assert "2 trials in all" in out.split("Study 'tiny'")[-1] and "Champion" in out
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    calls = client.search_runs([experiment], "tags.`hpstudy.command` = 'optimize'",
                               order_by=["attributes.start_time DESC"])
    assert len(calls) == 2
    files = {a.path for a in client.list_artifacts(calls[0].info.run_id, "study")}
    assert {"study/report.html", "study/trials.csv", "study/optimization_history.png"} <= files


def test_predict_prints_a_class_per_image_file(finished_study, tmp_path, capsys):
    from PIL import Image

    from hpstudy import data as datasets

    config, stores, _, _ = finished_study
    test = datasets.load(config.data.name, config.data.options).test
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(test.x[i, 0].numpy()).resize((32, 32)).save(files[-1])
    assert main(["predict", "--study", config.name, "--tracking-uri", stores.tracking_uri,
                 *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" class " in line and "p = " in line for line in lines)
    assert main(["predict", "--study", config.name, "--tracking-uri", stores.tracking_uri,
                 str(tmp_path / "missing.png")]) == 2
    assert "no such image file" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    assert main(["predict", "--study", config.name, "--tracking-uri", stores.tracking_uri,
                 files[0], str(text)]) == 2
    err = capsys.readouterr().err
    assert f"{text}: not a readable PNG or JPEG file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_serve_and_predict_without_a_store_or_a_champion_exit_2_and_write_nothing(
        finished_study, stores, tmp_path, capsys):
    for command in ("serve", "predict"):
        extra = [str(tmp_path / "x.png")] if command == "predict" else []
        (tmp_path / "x.png").write_bytes(b"")
        assert main([command, "--study", "tiny", "--tracking-uri", stores.tracking_uri,
                     *extra]) == 2
        assert "no MLflow store at" in capsys.readouterr().err
        assert nothing_written(stores)
    _, finished, _, _ = finished_study
    assert main(["serve", "--study", "nothing_here", "--tracking-uri",
                 finished.tracking_uri]) == 2
    assert "no model models:/nothing_here@champion" in capsys.readouterr().err


def test_select_dry_run_prints_what_would_happen(finished_study, capsys):
    config, stores, _, _ = finished_study
    assert cli("select", "--study", str(config.path), "--dry-run", stores=stores) == 0
    assert capsys.readouterr().out.startswith("Would keep the champion, version 1")


def test_missing_data_exits_2_naming_data_dir_and_writes_nothing(tmp_path, stores, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("optimize", "--study", "cnn_cifar", "--data-dir", str(empty), stores=stores) == 2
    err = capsys.readouterr().err
    assert f"hpstudy: error: cifar10: no data found in {empty} (from --data-dir)" in err
    assert "--data-dir DIR" in err and "train/<class>/*.jpg|png" in err
    assert "Traceback" not in err
    assert nothing_written(stores)


@pytest.mark.slow
def test_data_dir_reaches_the_dataset(data_dir, stores, capsys):
    assert cli("optimize", "--study", "linear_mnist", "--trials", "1", "--data-dir", str(data_dir),
               "--set", "train.epochs=1", "--set", "data.val_size=20", "--set",
               "champion_floor=none", stores=stores) == 0  # tiny data: no floor
    assert "Study 'linear_mnist': 1 trials in all (1 done" in capsys.readouterr().out
    assert cli("select", "--study", "linear_mnist", "--data-dir", str(data_dir),
               "--set", "data.val_size=20", "--set", "champion_floor=none", stores=stores) == 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_one_exits_2_and_writes_nothing(write_study, stores, capsys):
    assert cli("optimize", "--study", str(write_study()), "--device", "cuda", stores=stores) == 2
    assert "--device cuda: no CUDA device is visible here" in capsys.readouterr().err
    assert nothing_written(stores)


@pytest.mark.slow
def test_failed_trials_in_a_row_stop_the_call_with_exit_4(write_study, stores, capsys):
    path = write_study(replace={"width = { choices = [16, 32] }": "width = 2000000",
                                "depth = { low = 1, high = 2 }": "depth = 2"})  # 16 TB each
    assert cli("optimize", "--study", str(path), "--trials", "5", "--set", "max_failures=2",
               stores=stores) == 4
    out = capsys.readouterr().out
    assert "Stopped early: stopped after 2 failed trials in a row" in out
    assert "Study 'tiny': 2 trials in all (0 done, 0 pruned, 0 diverged, 2 failed)" in out
    assert "No champion" in out


@pytest.mark.parametrize("command", ["trials", "report"])
def test_trials_and_report_before_optimize_exit_2_and_write_nothing(write_study, stores,
                                                                     tmp_path, capsys, command,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the report would land
    assert cli(command, "--study", str(write_study()), stores=stores) == 2
    err = capsys.readouterr().err
    assert "Run `hpstudy optimize --study tiny` first" in err and "Traceback" not in err
    assert nothing_written(stores) and not (tmp_path / "tiny-report.html").exists()


@pytest.mark.slow
def test_on_the_cpu_the_cost_of_an_epoch_and_of_the_plan_is_said_before_the_first_trial(
        write_study, stores, capsys):
    assert cli("optimize", "--study", str(write_study()), "--trials", "1", "--device", "cpu",
               stores=stores) == 0
    out = capsys.readouterr().out
    estimate = next(line for line in out.splitlines() if line.startswith("Estimate on this CPU"))
    assert re.search(r"one epoch takes [\d.]+ m?s( to [\d.]+ m?s)?; the plan of 1 trial x 3 "
                     r"epochs, about ", estimate), estimate
    assert out.index("Estimate on this CPU") < out.index("trial    0")


def test_the_cost_estimate_reads_in_units_people_use():
    from hpstudy.run.estimate import Estimate

    line = Estimate("this CPU", 12.0, 180.0, trials=40, epochs=30).line()
    assert "one epoch takes 12 s to 3 min" in line
    assert "the plan of 40 trials x 30 epochs, about 4.0 h to 60.0 h" in line
