"""The guard in front of MLflow's scoring server: JSON depth, and error answers scrubbed."""

from __future__ import annotations

import asyncio
import json

from hpstudy.serve.guard import BodyGuard, json_depth, scrubbed


def test_json_depth_counts_arrays_and_objects_but_not_brackets_in_strings():
    assert json_depth(b'{"a": 1}') == 1 and json_depth(b"3") == 0
    assert json_depth(b'{"dataframe_records": [{"image": [[1, 2], [3, 4]]}]}') == 5
    assert json_depth(b'{"image": "[[[[{{{{", "x": "\\"[[["}') == 1
    assert json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000


def test_error_answers_lose_the_stack_trace_and_file_paths():
    body = json.dumps({"error_code": "BAD_REQUEST", "message": "failed in /srv/app/x/predictor.py"
                       " (C:\\Users\\me\\m.py)", "stack_trace": "Traceback ..."}).encode()
    answer = json.loads(scrubbed(body))
    assert answer == {"error_code": "BAD_REQUEST", "message": "failed in <path> (<path>)"}
    assert scrubbed(b"Internal Server Error") == b"Internal Server Error"


def call(guard: BodyGuard, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple:
    """One HTTP request through `guard`, its body in `chunks`; (status, body, what the app read)."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    sent, seen = [], []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):  # echoes the body it reads
        body = (await receive())["body"]
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    guard.app = app
    asyncio.run(guard({"type": "http", "method": "POST", "headers": headers}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), seen


def test_the_guard_refuses_oversize_bodies_declared_or_streamed_and_replays_the_rest():
    guard, json_type = BodyGuard(None, max_bytes=10, max_depth=3), (b"content-type",
                                                                     b"application/json")
    status, body, seen = call(guard, [b"[1]"], [json_type, (b"content-length", b"3")])
    assert (status, body, seen) == (200, b"[1]", [b"[1]"])
    status, body, seen = call(guard, [b"x" * 6] * 3, [json_type])  # chunked, no length
    assert status == 413 and b"more than 12 bytes" in body and not seen
    status, body, _ = call(guard, [b""], [json_type, (b"content-length", b"99")])
    assert status == 413 and b"at most 10" in body
    status, body, _ = call(guard, [b"[[[[1]]]]"], [json_type])
    assert status == 400 and b"nests 4 levels" in body
