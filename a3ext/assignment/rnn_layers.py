"""The assignment's ``rnn_layers`` (numpy, float64): the golden reference of
:mod:`a3ext.reference`, with the assignment's names, signatures and caches.

May import: ``a3ext.reference``.
"""
from ..reference import (lstm_backward, lstm_forward, lstm_step_backward, lstm_step_forward, rnn_backward,
                         rnn_forward, rnn_step_backward, rnn_step_forward, sigmoid, temporal_affine_backward,
                         temporal_affine_forward, temporal_softmax_loss, word_embedding_backward,
                         word_embedding_forward)

__all__ = ["rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward", "word_embedding_forward",
           "word_embedding_backward", "sigmoid", "lstm_step_forward", "lstm_step_backward", "lstm_forward",
           "lstm_backward", "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss"]
