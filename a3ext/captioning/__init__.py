"""Image captioning with a vanilla RNN or an LSTM on the a3ext C++ ops.

* :class:`CaptioningRNN` (model: loss, greedy ``sample``, ``beam_search``)
* :class:`CaptioningSolver` (training loop, BLEU each epoch, atomic checkpoints, resume)
* :mod:`.layers`: word embedding, temporal affine, temporal softmax loss
* :mod:`.bleu`: corpus / sentence BLEU-1..4
* :mod:`.data`: the assignment's COCO data layout and a downloader
* :mod:`.synthetic`: the embedded dataset generator (Pillow scenes + grammar)

May import: ``a3ext.captioning.bleu``, ``a3ext.captioning.data``,
``a3ext.captioning.layers``, ``a3ext.captioning.model``, ``a3ext.captioning.solver``,
``a3ext.captioning.synthetic``.
"""
from .bleu import bleu_scores, captions_to_tokens, corpus_bleu, sentence_bleu
from .data import decode_captions, download, download_coco_captioning, load_coco_data, sample_coco_minibatch
from .layers import temporal_affine, temporal_softmax_loss, word_embedding
from .model import CaptioningRNN
from .solver import CaptioningSolver, evaluate_bleu, load_checkpoint, model_from_checkpoint
from .synthetic import make_dataset

__all__ = [
    "CaptioningRNN", "CaptioningSolver", "evaluate_bleu", "load_checkpoint", "model_from_checkpoint",
    "word_embedding", "temporal_affine", "temporal_softmax_loss",
    "corpus_bleu", "sentence_bleu", "bleu_scores", "captions_to_tokens",
    "load_coco_data", "decode_captions", "sample_coco_minibatch", "download", "download_coco_captioning",
    "make_dataset",
]
