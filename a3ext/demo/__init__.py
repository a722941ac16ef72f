"""``a3ext demo``: the whole assignment end to end, written as one offline HTML report.

    from a3ext.demo import run_demo
    result = run_demo("demo_out", quick=True)      # DIR/index.html, DIR/*.png, DIR/metrics.json
    result["ok"], result["stages"]["gan"]["status"]

Four stages, in order (each a function of :mod:`.stages` that uses only the parts'
public API): ``captioning`` (embedded dataset, RNN and LSTM captioners, loss curves,
val BLEU, greedy and beam captions), ``visualization`` (saliency, SmoothGrad,
Integrated Gradients, Grad-CAM, fooling images, class visualizations), ``style``
(three style-transfer presets, feature inversion, texture synthesis) and ``gan``
(vanilla, least-squares, DC and WGAN-GP generators with the quality metric, and the
semi-supervised classifier against its baseline).

Modules, each importing only modules listed before it: :mod:`.stage_list` (the stage
names, modes, titles and metric keys: a leaf every other module reads), :mod:`.stages`
(the four stages and their settings per mode; they import only the parts' public API),
:mod:`.report` (the HTML page), :mod:`.runner` (stage orchestration, resume, atomic
files), :mod:`.cli` (``a3ext demo``). Nothing in a3ext imports the demo but the face,
:mod:`a3ext.cli`.

May import: its own modules only (it re-exports their public names).
"""
from .cli import register_cli
from .runner import StageContext, run_demo
from .stage_list import METRIC_KEYS, MODES, STAGES
from .stages import SETTINGS

__all__ = ["run_demo", "register_cli", "STAGES", "MODES", "METRIC_KEYS", "SETTINGS", "StageContext"]
