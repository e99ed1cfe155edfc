"""The scoring server `hpstudy serve` starts: MLflow's own app, behind a guard on bodies.

MLflow's scoring server parses a request's JSON before the model sees it, so a body nested
100,000 deep fails inside `json.loads` (RecursionError: HTTP 500) and a 50 MB one is read
whole, echoed back in the error when it is not JSON. The guard answers both before MLflow
reads them: a body over MAX_BODY_BYTES gets 413, one nested deeper than MAX_DEPTH gets 400.
It also keeps internals out of every error answer: MLflow's `stack_trace` field is dropped
and file paths are cut from the message. Everything else is MLflow's app as `mlflow models
serve` runs it (same routes, same answers, same environment variables).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np

MAX_BODY_BYTES = 16 * 2**20  # one request: an 8 MB image as base64 fits, a 50 MB body does not
DRAIN_BYTES = 256 * 2**20  # an oversize body is read and dropped up to here, then cut off
MAX_DEPTH = 32  # JSON nesting: a batch of H x W x C pixel lists is 6 deep
PATH = re.compile(r"(?<![\w/.])(?:[A-Za-z]:)?[/\\](?:[\w.-]+[/\\])+[\w.-]+")  # a file's path
ESCAPE, STRING = re.compile(rb"\\."), re.compile(rb'"[^"]*"')

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_depth(body: bytes) -> int:
    """How deep a JSON text nests its arrays and objects (brackets inside strings ignored)."""
    text = STRING.sub(b"", ESCAPE.sub(b"", body))  # escapes first: \" does not end a string
    codes = np.frombuffer(text, dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


def scrubbed(body: bytes) -> bytes:
    """An error answer without MLflow's stack trace and without file paths in its message."""
    try:
        answer = json.loads(body)
    except ValueError:
        return PATH.sub("<path>", body.decode("utf-8", "replace")).encode()
    if not isinstance(answer, dict):
        return body
    answer.pop("stack_trace", None)
    if isinstance(answer.get("message"), str):
        answer["message"] = PATH.sub("<path>", answer["message"])
    return json.dumps(answer).encode()


class BodyGuard:
    """ASGI middleware: refuse oversize and deeply nested bodies, scrub error answers."""

    def __init__(self, app: App, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH):
        self.app, self.max_bytes, self.max_depth = app, max_bytes, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check an HTTP request's body, then hand it (read once, replayed) to the app."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", ()))
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _drain(receive, DRAIN_BYTES)  # a client still sending would see a reset
            return await _refuse(send, 413, self._too_large(int(declared)))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                if more:
                    await _drain(receive, DRAIN_BYTES - size)
                return await _refuse(send, 413, self._too_large(size, more))
        body = b"".join(chunks)
        if b"json" in headers.get(b"content-type", b"") and (
                depth := json_depth(body)) > self.max_depth:
            return await _refuse(send, 400, f"the JSON body nests {depth} levels deep; at most "
                                 f"{self.max_depth} are accepted (send one record per image: "
                                 '{"dataframe_records": [{"image": ...}, ...]})')
        return await self.app(scope, _replay(body, receive), _scrubbing(send))

    def _too_large(self, size: int, more: bool = False) -> str:
        given = f"more than {size}" if more else f"{size}"
        return (f"the request body is {given} bytes; at most {self.max_bytes} are accepted "
                "(send fewer or smaller images per request)")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then the server's own (which
    waits for the client to disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _scrubbing(send: Send) -> Send:
    """A `send` that holds an error answer's body until it is whole, then scrubs it."""
    start: Message | None = None
    held: list[bytes] = []

    async def scrub_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start = message
            return None
        if start is None or message["type"] != "http.response.body":
            return await send(message)
        held.append(message.get("body", b""))
        if message.get("more_body", False):
            return None
        body = scrubbed(b"".join(held))
        start["headers"] = [(k, v) for k, v in start.get("headers", ())
                            if k.lower() != b"content-length"] + [
                                (b"content-length", str(len(body)).encode())]
        await send(start)
        return await send({"type": "http.response.body", "body": body})

    return scrub_send


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop what is left of a body, up to `limit` bytes."""
    while limit > 0:
        message = await receive()
        limit -= len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _refuse(send: Send, status: int, message: str) -> None:
    """Answer with MLflow's error shape: {"error_code": ..., "message": ...}."""
    code = "REQUEST_LIMIT_EXCEEDED" if status == 413 else "INVALID_PARAMETER_VALUE"
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def guarded_app() -> BodyGuard:
    """MLflow's scoring app for the model its environment names, behind the guard (uvicorn
    `--factory`)."""
    from mlflow.pyfunc.scoring_server import app as scoring  # loads the model

    return BodyGuard(scoring.app)


def serve_command(model_path: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that serve a local model folder: uvicorn, as `mlflow models
    serve --env-manager local` runs it, with `guarded_app` in place of MLflow's bare app."""
    from mlflow.pyfunc import scoring_server

    _, env = scoring_server.get_cmd(model_path, port=port, host=host)  # MLflow's variables
    command = [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
               "--factory", f"{__name__}:{guarded_app.__name__}"]
    return command, dict(os.environ) | env
