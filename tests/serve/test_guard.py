"""The guard in front of MLflow's scoring server: JSON depth, and error answers scrubbed."""

from __future__ import annotations

import json

from hpstudy.serve.guard import json_depth, scrubbed


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
