"""The HTML report: one self-contained page that a real browser opens with nothing missing."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hpstudy.cli import main

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = ("<script>addEventListener('load', () => { const images = [...document.images];"
         "document.body.dataset.images = images.length; document.body.dataset.broken = "
         "images.filter(i => !i.complete || i.naturalWidth === 0).length; });</script>")


def open_in_chromium(page: Path, folder: Path) -> tuple[int, int, list[str]]:
    """Images, broken images, and the URLs the page itself requested, in headless Chromium."""
    probed = folder / f"probed-{page.name}"
    probed.write_text(page.read_text() + PROBE)  # the report has no script: the test adds one
    log = folder / f"net-{page.stem}.json"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--virtual-time-budget=10000",
         f"--log-net-log={log}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    body = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-broken="(\d+)"', dom)
    assert body, dom[:500]
    net = json.loads(log.read_text())
    start = net["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    jobs = [e["params"] for e in net["events"] if e["type"] == start and "url" in e["params"]]
    by_page = [job["url"] for job in jobs if job.get("initiator") != "not an origin"]
    return int(body[1]), int(body[2]), by_page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_report_opens_in_a_browser_with_every_image_and_no_network(finished_study,
                                                                      tmp_path, capsys):
    config, stores, _, _ = finished_study
    output = tmp_path / "report.html"
    assert main(["report", "--study", str(config.path), "--storage", stores.storage,
                 "--tracking-uri", stores.tracking_uri, "--output", str(output)]) == 0
    assert f"Report: {output}" in capsys.readouterr().out
    page = output.read_text()
    assert "<h2>Champion</h2>" in page and "test accuracy" in page and "hpstudy serve" in page
    images, broken, requested = open_in_chromium(output, tmp_path)
    assert images >= 7 and broken == 0 and requested == []
    control = tmp_path / "control.html"  # the same check sees a page that does reach out
    control.write_text("<html><body><img src='http://127.0.0.1:9/x.png'></body></html>")
    images, broken, requested = open_in_chromium(control, tmp_path)
    assert (images, broken) == (1, 1) and requested == ["http://127.0.0.1:9/x.png"]


def test_report_reuses_the_page_optimize_drew_until_the_study_changes(finished_study, tmp_path):
    import optuna

    from hpstudy.report.reuse import write_report
    from hpstudy.run.optimize import Stores
    from hpstudy.tracking.artifacts import read_text

    config, stores, _, second = finished_study
    live = Path(stores.storage.removeprefix("sqlite:///")).parent
    shutil.copytree(live, tmp_path / "copy", ignore=shutil.ignore_patterns("*.db*"))
    for name in ("optuna.db", "mlflow.db"):  # through SQLite: copying a live database's files
        with (contextlib.closing(sqlite3.connect(live / name)) as source,  # (-wal, -shm) drops
              contextlib.closing(sqlite3.connect(tmp_path / "copy" / name)) as target):
            source.backup(target)  # this process's locks on them, and breaks the session's store
    copy = Stores(f"sqlite:///{tmp_path}/copy/optuna.db", f"sqlite:///{tmp_path}/copy/mlflow.db")
    run_id, reused = write_report(config, copy.storage, copy.tracking_uri, tmp_path / "a.html",
                                  data=lambda: pytest.fail("an unchanged study needs no data"))
    assert reused and run_id == second.run_id
    logged = read_text(copy.tracking_uri, run_id, "study/report.html")
    assert (tmp_path / "a.html").read_text() == logged
    probe = ("import sys; from hpstudy.cli import main; code = main(['report', '--study', "
             f"'{config.path}', '--storage', '{copy.storage}', '--tracking-uri', "
             f"'{copy.tracking_uri}', '--output', '{tmp_path / 'c.html'}']); "
             "print([m for m in ('torch', 'matplotlib') if m in sys.modules], code)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.splitlines()[-1] == "[] 0", done.stdout + done.stderr  # a quick reuse
    assert (tmp_path / "c.html").read_text() == logged
    from hpstudy.search.record import state_counts

    study = optuna.load_study(study_name=config.name, storage=copy.storage)
    assert f"({state_counts(study.trials)})" in logged  # the counts optimize printed
    optuna.load_study(study_name=config.name, storage=copy.storage).enqueue_trial({})
    run_id, reused = write_report(config, copy.storage, copy.tracking_uri, tmp_path / "b.html",
                                  data=lambda: None)  # one more trial: drawn again, and logged
    assert not reused
    assert read_text(copy.tracking_uri, run_id, "study/report.html") == (
        tmp_path / "b.html").read_text()
