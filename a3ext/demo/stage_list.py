"""The demo's stage list: the stages in the order they run, the modes, each stage's
section title and the metric keys every successful stage reports.

The one place these names live: :mod:`.runner` (running, resume, ``metrics.json``),
:mod:`.report` (the HTML page) and :mod:`.cli` all read it, and none of them imports
another to get it.

May import: nothing (a leaf; plain data).
"""
from __future__ import annotations

__all__ = ["STAGES", "MODES", "TITLES", "METRIC_KEYS"]

#: The stages in the order they run.
STAGES = ("captioning", "visualization", "style", "gan")

#: ``tiny`` (tests: every stage in seconds), ``quick`` (< 10 min on 2 cores), ``full``.
MODES = ("tiny", "quick", "full")

#: Each stage's section title on the page.
TITLES = {
    "captioning": "1. Image captioning: vanilla RNN and LSTM",
    "visualization": "2. Network visualization: saliency, attributions, fooling images, class visualization",
    "style": "3. Neural style transfer, feature inversion, texture synthesis",
    "gan": "4. Generative adversarial networks and semi-supervised learning",
}

#: The keys every successful stage puts into ``metrics.json[stage]`` (tests check them).
METRIC_KEYS = {
    "captioning": ("dataset", "rnn", "lstm"),
    "visualization": ("predictions", "saliency", "integrated_gradients", "fooling", "class_visualization"),
    "style": ("presets",),
    "gan": ("quality_floor", "vanilla", "ls", "dc", "wgangp", "semi_supervised"),
}
