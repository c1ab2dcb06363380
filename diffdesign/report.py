"""One self-contained HTML report of a finished run, to send to a colleague.

``report.html`` holds, in one file with no external references: the command that ran, its
configuration (the TOML file, if any), the headline figures and the verdict
(:mod:`diffdesign.core.verdict`), every plot the run wrote (PNG, embedded as base64) and
its ``results.json`` (collapsed). The ``diffdesign`` command writes it into ``--out`` after
every study; :func:`write_report` does the same for any folder.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Plots embedded at most (the first, in sorted order, of the folder and its subfolders).
MAX_IMAGES = 40
#: results.json larger than this is linked by name instead of embedded.
MAX_RESULTS_BYTES = 2_000_000

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; }
.flag { color: #b00; font-weight: bold; } .ok { color: #070; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_report(
    out: str | Path,
    title: str,
    command: str = "",
    figures: Mapping[str, str] | None = None,
    verdict=None,
    config_text: str | None = None,
) -> Path:
    """Write ``out/report.html`` (see the module docstring) and return its path.

    Args:
        out: the run's output folder (its PNGs and results.json are embedded).
        title: the report's heading (e.g. "diffdesign ring correct").
        command: the command line that produced the run.
        figures: headline figures, label -> value with unit.
        verdict: a :class:`~diffdesign.core.verdict.Verdict`, or None.
        config_text: the configuration file's text, or None.
    """
    out = Path(out)
    when = html.escape(time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    ran = f" &middot; <code>{html.escape(command)}</code>" if command else ""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{when}{ran}</p>"]
    if figures:
        parts.append("<h2>Summary</h2>")
        parts.append(_table([(html.escape(k), html.escape(str(v))) for k, v in figures.items()]))
    if verdict is not None and verdict.checks:
        flagged = len(verdict.flagged)
        parts.append(f"<h2>Verdict: {flagged} of {len(verdict.checks)} checks flagged</h2>")
        rows = []
        for c in verdict.checks:
            mark = '<span class="ok">ok</span>' if c.passed else '<span class="flag">FLAG</span>'
            advice = "" if c.passed else html.escape(c.advice)
            rows.append((mark, html.escape(c.name), html.escape(c.detail), advice))
        parts.append(_table(rows, ("", "check", "figure", "what to try")))
    images = sorted(out.rglob("*.png"))[:MAX_IMAGES]
    if images:
        parts.append("<h2>Plots</h2>")
        for image in images:
            data = base64.b64encode(image.read_bytes()).decode("ascii")
            name = html.escape(str(image.relative_to(out)))
            parts.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{name}</figcaption></figure>")  # fmt: skip
    if config_text:
        parts.append("<h2>Configuration</h2>")
        parts.append(f"<pre>{html.escape(config_text)}</pre>")
    results = out / "results.json"
    if results.is_file():
        size = results.stat().st_size
        parts.append("<h2>results.json</h2>")
        if size <= MAX_RESULTS_BYTES:
            try:
                text = json.dumps(json.loads(results.read_text()), indent=1)
            except ValueError:
                text = results.read_text()
            parts.append(f"<details><summary>{size / 1024:.0f} kB (click to open)</summary>"
                         f"<pre>{html.escape(text)}</pre></details>")  # fmt: skip
        else:
            parts.append(f"<p>{size / 1e6:.1f} MB: not embedded; see results.json.</p>")
    document = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
                + "\n".join(parts) + "\n</body></html>\n")  # fmt: skip
    path = out / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
    return path
