"""The assignment's ``classifiers`` package: :mod:`.rnn` (``CaptioningRNN``)."""
