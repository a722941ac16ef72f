"""The demo's HTML page: one self-contained file (inline CSS, no scripts, fonts or
external URLs), images referenced as relative PNG files beside it. Every text that
comes from data (captions, class names, errors, tracebacks) is HTML-escaped.

May import: the standard library and the demo's :mod:`.stage_list` (the stages and their
titles); not :mod:`.runner`, which calls :func:`render_page`.
"""
from __future__ import annotations

import html
import json

from .stage_list import STAGES, TITLES

__all__ = ["render_page", "TITLES"]


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:21px;margin:0 0 10px;border-bottom:2px solid #d7dbe3;padding-bottom:6px}
h3{font-size:16px;margin:18px 0 6px;color:#2c3a55}
.sub{color:#5a6475;font-size:14px}
.banner{background:#fff3cd;border:1px solid #e6c453;color:#6b5200;padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 20px;margin:18px 0}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13.5px}
th,td{border:1px solid #d5d9e0;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:10px 0 16px}figure img{max-width:100%;height:auto;border:1px solid #e2e5ea;background:#fff}
figcaption{font-size:13px;color:#4d5666;margin-top:4px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px;margin:8px 0 14px}
.card{border:1px solid #dde1e8;border-radius:6px;padding:8px;background:#fafbfc;font-size:13px}
.card img{width:100%;image-rendering:pixelated;border:1px solid #e2e5ea}
.card .t{font-weight:600;margin:4px 0}.card dl{margin:0}.card dt{color:#5a6475;font-size:12px;margin-top:3px}.card dd{margin:0 0 0 2px}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#d9f2df;color:#1e6b33}.failed{background:#fbdcdc;color:#9b1c1c}.notrun{background:#e8eaee;color:#555}
.error{background:#fdf0f0;border:1px solid #f0b9b9;padding:10px 12px;border-radius:6px;color:#8a1a1a;white-space:pre-wrap;font-family:Menlo,Consolas,monospace;font-size:13px}
details{margin-top:8px}summary{cursor:pointer;color:#5a6475}
pre{background:#f6f7f9;border:1px solid #e1e4ea;padding:10px;overflow-x:auto;font-size:12px}
nav ul{margin:6px 0 0 0;padding-left:4px;list-style:none}nav a{color:#1f4fa3;text-decoration:none}
footer{color:#6b7383;font-size:12px;margin-top:24px}
"""


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return _e("—" if v is None else ("yes" if v else "no"))
    if isinstance(v, float):
        return _e(f"{v:.4g}")
    return _e(v)


def _block(b: dict) -> str:
    kind = b.get("type")
    if kind == "heading":
        return f"<h3>{_e(b['text'])}</h3>"
    if kind == "text":
        return f"<p>{_e(b['text'])}</p>"
    if kind == "figure":
        width = f' style="max-width:{int(b["width"])}px"' if b.get("width") else ""
        cap = f"<figcaption>{_e(b['caption'])}</figcaption>" if b.get("caption") else ""
        return (f'<figure><img src="{_e(b["src"])}" alt="{_e(b.get("caption") or b["src"])}"{width}>'
                f"{cap}</figure>")
    if kind == "table":
        head = "".join(f"<th>{_e(c)}</th>" for c in b["columns"])
        rows = []
        for r in b["rows"]:
            cells = "".join(f'<td class="num">{_fmt(v)}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
                            else f"<td>{_fmt(v)}</td>" for v in r)
            rows.append(f"<tr>{cells}</tr>")
        cap = f"<caption class=\"sub\">{_e(b['caption'])}</caption>" if b.get("caption") else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    if kind == "gallery":
        cards = []
        for item in b["items"]:
            lines = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in item.get("lines", []))
            title = f'<div class="t">{_e(item["title"])}</div>' if item.get("title") else ""
            cards.append(f'<div class="card"><img src="{_e(item["src"])}" alt="{_e(item.get("title") or item["src"])}">'
                         f"{title}<dl>{lines}</dl></div>")
        cap = f'<p class="sub">{_e(b["caption"])}</p>' if b.get("caption") else ""
        width = int(b.get("min_width") or 250)
        style = f' style="grid-template-columns:repeat(auto-fill,minmax({width}px,1fr))"' if width != 250 else ""
        return f'{cap}<div class="gallery"{style}>{"".join(cards)}</div>'
    return f"<pre>{_e(json.dumps(b))}</pre>"


def _status_badge(rec: dict | None) -> str:
    if rec is None:
        return '<span class="status notrun">not run</span>'
    if rec.get("status") == "ok":
        return f'<span class="status ok">ok · {rec.get("seconds", 0):.0f} s</span>'
    return f'<span class="status failed">failed · {rec.get("seconds", 0):.0f} s</span>'


def render_page(mode: str, parts, records: dict[str, dict], metrics: dict) -> str:
    """The whole page as a string (see the module docstring)."""
    env = metrics.get("environment", {})
    shown = [n for n in STAGES if n in parts or n in records]
    total = sum(float(records[n].get("seconds") or 0) for n in shown if n in records)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>a3ext demo report</title>", f"<style>{_CSS}</style></head><body><main>",
           "<h1>a3ext: the assignment end to end</h1>",
           f'<p class="sub">RNN/LSTM captioning, network visualization, style transfer and GANs on the embedded '
           f"data, run by <code>a3ext demo</code> in {_e(mode)} mode · torch {_e(env.get('torch'))} · "
           f"{_e(env.get('threads'))} threads · written {_e(metrics.get('written'))} · "
           f"stage time {total:.0f} s</p>"]
    if mode == "quick":
        out.append('<div class="banner">quick mode: smaller settings (fewer iterations, smaller images and '
                   "datasets than the full run); numbers are not the project's best results.</div>")
    elif mode == "tiny":
        out.append('<div class="banner">tiny mode: test settings, seconds per stage; the pictures only show '
                   "that every stage runs.</div>")
    failed = [n for n in shown if records.get(n, {}).get("status") == "failed"]
    if failed:
        out.append(f'<div class="banner" style="background:#fbdcdc;border-color:#e79b9b;color:#8a1a1a">'
                   f"{len(failed)} stage(s) failed: {_e(', '.join(failed))} (errors below).</div>")
    out.append("<nav><ul>")
    for n in shown:
        out.append(f'<li><a href="#{n}">{_e(TITLES[n])}</a> {_status_badge(records.get(n))}</li>')
    out.append("</ul></nav>")
    for n in shown:
        rec = records.get(n)
        out.append(f'<section id="{n}"><h2>{_e(TITLES[n])} {_status_badge(rec)}</h2>')
        if rec is None:
            out.append("<p>This stage has not run yet.</p>")
        elif rec.get("status") == "ok":
            if rec.get("mode") != mode:
                out.append(f'<p class="sub">(from an earlier run in {_e(rec.get("mode"))} mode)</p>')
            if rec.get("summary"):
                out.append(f'<p class="sub">{_e(rec["summary"])}</p>')
            out.extend(_block(b) for b in rec.get("blocks", []))
        else:
            out.append(f'<p>The stage failed after {float(rec.get("seconds") or 0):.1f} s; the other stages ran.</p>')
            out.append(f'<div class="error">{_e(rec.get("error"))}</div>')
            out.append(f"<details><summary>traceback</summary><pre>{_e(rec.get('traceback'))}</pre></details>")
        out.append("</section>")
    out.append(f"<footer>Every number on this page is in <code>metrics.json</code> beside it. "
               f"Python {_e(env.get('python'))} · {_e(env.get('platform'))} · {_e(env.get('cpu_count'))} CPUs.</footer>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
