"""``CaptioningRNN``: the assignment's image-captioning network on the a3ext C++ ops.

Architecture (as in the assignment): an image feature vector (N, D) is projected to
the initial hidden state ``h0 = features @ W_proj + b_proj`` (no nonlinearity); the
caption's words go through a word embedding ``W_embed`` (V, W), a vanilla RNN or an
LSTM (``a3ext.ops.rnn`` / ``a3ext.ops.lstm``, gate order i, f, o, g, c0 = 0), and a
vocabulary projection ``W_vocab`` (H, V), ``b_vocab`` (V); the loss is the temporal
softmax loss on the next word, masked where the target is ``<NULL>``, summed over
time and divided by N.

May import: ``a3ext.captioning.layers``, ``a3ext.ops``; outside a3ext: numpy, torch.
"""
from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from .layers import temporal_affine, temporal_softmax_loss, word_embedding

__all__ = ["CaptioningRNN", "CELL_TYPES", "PARAM_NAMES", "greedy_reference"]

CELL_TYPES = ("rnn", "lstm")
#: The parameters in the assignment's order (``model.params``' keys).
PARAM_NAMES = ("W_embed", "W_proj", "b_proj", "Wx", "Wh", "b", "W_vocab", "b_vocab")


def _resolve_dtype(dtype) -> tuple[torch.dtype, bool]:
    """``(torch dtype, numpy_init)``: a torch dtype keeps a3ext's torch initialisation;
    a numpy dtype (``np.float32``, ``np.float64``, ``np.dtype('float64')``, ...) selects
    the assignment's numpy initialisation."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"CaptioningRNN: dtype must be float32 or float64 (torch or numpy), but got {dtype}")
        return dtype, False
    try:
        npd = np.dtype(dtype)
    except TypeError:
        npd = None
    if npd == np.float32:
        return torch.float32, True
    if npd == np.float64:
        return torch.float64, True
    raise TypeError(f"CaptioningRNN: dtype must be float32 or float64 (torch.float32, torch.float64, np.float32 "
                    f"or np.float64), but got {dtype!r}")


class ParamsView(MutableMapping):
    """``model.params``: the assignment's parameter dict, as numpy arrays that share
    memory with the model's (CPU) parameters.

    Reading ``params[k]`` gives a numpy view of parameter ``k``: changing it in place
    (as ``eval_numerical_gradient`` does) changes the model. Assigning
    ``params[k] = array`` copies the array into the parameter (same shape required;
    cast to the model's dtype), as the assignment's solver and tests do. The keys are
    fixed (the assignment's names, in its order)."""

    def __init__(self, model: "CaptioningRNN"):
        self._model = model

    def _param(self, key) -> nn.Parameter:
        if key not in PARAM_NAMES:
            raise KeyError(f"CaptioningRNN.params: no parameter {key!r}; the parameters are {list(PARAM_NAMES)}")
        return getattr(self._model, key)

    def __getitem__(self, key) -> np.ndarray:
        p = self._param(key)
        if p.device.type != "cpu":
            raise RuntimeError(f"CaptioningRNN.params[{key!r}]: numpy views need the parameters on the CPU, but the "
                               f"model is on {p.device}; use model.cpu() or the torch parameters "
                               f"(model.{key}, model.named_parameters())")
        return p.detach().numpy()

    def __setitem__(self, key, value) -> None:
        p = self._param(key)
        if value is None:
            raise TypeError(f"CaptioningRNN.params[{key!r}]: expected an array of shape {tuple(p.shape)}, got None")
        v = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(f"CaptioningRNN.params[{key!r}]: expected an array of shape {tuple(p.shape)}, "
                             f"but got shape {tuple(v.shape)}")
        if v.is_complex() or v.dtype == torch.bool:
            raise TypeError(f"CaptioningRNN.params[{key!r}]: expected real numbers, but got dtype {v.dtype}")
        with torch.no_grad():
            p.copy_(v)

    def __delitem__(self, key) -> None:
        raise TypeError(f"CaptioningRNN.params: parameters cannot be deleted (tried {key!r})")

    def __iter__(self):
        return iter(PARAM_NAMES)

    def __len__(self) -> int:
        return len(PARAM_NAMES)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: array{tuple(getattr(self._model, k).shape)}" for k in PARAM_NAMES) + "}"


def _is_numpy_call(*args) -> bool:
    """The assignment's numpy contract applies when no input is a torch tensor."""
    return not any(isinstance(a, torch.Tensor) for a in args)


class CaptioningRNN(nn.Module):
    """Image captioning with a vanilla RNN or an LSTM.

    Args:
      word_to_idx: vocabulary, word -> index in [0, V); must contain ``<NULL>``;
        ``<START>`` and ``<END>`` are needed for sampling.
      input_dim: D, size of the image feature vectors.
      wordvec_dim: W, size of the word vectors.
      hidden_dim: H, size of the hidden state.
      cell_type: ``'rnn'`` or ``'lstm'``.
      dtype: ``torch.float32`` / ``torch.float64`` (weights drawn with torch's RNG or
        ``generator``), or the assignment's ``np.float32`` / ``np.float64``: then the
        weights are drawn from numpy's global RNG exactly as the assignment does
        (same order, scale and cast), so after ``np.random.seed(s)`` they are
        bit-identical to the assignment's model.
      generator: (keyword-only) optional ``torch.Generator`` for the torch initialisation.

    The assignment's numpy contract: ``model.params`` is a dict of numpy arrays
    sharing memory with the parameters; ``loss(features, captions)`` with numpy
    inputs returns ``(loss, grads)`` (a float and a dict of numpy arrays keyed like
    ``params``); ``sample`` with numpy features returns a numpy int32 array. With
    torch tensors, ``loss`` returns a differentiable scalar tensor and ``sample`` an
    int64 tensor.

    Parameters (attributes and state-dict keys): ``W_embed (V, W)``,
    ``W_proj (D, H)``, ``b_proj (H,)``, ``Wx (W, G)``, ``Wh (H, G)``, ``b (G,)``,
    ``W_vocab (H, V)``, ``b_vocab (V,)`` with G = H (rnn) or 4H (lstm); initialised as
    the assignment does: W_embed randn/100, W_proj randn/sqrt(D), Wx randn/sqrt(W),
    Wh randn/sqrt(H), W_vocab randn/sqrt(H), biases 0.
    """

    def __init__(
        self,
        word_to_idx: Mapping[str, int],
        input_dim: int = 512,
        wordvec_dim: int = 128,
        hidden_dim: int = 128,
        cell_type: str = "rnn",
        dtype=torch.float32,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if cell_type not in CELL_TYPES:
            raise ValueError(f"CaptioningRNN: cell_type must be 'rnn' or 'lstm', but got {cell_type!r}")
        dtype, numpy_init = _resolve_dtype(dtype)
        if "<NULL>" not in word_to_idx:
            raise ValueError("CaptioningRNN: word_to_idx must contain '<NULL>'")
        for name, v in (("input_dim", input_dim), ("wordvec_dim", wordvec_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"CaptioningRNN: {name} must be a positive int, but got {v!r}")
        self.cell_type = cell_type
        self.word_to_idx = dict(word_to_idx)
        self.idx_to_word = {i: w for w, i in self.word_to_idx.items()}
        self._null = self.word_to_idx["<NULL>"]
        self._start = self.word_to_idx.get("<START>")
        self._end = self.word_to_idx.get("<END>")
        self.input_dim, self.wordvec_dim, self.hidden_dim = input_dim, wordvec_dim, hidden_dim
        V, D, W, H = len(self.word_to_idx), input_dim, wordvec_dim, hidden_dim
        G = 4 * H if cell_type == "lstm" else H
        self.vocab_size = V

        np_dtype = np.float32 if dtype == torch.float32 else np.float64

        def randn(*shape, scale):
            if numpy_init:  # the assignment: np.random.randn (float64), /= scale, astype(dtype)
                w = np.random.randn(*shape)
                w /= scale
                return nn.Parameter(torch.from_numpy(w.astype(np_dtype)))
            return nn.Parameter(torch.randn(*shape, generator=generator, dtype=torch.float64).div_(scale).to(dtype))

        def zeros(*shape):
            return nn.Parameter(torch.zeros(*shape, dtype=dtype))

        self.W_embed = randn(V, W, scale=100.0)
        self.W_proj = randn(D, H, scale=np.sqrt(D) if numpy_init else math.sqrt(D))
        self.b_proj = zeros(H)
        self.Wx = randn(W, G, scale=np.sqrt(W) if numpy_init else math.sqrt(W))
        self.Wh = randn(H, G, scale=np.sqrt(H) if numpy_init else math.sqrt(H))
        self.b = zeros(G)
        self.W_vocab = randn(H, V, scale=np.sqrt(H) if numpy_init else math.sqrt(H))
        self.b_vocab = zeros(V)

    @property
    def params(self) -> ParamsView:
        """The assignment's ``params`` dict (numpy arrays sharing memory with the
        parameters; assigning an array copies it in). See :class:`ParamsView`."""
        return ParamsView(self)

    @params.setter
    def params(self, values: Mapping) -> None:
        """``model.params = {...}`` (e.g. restoring a saved best set) copies each array in."""
        view = ParamsView(self)
        for k, v in dict(values).items():
            view[k] = v

    @property
    def dtype(self) -> torch.dtype:
        return self.W_embed.dtype

    def extra_repr(self) -> str:
        return (f"cell_type={self.cell_type!r}, V={self.vocab_size}, D={self.input_dim}, "
                f"W={self.wordvec_dim}, H={self.hidden_dim}, dtype={self.dtype}")

    def config(self) -> dict:
        """The constructor arguments (JSON-serialisable except dtype, given as a string)."""
        return {"word_to_idx": self.word_to_idx, "input_dim": self.input_dim,
                "wordvec_dim": self.wordvec_dim, "hidden_dim": self.hidden_dim,
                "cell_type": self.cell_type, "dtype": str(self.dtype).replace("torch.", "")}

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _values(fn: str, name: str, value, expected: str) -> Tensor:
        """``value`` (a tensor or array) as a tensor holding values, else an error naming it."""
        if value is None or isinstance(value, (str, bytes)):
            raise TypeError(f"CaptioningRNN.{fn}: expected {name} of shape {expected} (a tensor or array), "
                            f"but got {type(value).__name__}")
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"CaptioningRNN.{fn}: expected {name} of shape {expected} (a tensor or array), "
                            f"but got {type(value).__name__} ({exc})") from None
        if value.device.type == "meta":
            raise ValueError(f"CaptioningRNN.{fn}: {name} must hold values (a CPU or CUDA tensor), "
                             f"but got a tensor on meta")
        return value

    def _features(self, fn: str, features) -> Tensor:
        features = self._values(fn, "features", features, f"(N, D) with D = {self.input_dim}")
        if features.dim() != 2 or features.shape[1] != self.input_dim:
            raise ValueError(
                f"CaptioningRNN.{fn}: expected features of shape (N, D) with D = {self.input_dim}, "
                f"but got {list(features.shape)}"
            )
        return features.to(device=self.W_embed.device, dtype=self.dtype)

    def _need_start_end(self, fn: str) -> None:
        if self._start is None or self._end is None:
            raise ValueError(f"CaptioningRNN.{fn}: word_to_idx must contain '<START>' and '<END>' to decode")

    # ------------------------------------------------------------------ training
    def loss(self, features, captions):
        """Training loss: features (N, D), captions (N, T+1) integers.

        Input words are ``captions[:, :-1]``, targets ``captions[:, 1:]``; targets equal
        to ``<NULL>`` are masked out; the loss is summed over time and divided by N.

        With torch tensors: returns a scalar tensor; differentiate it with
        ``loss.backward()``. With numpy arrays (the assignment's contract): returns
        ``(loss, grads)``, a float and a dict of numpy arrays keyed like
        :attr:`params` (the parameters' ``.grad`` fields are not touched).
        """
        if _is_numpy_call(features, captions):
            return self._numpy_loss(features, captions)
        return self._loss(features, captions)

    forward = loss

    def _numpy_loss(self, features, captions) -> tuple[float, dict]:
        params = [getattr(self, k) for k in PARAM_NAMES]
        with torch.enable_grad():
            loss = self._loss(np.asarray(features), np.asarray(captions))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        out = {}
        for k, p, g in zip(PARAM_NAMES, params, grads):
            out[k] = (torch.zeros_like(p) if g is None else g).detach().cpu().numpy()
        return float(loss.detach()), out

    def _loss(self, features, captions) -> Tensor:
        features = self._features("loss", features)
        captions = self._values("loss", "captions", captions, "(N, T+1) (integers)")
        if captions.dim() != 2 or captions.shape[0] != features.shape[0] or captions.shape[1] < 2:
            raise ValueError(
                f"CaptioningRNN.loss: expected captions of shape (N, T+1) with N = {features.shape[0]} "
                f"and T >= 1, but got {list(captions.shape)}"
            )
        if captions.dtype.is_floating_point or captions.dtype == torch.bool:
            raise TypeError(f"CaptioningRNN.loss: captions must be integers, but got {captions.dtype}")
        captions = captions.to(device=features.device, dtype=torch.long)
        if captions.numel():
            lo, hi = (int(v) for v in torch.aminmax(captions))
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(f"CaptioningRNN.loss: caption word indices must be in [0, V) = "
                                 f"[0, {self.vocab_size}), but got values in [{lo}, {hi}]")
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        h0 = torch.addmm(self.b_proj, features, self.W_proj)
        if features.device.type == "cpu":
            return self._packed_loss(h0, captions_in, captions_out, mask)
        x = word_embedding(captions_in, self.W_embed)
        if self.cell_type == "rnn":
            h = ops.rnn(x, h0, self.Wx, self.Wh, self.b)
        else:
            h = ops.lstm(x, h0, self.Wx, self.Wh, self.b)
        scores = temporal_affine(h, self.W_vocab, self.b_vocab)
        return temporal_softmax_loss(scores, captions_out, mask)

    def _packed_loss(self, h0: Tensor, captions_in: Tensor, captions_out: Tensor, mask: Tensor) -> Tensor:
        """The same loss without any work on padding (CPU): a caption's steps after its
        last unmasked target influence nothing, so each caption runs only up to it, in
        the packed layout of ``a3ext.ops.rnn_packed`` (embedding, recurrence, vocabulary
        projection and softmax loss all on the P real rows). Equal to the padded
        composition up to floating-point summation order (tested)."""
        N, T = captions_out.shape
        steps = torch.arange(1, T + 1)
        lengths = (mask * steps).amax(1) if N else torch.zeros(0, dtype=torch.long)
        order, batch_sizes, index = ops.pack_lengths(lengths, T)
        words = captions_in.reshape(-1).index_select(0, index)
        targets = captions_out.reshape(-1).index_select(0, index)
        x = F.embedding(words, self.W_embed)
        h0 = h0.index_select(0, order)
        if self.cell_type == "rnn":
            h = ops.rnn_packed(x, batch_sizes, h0, self.Wx, self.Wh, self.b)
        else:
            h = ops.lstm_packed(x, batch_sizes, h0, self.Wx, self.Wh, self.b)
        scores = torch.addmm(self.b_vocab, h, self.W_vocab)
        return F.cross_entropy(scores, targets, ignore_index=self._null, reduction="sum") / max(N, 1)

    # ------------------------------------------------------------------ decoding
    def _step(self, x: Tensor, h: Tensor, c: Tensor | None):
        if self.cell_type == "rnn":
            return ops.rnn_step(x, h, self.Wx, self.Wh, self.b), None
        return ops.lstm_step(x, h, c, self.Wx, self.Wh, self.b)

    def sample(self, features, max_length: int = 30):
        """Greedy decoding: features (N, D) -> captions (N, max_length).

        Starts from ``<START>`` (not included in the output); at each step the most
        likely word is fed back. Every position after the first ``<END>`` is
        ``<NULL>`` (the ``<END>`` itself is kept). Vectorised over the batch; the loop
        over time stops early once every caption has ended. Returns an int64 tensor
        (on the model's device) for a tensor input, a numpy int32 array (the
        assignment's) for a numpy input.
        """
        out = self._sample(features, max_length)
        return out.cpu().numpy().astype(np.int32) if _is_numpy_call(features) else out

    @torch.inference_mode()
    def _sample(self, features, max_length: int) -> Tensor:
        self._need_start_end("sample")
        max_length = _length("sample", max_length)
        features = self._features("sample", features)
        N, dev = features.shape[0], features.device
        captions = torch.full((N, max_length), self._null, dtype=torch.long, device=dev)
        if N == 0 or max_length == 0:
            return captions
        h = torch.addmm(self.b_proj, features, self.W_proj)
        c = torch.zeros_like(h) if self.cell_type == "lstm" else None
        words = torch.full((N,), self._start, dtype=torch.long, device=dev)
        x = torch.empty(N, self.wordvec_dim, dtype=self.dtype, device=dev)
        scores = torch.empty(N, self.vocab_size, dtype=self.dtype, device=dev)
        ended = torch.zeros(N, dtype=torch.bool, device=dev)
        null = torch.tensor(self._null, dtype=torch.long, device=dev)
        for t in range(max_length):
            torch.index_select(self.W_embed, 0, words, out=x)
            h, c = self._step(x, h, c)
            torch.addmm(self.b_vocab, h, self.W_vocab, out=scores)
            torch.argmax(scores, dim=1, out=words)
            captions[:, t] = torch.where(ended, null, words)
            ended |= words == self._end
            if (t & 3) == 3 and bool(ended.all()):
                break
        return captions

    def beam_search(self, features, beam_size: int = 3, max_length: int = 30,
                    length_penalty: float = 1.0):
        """Beam search: features (N, D) -> captions (N, max_length).

        Keeps ``beam_size`` hypotheses per image; a hypothesis is ranked by its summed
        log-probability divided by ``length ** length_penalty`` (length normalisation;
        the length counts the words generated, ``<END>`` included). A hypothesis that
        emitted ``<END>`` stays in the beam unchanged (its only continuation is
        ``<NULL>`` at no cost). The best hypothesis is returned, padded with
        ``<NULL>`` after ``<END>``. With ``beam_size=1`` this is greedy decoding
        (:meth:`sample`). Vectorised over images and beams. Returns an int64 tensor
        for a tensor input, a numpy int32 array for a numpy input (as :meth:`sample`).
        """
        out = self._beam_search(features, beam_size, max_length, length_penalty)
        return out.cpu().numpy().astype(np.int32) if _is_numpy_call(features) else out

    @torch.inference_mode()
    def _beam_search(self, features, beam_size, max_length, length_penalty) -> Tensor:
        self._need_start_end("beam_search")
        if isinstance(beam_size, bool) or not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
            raise ValueError(f"CaptioningRNN.beam_search: beam_size must be a positive int, but got {beam_size!r}")
        beam_size = int(beam_size)
        max_length = _length("beam_search", max_length)
        features = self._features("beam_search", features)
        N, B, V, dev = features.shape[0], beam_size, self.vocab_size, features.device
        if N == 0 or max_length == 0:
            return torch.full((N, max_length), self._null, dtype=torch.long, device=dev)
        h = torch.addmm(self.b_proj, features, self.W_proj).repeat_interleave(B, dim=0)  # (N*B, H)
        c = torch.zeros_like(h) if self.cell_type == "lstm" else None
        words = torch.full((N * B,), self._start, dtype=torch.long, device=dev)
        seqs = torch.full((N, B, max_length), self._null, dtype=torch.long, device=dev)
        score = torch.full((N, B), -math.inf, dtype=self.dtype, device=dev)
        score[:, 0] = 0.0  # all beams start identical: keep one
        length = torch.zeros(N, B, dtype=self.dtype, device=dev)
        ended = torch.zeros(N, B, dtype=torch.bool, device=dev)
        finished_logp = torch.full((V,), -math.inf, dtype=self.dtype, device=dev)
        finished_logp[self._null] = 0.0
        base = (torch.arange(N, device=dev) * B).unsqueeze(1)
        for t in range(max_length):
            x = F.embedding(words, self.W_embed)
            h, c = self._step(x, h, c)
            logp = torch.log_softmax(torch.addmm(self.b_vocab, h, self.W_vocab), dim=1).view(N, B, V)
            logp = torch.where(ended.unsqueeze(2), finished_logp, logp)
            new_len = length + (~ended).to(self.dtype)
            cand = score.unsqueeze(2) + logp  # (N, B, V)
            norm = cand / new_len.unsqueeze(2).pow(length_penalty)
            _, top = norm.view(N, B * V).topk(B, dim=1)
            src, w = top // V, top % V  # (N, B)
            score = cand.view(N, B * V).gather(1, top)
            length = new_len.gather(1, src)
            seqs = seqs.gather(1, src.unsqueeze(2).expand(N, B, max_length)).clone()
            seqs[:, :, t] = w
            ended = ended.gather(1, src) | (w == self._end)
            rows = (base + src).view(-1)
            h = h.index_select(0, rows)
            if c is not None:
                c = c.index_select(0, rows)
            words = w.view(-1)
            if bool(ended.all()):
                break
        best = (score / length.pow(length_penalty)).argmax(dim=1)
        return seqs[torch.arange(N, device=dev), best]


def _length(fn: str, max_length) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 0:
        raise ValueError(f"CaptioningRNN.{fn}: max_length must be a non-negative int, but got {max_length!r}")
    return int(max_length)


def greedy_reference(model: CaptioningRNN, features: Tensor, max_length: int = 30) -> Tensor:
    """Greedy decoding the obvious way: one image at a time, one step op call per word.
    The reference :meth:`CaptioningRNN.sample` must equal (tested) and the baseline its
    speed is measured against (``benchmarks/bench_captioning.py``)."""
    out = torch.full((features.shape[0], max_length), model._null, dtype=torch.long)
    with torch.no_grad():
        for n in range(features.shape[0]):
            h = features[n:n + 1] @ model.W_proj + model.b_proj
            c = torch.zeros_like(h) if model.cell_type == "lstm" else None
            word = model._start
            for t in range(max_length):
                h, c = model._step(model.W_embed[word].unsqueeze(0), h, c)
                word = int((h @ model.W_vocab + model.b_vocab).argmax())
                out[n, t] = word
                if word == model._end:
                    break
    return out
