"""One self-contained HTML page about a study: best trials, the study's views, the champion.

Figures are inlined as PNG data URIs and the style sheet is inline, so the page opens
anywhere (a mail attachment, an MLflow artifact) with no network request.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Mapping, Sequence

from optuna import Study
from optuna.trial import TrialState

from hpstudy.report.views import View
from hpstudy.search.record import TrialRecord, state_counts
from hpstudy.spec.study_file import StudyConfig

BEST_ROWS = 10  # trials in the "best trials" table
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; } code, pre { background: #f6f6f6; padding: 0.2em; }
.warning { color: #8a5a00; }
"""


def render(study: Study, config: StudyConfig, views: Sequence[View],
           champion: Mapping[str, str] | None, warnings: Sequence[str], serve_hint: str) -> str:
    """The page. `champion` is the registered champion's version tags (or None)."""
    trials = study.get_trials(deepcopy=False)
    counts = state_counts(trials)  # the words optimize and `trials` use
    parts = [
        f"<h1>Study {_e(config.name)}</h1>",
        f"<p class='muted'>{_e(config.description)}<br>{len(trials)} trials ({counts}); "
        f"written {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from "
        f"<code>{_e(str(config.path))}</code></p>",
        "<h2>Champion</h2>", _champion(champion, serve_hint),
        *(f"<p class='warning'>Warning: {_e(w)}; consider widening its range.</p>"
          for w in warnings),
        "<h2>Best trials</h2>", _best_table(study),
        "<h2>The search</h2>",
        *(_figure(v) for v in views),
    ]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>hpstudy: {_e(config.name)}</title><style>{STYLE}</style></head>"
            f"<body>\n{chr(10).join(parts)}\n</body></html>\n")


def _champion(tags: Mapping[str, str] | None, serve_hint: str) -> str:
    if not tags:
        return "<p>No champion is registered yet.</p>"
    test_acc = float(tags.get("test_acc", "nan"))
    accuracy = "" if math.isnan(test_acc) else f", test accuracy {100 * test_acc:.2f}%"
    return (f"<p>Trial {_e(tags.get('trial', '?'))}: validation loss "
            f"{float(tags.get('val_loss', 'nan')):.4f}, test loss "
            f"{float(tags.get('test_loss', 'nan')):.4f}{accuracy} (the test set is used once, "
            f"when a model becomes champion).</p><p>Serve it:</p><pre>{_e(serve_hint)}</pre>")


def _best_table(study: Study) -> str:
    complete = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                       if t.value is not None), key=lambda t: t.value)[:BEST_ROWS]
    if not complete:
        return "<p>No trial has completed yet.</p>"
    names = sorted({k for t in complete for k in t.params})
    head = "".join(f"<th>{_e(n)}</th>" for n in ["trial", "val loss", "val acc (%)", *names])
    rows = []
    for t in complete:
        record = TrialRecord.of(t)
        acc = record.val_acc if record and record.val_acc is not None else math.nan
        cells = [str(t.number), f"{t.value:.4f}", "" if math.isnan(acc) else f"{100 * acc:.2f}",
                 *(_value(t.params.get(n)) for n in names)]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _figure(view: View) -> str:
    if view.figure is None and view.drawn is None:
        return (f"<p class='muted'>{_e(view.caption)}: not drawn ({_e(view.why_not)}).</p>")
    return (f"<figure><img alt='{_e(view.caption)}' src='data:image/png;base64,"
            f"{base64.b64encode(view.png).decode('ascii')}'><figcaption>{_e(view.caption)}"
            "</figcaption></figure>")


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
