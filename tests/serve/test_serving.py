"""`hpstudy serve`: a real MLflow scoring server on loopback, asked the way clients ask."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hpstudy import data as datasets
from hpstudy.serve.guard import MAX_BODY_BYTES, MAX_DEPTH
from hpstudy.serve.predictor import MAX_BATCH, MAX_SIDE
from hpstudy.tracking.artifacts import load_network

STARTUP_SECONDS = 120  # loading MLflow and the model on a slow CI machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(finished_study):
    """`hpstudy serve` for the finished study's champion, in its own process group."""
    config, stores, _, _ = finished_study
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hpstudy", "serve", "--study", config.name, "--port", str(port),
         "--tracking-uri", stores.tracking_uri],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {process.stdout.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("server did not start")
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def post(url: str, body: object, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/invocations", data=data,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        try:
            return error.code, json.loads(text)
        except json.JSONDecodeError:
            return error.code, {"message": text}


def png64(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="module")
def test_images(finished_study):
    config = finished_study[0]
    return datasets.load(config.data.name, config.data.options).test.x[:20]


@pytest.mark.slow
def test_pngs_and_arrays_predict_what_the_model_in_memory_does(server, finished_study,
                                                                test_images):
    config, stores = finished_study[:2]
    network = load_network(f"models:/{config.name}@champion", stores.tracking_uri)
    with torch.no_grad():
        expected = torch.softmax(network(test_images), dim=1)
    grey = test_images[:, 0].numpy()  # H x W uint8, as people have them
    as_png = post(server, {"dataframe_records": [{"image": png64(g)} for g in grey]})
    as_arrays = post(server, {"dataframe_records": [{"image": g.tolist()} for g in grey]})
    as_inputs = post(server, {"inputs": {"image": [png64(grey[0]), grey[1].tolist()]}})
    only_pngs = post(server, {"inputs": {"image": [png64(g) for g in grey]}})
    one_png = post(server, {"inputs": {"image": [png64(grey[0])]}})
    for status, answer in (as_png, as_arrays, only_pngs):
        assert status == 200
        rows = answer["predictions"]
        assert [r["class_index"] for r in rows] == expected.argmax(1).tolist()
        assert [r["class_name"] for r in rows] == [str(i) for i in expected.argmax(1).tolist()]
        np.testing.assert_allclose([r["probabilities"] for r in rows], expected.numpy(),
                                   atol=1e-5)
    assert as_inputs[0] == 200 and len(as_inputs[1]["predictions"]) == 2
    assert one_png[0] == 200 and len(one_png[1]["predictions"]) == 1
    np.testing.assert_allclose(one_png[1]["predictions"][0]["probabilities"],
                               expected[0].numpy(), atol=1e-5)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG file whose header says width x height (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


BAD_REQUESTS = {
    "wrong shape": ({"dataframe_records": [{"image": [1, 2, 3]}]}, "expected shape H x W"),
    "wrong dtype": ({"dataframe_records": [{"image": [[0.5, 0.25], [0.1, 0.9]]}]},
                    "fractional values"),
    "out of range": ({"dataframe_records": [{"image": [[0, 300], [1, 2]]}]}, "0..255"),
    "non-image bytes": ({"dataframe_records": [{"image": base64.b64encode(b"hi").decode()}]},
                        "not a readable PNG or JPEG"),
    "not base64": ({"dataframe_records": [{"image": "%%%"}]}, "base64-encoded PNG or JPEG"),
    "empty batch": ({"dataframe_records": []}, "image"),
    "missing field": ({"dataframe_records": [{"img": [[1, 2], [3, 4]]}]}, "image"),
    "no input field": ({"pictures": []}, "input fields"),
    "oversized batch": ({"dataframe_records": [{"image": [[1]]}] * (MAX_BATCH + 1)},
                        f"at most {MAX_BATCH} per request"),
    "oversized image": ({"dataframe_records": [{"image": [[0] * 5000]}]}, "on a side"),
    "not JSON": (b"{not json", "valid JSON"),
    "decompression bomb": ({"dataframe_records": [{"image": base64.b64encode(
        png_claiming(30000, 30000)).decode()}]}, "its header claims more pixels"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_that_says_what_was_wrong_and_the_server_goes_on(server, case):
    body, message = BAD_REQUESTS[case]
    status, answer = post(server, body)
    assert 400 <= status < 500, (status, answer)
    assert message in answer["message"]
    assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)
    assert urllib.request.urlopen(f"{server}/ping", timeout=5).status == 200
    ok, _ = post(server, {"dataframe_records": [{"image": [[0] * 8] * 8}]})
    assert ok == 200


def hostile(case: str) -> bytes:
    """The bodies that used to show internals (or a 500): built when a test asks."""
    if case == "30000x30000 header":
        return json.dumps({"dataframe_records": [{"image": base64.b64encode(
            png_claiming(30000, 30000)).decode()}]}).encode()
    if case == "nested 100,000 deep":
        return b'{"dataframe_records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return b'{"dataframe_records": [{"image": "' + b"A" * (50 * 2**20) + b'"}]}'  # 50 MB


HOSTILE = {"30000x30000 header": (400, f"{MAX_SIDE} on a side"),
           "nested 100,000 deep": (400, f"at most {MAX_DEPTH}"),
           "50 MB body": (413, f"at most {MAX_BODY_BYTES}")}
INTERNALS = re.compile(r"stack_trace|Traceback|site-packages|\.py\b|/(tmp|usr|home|root|work)/")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_get_a_4xx_naming_the_limit_and_no_internals(server, case):
    status, answer = post(server, hostile(case))
    assert (status, HOSTILE[case][1] in answer["message"]) == (HOSTILE[case][0], True), answer
    assert not INTERNALS.search(json.dumps(answer)), answer
    assert urllib.request.urlopen(f"{server}/ping", timeout=5).status == 200
    ok, _ = post(server, {"dataframe_records": [{"image": [[0] * 8] * 8}]})
    assert ok == 200


def test_a_wrong_content_type_is_refused(server):
    status, answer = post(server, b"a,b\n1,2", content_type="text/html")
    assert status == 415 and "content types" in answer["message"]


@pytest.mark.slow
def test_a_moved_store_still_predicts_and_serves_the_same_classes(tmp_path):
    """mlruns/ copied elsewhere (the old folder gone) loads, predicts and serves as before."""
    before, after = tmp_path / "laptop", tmp_path / "elsewhere"
    before.mkdir()
    quick = ["--trials", "2", "--set", "train.epochs=2", "--set", "search.depth=1"]
    run = subprocess.run([sys.executable, "-m", "hpstudy", "optimize", "--study", "digits_mlp",
                          *quick], cwd=before, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    data = datasets.load("digits", datasets.DATASETS["digits"].options())
    images = []
    for i in range(5):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(data.test.x[i, 0].numpy()).save(path)
        images.append(str(path))

    def predict(cwd) -> list[str]:
        done = subprocess.run([sys.executable, "-m", "hpstudy", "predict", "--study",
                               "digits_mlp", *images], cwd=cwd, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
        return [line.split()[3] for line in done.stdout.splitlines()]  # the class name

    classes = predict(before)
    before.rename(after)  # every absolute path MLflow stored now points nowhere
    assert predict(after) == classes
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpstudy", "serve", "--study", "digits_mlp",
                               "--port", str(port)], cwd=after, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and server.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        assert server.poll() is None, server.stdout.read().decode()[-2000:]
        body = {"dataframe_records": [{"image": png64(data.test.x[i, 0].numpy())}
                                      for i in range(5)]}
        status, answer = post(f"http://127.0.0.1:{port}", body)
        assert status == 200, answer
        assert [row["class_name"] for row in answer["predictions"]] == classes
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
