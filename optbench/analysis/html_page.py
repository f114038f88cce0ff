"""The shell every optbench HTML page shares (`optbench report`'s comparison and benchmark
pages): one self-contained file with plotly.js inlined once, every figure as compact JSON
drawn by one script, and a Content-Security-Policy that forbids any request, so the page
works offline and opens quickly. Plotly is imported here only (the `report` extra).
"""

from __future__ import annotations

import datetime as _dt
import html
from typing import Any

from optbench.core.errors import ConfigError

EXTRA_HINT = "pip install 'optbench[report]'"
# Colours that stay apart on white: Plotly's D3 set, then its Dark24 (cycled beyond).
PALETTE = [
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"),
    *("#bcbd22", "#17becf", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A"),
    *("#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D"),
    *("#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7"),
]


def colour(index: int) -> str:
    """The palette's colour for the index-th configuration or optimizer (cycled)."""
    return PALETTE[index % len(PALETTE)]


def rgba(colour: str, alpha: float) -> str:
    """A palette colour (#rrggbb) made translucent, for a band under its line."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def plotly_module() -> Any:
    """plotly, or the line that says how to install it."""
    try:
        import plotly
    except ImportError:
        raise ConfigError(f"optbench report needs plotly: {EXTRA_HINT}") from None
    return plotly


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:1300px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.meta{color:#555;font-size:.9em}
table.ranking{border-collapse:collapse;font-size:.85em;font-variant-numeric:tabular-nums}
.ranking th,.ranking td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;
white-space:nowrap}
.ranking th{background:#f3f3f3;position:sticky;top:0}
.ranking .ranked{background:#fff7d6}
.ranking tr.hidden td{opacity:.35}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:middle;
margin-right:.3em}
.tablewrap{max-height:32em;overflow:auto}
.figure{margin:1em 0;border:1px solid #eee}
details{margin:.3em 0}summary{cursor:pointer}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em}
.todo{color:#555;font-style:italic}
"""

# Draws every figure, then keeps a configuration hidden or shown in all of them at once:
# clicking a legend entry toggles its group (line and band) in every figure, double-clicking
# shows only it (again: all). window.optbenchRendered is when the last figure was drawn.
_SCRIPT = """
(function(){
window.optbenchScriptStart = performance.now();
const hidden = new Set();
const gds = [];
function groupsOf(gd){return gd.data.map(t => t.legendgroup).filter(g => g && g[0] === 'c');}
function apply(){
  for (const gd of gds){
    const idx = [], vis = [];
    gd.data.forEach((t, i) => {
      if (t.legendgroup && t.legendgroup[0] === 'c'){
        idx.push(i); vis.push(hidden.has(t.legendgroup) ? 'legendonly' : true);
      }
    });
    if (idx.length) Plotly.restyle(gd, {visible: vis}, idx);
  }
  document.querySelectorAll('tr[data-group]').forEach(tr =>
    tr.classList.toggle('hidden', hidden.has(tr.dataset.group)));
  document.querySelectorAll('input[data-group]').forEach(box => {
    box.checked = !hidden.has(box.dataset.group);
  });
}
document.querySelectorAll('input[data-group]').forEach(box => box.addEventListener('change', () => {
  if (box.checked) hidden.delete(box.dataset.group); else hidden.add(box.dataset.group);
  apply();
}));
function group(ev){const t = ev.data[ev.curveNumber]; return t && t.legendgroup;}
function onClick(ev){
  const g = group(ev); if (!g || g[0] !== 'c') return true;
  if (hidden.has(g)) hidden.delete(g); else hidden.add(g);
  apply(); return false;
}
function onDoubleClick(ev){
  const g = group(ev); if (!g || g[0] !== 'c') return true;
  const all = new Set(gds.flatMap(groupsOf));
  const alone = [...all].every(x => x === g || hidden.has(x)) && !hidden.has(g);
  hidden.clear();
  if (!alone) all.forEach(x => { if (x !== g) hidden.add(x); });
  apply(); return false;
}
const config = {responsive: true, displaylogo: false, scrollZoom: false};
Promise.all(FIGURES.map(f => {
  f.layout.template = TEMPLATE;
  return Plotly.newPlot(f.id, f.data, f.layout, config);
})).then(drawn => {
  drawn.forEach(gd => {
    gds.push(gd);
    gd.on('plotly_legendclick', onClick);
    gd.on('plotly_legenddoubleclick', onDoubleClick);
  });
  window.optbenchRendered = performance.now();
  document.body.dataset.rendered = String(drawn.length);
}, err => { console.error('optbench report: a figure failed to draw', err); });
})();
"""

# Nothing may be fetched: only inline scripts and styles, images from data: URLs.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)


def _json(value: Any) -> str:
    """Plotly's JSON (numpy arrays as compact typed arrays), safe inside a <script>."""
    from plotly.io.json import to_json_plotly

    return to_json_plotly(value).replace("<", "\\u003c")


def switch(buttons: list[dict[str, Any]]) -> dict[str, Any]:
    """A row of buttons above a figure's top-left corner (Plotly's updatemenus entry)."""
    return {
        "type": "buttons",
        "direction": "left",
        "x": 0,
        "xanchor": "left",
        "y": 1.02,
        "yanchor": "bottom",
        "showactive": True,
        "buttons": buttons,
    }


def placed(
    found: list[tuple[str, dict[str, Any] | None]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The figures that were drawn (None: nothing to show), each with its id, and the page's
    heading and empty <div> for each, in order."""
    figures = [{"id": fid, **figure} for fid, figure in found if figure is not None]
    divs = [
        f"<h2>{html.escape(figure.pop('heading'))}</h2><div id={figure['id']} class=figure></div>"
        for figure in figures
    ]
    return figures, divs


def generated_by() -> str:
    """The page's stamp: when, and with which plotly."""
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Generated {generated} by optbench with plotly {plotly_module().__version__}."


def page(title: str, intro: str, body: str, figures: list[dict[str, Any]]) -> str:
    """A whole page: `title` (escaped here), then `intro` and `body` (HTML, escaped by the
    caller), then plotly.js and the script that draws `figures` into their <div>s."""
    plotly_module()
    from plotly.io import templates
    from plotly.offline import get_plotlyjs

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{intro}
{body}
<script>{get_plotlyjs()}</script>
<script>
const TEMPLATE = {{layout: {_json(templates["plotly_white"].layout)}}};
const FIGURES = {_json(figures)};
{_SCRIPT}</script>
</body></html>
"""
