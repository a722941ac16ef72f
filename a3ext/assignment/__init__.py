"""The assignment's starter-code module names on a3ext: a notebook changes
``from cs231n.`` to ``from a3ext.assignment.`` and nothing else.

    from a3ext.assignment.rnn_layers import *                  # was: from cs231n.rnn_layers import *
    from a3ext.assignment.classifiers.rnn import CaptioningRNN
    from a3ext.assignment.captioning_solver import CaptioningSolver
    from a3ext.assignment.coco_utils import load_coco_data, sample_coco_minibatch, decode_captions
    from a3ext.assignment.image_utils import image_from_url, SQUEEZENET_MEAN, SQUEEZENET_STD
    from a3ext.assignment.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array

The functions the PyTorch notebooks define in their own cells (Q3-Q5) are importable
from the module names later versions of the assignment gave them:
:mod:`.net_visualization_pytorch`, :mod:`.style_transfer_pytorch`,
:mod:`.gan_pytorch`; :mod:`.data_utils` has ``load_imagenet_val``.

Every name keeps the assignment's signature, accepted inputs and return type. This
package only re-exports the real implementations (in :mod:`a3ext.reference`,
:mod:`a3ext.captioning`, :mod:`a3ext.imaging`, :mod:`a3ext.visualization`,
:mod:`a3ext.style`, :mod:`a3ext.gan`); it holds no second copy of them, only
adapters where the notebooks' defaults differ (e.g. style transfer's
``preprocess(img, size=512)``).

May import: every a3ext part (it sits on top, beside the CLI and the demo).
"""
MODULES = ("rnn_layers", "classifiers.rnn", "captioning_solver", "coco_utils", "image_utils",
           "gradient_check", "optim", "data_utils", "net_visualization_pytorch", "style_transfer_pytorch",
           "gan_pytorch")
