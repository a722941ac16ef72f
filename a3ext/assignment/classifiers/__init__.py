"""The assignment's ``classifiers`` package: :mod:`.rnn` (``CaptioningRNN``).

May import: no other a3ext module.
"""
