"""``CaptioningSolver``: the assignment's training loop for :class:`CaptioningRNN`, plus
a progress bar, validation BLEU each epoch, atomic checkpoints and exact resume.

As in the assignment, each iteration trains on a minibatch of ``batch_size`` captions
drawn with replacement from the training captions; an epoch is
``max(num_train // batch_size, 1)`` iterations; the learning rate is multiplied by
``lr_decay`` after every epoch. The minibatches come from the solver's own
``numpy.random.RandomState(seed)``, whose state is part of the checkpoint, so a run
interrupted and resumed from a checkpoint produces the same loss history as an
uninterrupted one.

Data-parallel training: when ``torch.distributed`` is initialised (``torchrun``; gloo
on CPU) the solver wraps the model in ``DistributedDataParallel``. Every rank draws the
same global minibatch from the shared seed and trains on its own contiguous slice of
it; each rank's loss is weighted by its share of the batch so that DDP's gradient
average equals the gradient of the global-batch loss (exact even when ``batch_size`` is
not divisible by the world size). The logged loss is the global-batch loss (all-reduced),
and only rank 0 evaluates BLEU, prints, shows the progress bar and writes checkpoints.

May import: ``a3ext.captioning.bleu``, ``a3ext.captioning.model``,
``a3ext.captioning.optim``, ``a3ext.checkpoint``; outside a3ext: numpy, torch, tqdm.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .. import checkpoint
from . import optim
from .bleu import captions_to_tokens, corpus_bleu
from .model import CaptioningRNN

__all__ = ["CaptioningSolver", "RuleOptimizer", "load_checkpoint", "model_from_checkpoint",
           "save_checkpoint_atomic"]

_CKPT_VERSION = 1


#: Solver checkpoints in :mod:`a3ext.checkpoint` (digest-verified, ``weights_only``).
CHECKPOINT_KIND = checkpoint.Kind(
    "captioning", "a3ext captioning checkpoint",
    legacy_keys=frozenset({"version", "model", "model_config", "optimizer", "solver", "np_rng", "torch_rng"}),
    is_legacy=lambda s: s.get("version") == _CKPT_VERSION and "model" in s)


def save_checkpoint_atomic(obj: dict, path) -> Path:
    """Write a solver checkpoint with :func:`a3ext.checkpoint.save`: atomic (``path`` is
    always the old or the new complete file) and carrying the sha256 of its contents."""
    return checkpoint.save(obj, path, CHECKPOINT_KIND)


def load_checkpoint(path) -> dict:
    """Load a solver checkpoint with :func:`a3ext.checkpoint.load`: ``weights_only`` (no
    pickled code), digest verified; a missing, empty, truncated, corrupt or foreign file
    raises a ``CheckpointError`` (``ValueError``) or ``CheckpointNotFoundError``
    (``FileNotFoundError``) naming the file."""
    ckpt = checkpoint.load(path, CHECKPOINT_KIND)
    if ckpt.get("version") != _CKPT_VERSION or "model" not in ckpt:
        raise checkpoint.CheckpointError(f"{path} is not an a3ext captioning checkpoint (version {_CKPT_VERSION})")
    return ckpt


def model_from_checkpoint(path_or_ckpt) -> CaptioningRNN:
    """Rebuild the :class:`CaptioningRNN` stored in a checkpoint (weights included)."""
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    cfg = dict(ckpt["model_config"])
    cfg["dtype"] = getattr(torch, cfg["dtype"])
    model = CaptioningRNN(**cfg)
    model.load_state_dict(ckpt["model"])
    return model


class _LossModule(torch.nn.Module):
    """``forward`` = ``model.loss``, so that DDP's hooks (gradient all-reduce) see it."""

    def __init__(self, model: CaptioningRNN):
        super().__init__()
        self.model = model

    def forward(self, features, captions):
        return self.model.loss(features, captions)


def _np_state_to_dict(state) -> dict:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _np_state_from_dict(d) -> tuple:
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached_gaussian"])


class RuleOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that applies an assignment-style update rule
    ``rule(w, dw, config) -> (next_w, config)`` (:mod:`a3ext.captioning.optim`, or a
    student's own) to every parameter, on numpy arrays, with one ``config`` dict per
    parameter as the assignment's solver keeps them. The learning rate lives in the
    param group (``lr``), so the solver's per-epoch decay reaches
    ``config['learning_rate']``. The per-parameter configs are kept as tensors in the
    optimizer state, so checkpoints stay loadable with ``weights_only=True``."""

    def __init__(self, params, rule, config: Mapping | None = None):
        config = dict(config or {})
        if not callable(rule):
            raise TypeError(f"RuleOptimizer: rule must be callable, but got {type(rule).__name__}")
        # without a learning rate in config, the rule's own default applies; it is read back
        # from the config after the first step (so lr decay reaches it from then on)
        lr = float(config["learning_rate"]) if "learning_rate" in config else None
        super().__init__(params, {"lr": lr})
        self.rule = rule
        self.base_config = {k: v for k, v in config.items() if k != "learning_rate"}

    @staticmethod
    def _to_numpy(v):
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v

    @staticmethod
    def _to_state(v):
        if isinstance(v, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, np.generic):
            return v.item()
        return v

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                config = {k: self._to_numpy(v) for k, v in state.get("config", self.base_config).items()}
                if group["lr"] is not None:
                    config["learning_rate"] = group["lr"]
                w = p.detach().cpu().numpy()
                if p.device.type != "cpu":
                    w = w.copy()
                dw = p.grad.detach().cpu().numpy().copy()
                next_w, config = self.rule(w, dw, config)
                next_w = np.asarray(next_w)
                if next_w.shape != tuple(p.shape):
                    raise ValueError(f"update rule {getattr(self.rule, '__name__', self.rule)!r} returned an array "
                                     f"of shape {next_w.shape} for a parameter of shape {tuple(p.shape)}")
                p.copy_(torch.from_numpy(np.ascontiguousarray(next_w)))
                if "learning_rate" in config:
                    group["lr"] = float(config.pop("learning_rate"))
                state["config"] = {k: self._to_state(v) for k, v in config.items()}
        return loss


class CaptioningSolver:
    """Train a :class:`CaptioningRNN` on data in the :func:`a3ext.captioning.data.load_coco_data` format.

    Required: ``model``, ``data`` (dict with train/val captions, image_idxs, features,
    ``idx_to_word``). Options (the assignment's first):

    * ``update_rule``: one of the assignment's rules by name, ``'sgd'``,
      ``'sgd_momentum'``, ``'rmsprop'``, ``'adam'`` (default ``'sgd'``, as the
      assignment's solver), or any function
      ``rule(w, dw, config) -> (next_w, config)`` (:mod:`a3ext.captioning.optim`);
      ``optim_config``: the rule's config dict, e.g. ``{'learning_rate': 5e-3}``
      (defaults as in :mod:`.optim`). ``'adam'`` and ``'sgd'`` run torch's fused
      optimizers with the assignment's update (torch adds Adam's epsilon to
      sqrt(v / (1-beta2^t)), the assignment to sqrt(v): the solver passes torch
      epsilon / sqrt(1-beta2^t) each step, which makes the two equal); the others run
      the numpy rule on each parameter (:class:`RuleOptimizer`);
    * ``lr_decay`` (per epoch), ``batch_size``, ``num_epochs``, ``print_every``, ``verbose``;
    * ``grad_clip``: rescale the gradients to at most this global L2 norm before each
      update (``torch.nn.utils.clip_grad_norm_``; default None = no clipping, as the
      assignment);
    * ``seed``: minibatch order (and torch RNG); ``progress``: tqdm bar (default: verbose);
    * ``eval_bleu``: greedy-decode ``num_val_images`` val images after each epoch and
      append corpus BLEU-1..4 to ``val_bleu_history``; ``max_length`` of the samples;
    * ``checkpoint_dir`` and ``checkpoint_every`` (iterations): atomic checkpoints
      ``checkpoint.pt`` (model, optimizer, RNG and data-order state, histories);
    * ``resume_from``: a checkpoint to continue from exactly;
    * ``distributed``: DDP over the initialised process group (default: when
      ``torch.distributed`` is initialised, e.g. under ``torchrun``); see the module doc.

    Attributes after :meth:`train`: ``loss_history`` (one float per iteration),
    ``val_bleu_history`` (one dict per epoch), ``epoch``, ``t`` (iterations done).
    """

    def __init__(self, model: CaptioningRNN, data: Mapping, **kwargs):
        self.model = model
        self.data = data
        self.update_rule = kwargs.pop("update_rule", "sgd")  # the assignment's default
        self.optim_config = dict(kwargs.pop("optim_config", {}))
        self.lr_decay = float(kwargs.pop("lr_decay", 1.0))
        self.batch_size = int(kwargs.pop("batch_size", 100))
        self.num_epochs = int(kwargs.pop("num_epochs", 10))
        self.print_every = int(kwargs.pop("print_every", 10))
        self.verbose = bool(kwargs.pop("verbose", True))
        self.seed = int(kwargs.pop("seed", 0))
        self.grad_clip = kwargs.pop("grad_clip", None)
        if self.grad_clip is not None:
            if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float)) \
                    or not self.grad_clip > 0:
                raise ValueError(f"CaptioningSolver: grad_clip must be a positive number or None, but got "
                                 f"{self.grad_clip!r}")
            self.grad_clip = float(self.grad_clip)
        self.progress = kwargs.pop("progress", None)
        self.eval_bleu = bool(kwargs.pop("eval_bleu", True))
        self.num_val_images = kwargs.pop("num_val_images", 500)
        self.max_length = int(kwargs.pop("max_length", 30))
        self.checkpoint_dir = kwargs.pop("checkpoint_dir", None)
        self.checkpoint_every = kwargs.pop("checkpoint_every", None)
        resume_from = kwargs.pop("resume_from", None)
        distributed = kwargs.pop("distributed", None)
        if kwargs:
            raise ValueError(f"CaptioningSolver: unrecognized arguments {', '.join(sorted(kwargs))}")
        self._rule = None
        if callable(self.update_rule):
            self._rule = self.update_rule
            self.update_rule = getattr(self.update_rule, "__name__", type(self.update_rule).__name__)
        elif self.update_rule not in optim.RULES:
            raise ValueError(f"CaptioningSolver: update_rule must be one of {sorted(optim.RULES)} or a function "
                             f"rule(w, dw, config) -> (next_w, config), but got {self.update_rule!r}")
        elif self.update_rule not in ("adam", "sgd"):
            self._rule = optim.RULES[self.update_rule]
        if self.batch_size < 1 or self.num_epochs < 0:
            raise ValueError(f"CaptioningSolver: batch_size must be >= 1 and num_epochs >= 0, but got "
                             f"{self.batch_size} and {self.num_epochs}")
        for key in ("train_captions", "train_image_idxs", "train_features", "idx_to_word"):
            if key not in data:
                raise KeyError(f"CaptioningSolver: data has no {key!r}; keys: {sorted(data)}")
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        if distributed is None:
            distributed = initialised
        if distributed and not initialised:
            raise RuntimeError("CaptioningSolver: distributed=True needs an initialised torch.distributed process "
                               "group (run under torchrun and call torch.distributed.init_process_group)")
        self.distributed = bool(distributed)
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        if self.batch_size < self.world_size:
            raise ValueError(f"CaptioningSolver: batch_size ({self.batch_size}) must be >= the number of "
                             f"processes ({self.world_size})")
        self.is_main = self.rank == 0
        if self.progress is None:
            self.progress = self.verbose
        if not self.is_main:
            self.verbose = False
            self.progress = False
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # broadcasts rank 0's parameters, so every rank starts from the same model
            self._loss_module = DDP(_LossModule(model))
        else:
            self._loss_module = None

        lr = float(self.optim_config.get("learning_rate", 1e-3 if self.update_rule == "adam" else 1e-2))
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        if self._rule is not None:
            self.optimizer = RuleOptimizer(params, self._rule, self.optim_config)
        elif self.update_rule == "adam":
            self._adam_eps = float(self.optim_config.get("epsilon", 1e-8))
            self.optimizer = torch.optim.Adam(
                params, lr=lr, betas=(self.optim_config.get("beta1", 0.9), self.optim_config.get("beta2", 0.999)),
                eps=self.optim_config.get("epsilon", 1e-8),
                # the fused kernel: one pass over each parameter (5.8 -> 0.8 ms per step for
                # the benchmark's float32 model on 2 cores, measured), same update
                fused=all(p.device.type in ("cpu", "cuda") for p in params))
        else:
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=self.optim_config.get("momentum", 0.0))

        self._train_feats = torch.as_tensor(np.asarray(data["train_features"])).to(model.dtype)
        self._train_caps = torch.as_tensor(np.asarray(data["train_captions"]).astype(np.int64))
        self._train_idxs = torch.as_tensor(np.asarray(data["train_image_idxs"]).astype(np.int64))
        self.rng = np.random.RandomState(self.seed)
        self.t = 0
        self.epoch = 0
        self.loss_history: list[float] = []
        self.val_bleu_history: list[dict] = []
        self.train_seconds = 0.0
        if resume_from is not None:
            self.load(resume_from)

    # ------------------------------------------------------------------ schedule
    @property
    def iterations_per_epoch(self) -> int:
        return max(self._train_caps.shape[0] // self.batch_size, 1)

    @property
    def num_iterations(self) -> int:
        return self.num_epochs * self.iterations_per_epoch

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "version": _CKPT_VERSION,
            "model": self.model.state_dict(),
            "model_config": self.model.config(),
            "optimizer": self.optimizer.state_dict(),
            "solver": {"t": self.t, "epoch": self.epoch, "loss_history": list(self.loss_history),
                       "val_bleu_history": list(self.val_bleu_history), "update_rule": self.update_rule,
                       "batch_size": self.batch_size, "num_epochs": self.num_epochs,
                       "lr_decay": self.lr_decay, "seed": self.seed, "train_seconds": self.train_seconds,
                       "grad_clip": self.grad_clip},
            "np_rng": _np_state_to_dict(self.rng.get_state()),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, path=None) -> Path:
        """Write a checkpoint atomically (default ``checkpoint_dir/checkpoint.pt``)."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("CaptioningSolver.save: give a path or set checkpoint_dir")
            path = Path(self.checkpoint_dir) / "checkpoint.pt"
        return save_checkpoint_atomic(self.state_dict(), path)

    def load(self, path_or_ckpt) -> None:
        """Restore model, optimizer, RNG, data order and histories from a checkpoint."""
        ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
        s = ckpt["solver"]
        saved_clip = s.get("grad_clip")  # absent in checkpoints that predate the option: no clipping
        if s["update_rule"] != self.update_rule or s["batch_size"] != self.batch_size or saved_clip != self.grad_clip:
            raise ValueError(
                f"CaptioningSolver.load: checkpoint was made with update_rule={s['update_rule']!r}, "
                f"batch_size={s['batch_size']}, grad_clip={saved_clip}, but this solver has "
                f"{self.update_rule!r}, {self.batch_size}, {self.grad_clip} (resuming must not change them)")
        self._check_model_config(ckpt)
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:  # checkpoints without a model_config (older files)
            raise ValueError(f"CaptioningSolver.load: the checkpoint's model does not fit this solver's: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.t, self.epoch = int(s["t"]), int(s["epoch"])
        self.loss_history = [float(x) for x in s["loss_history"]]
        self.val_bleu_history = [dict(d) for d in s["val_bleu_history"]]
        self.train_seconds = float(s.get("train_seconds", 0.0))
        self.rng.set_state(_np_state_from_dict(ckpt["np_rng"]))
        torch.set_rng_state(ckpt["torch_rng"])

    def _check_model_config(self, ckpt: dict) -> None:
        """One line naming every model setting that differs from the checkpoint's."""
        saved = ckpt.get("model_config")
        if not isinstance(saved, dict):
            return
        mine = self.model.config()
        diffs = [f"{k}={saved[k]!r} (this model: {mine[k]!r})"
                 for k in ("cell_type", "input_dim", "wordvec_dim", "hidden_dim", "dtype")
                 if k in saved and saved[k] != mine[k]]
        if "word_to_idx" in saved and saved["word_to_idx"] != mine["word_to_idx"]:
            diffs.append(f"a vocabulary of {len(saved['word_to_idx'])} words (this model: "
                         f"{len(mine['word_to_idx'])}{', other words' if len(saved['word_to_idx']) == len(mine['word_to_idx']) else ''})")
        if diffs:
            raise ValueError(f"CaptioningSolver.load: the checkpoint's model was made with {'; '.join(diffs)}; "
                             f"resume with the same model settings (a3ext caption train: --cell, --wordvec-dim, "
                             f"--hidden-dim, --dtype and the same dataset)")

    # ------------------------------------------------------------------ training
    def _update(self) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self._rule is None and self.update_rule == "adam":
            # the assignment's Adam: x -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps), i.e.
            # torch's form with epsilon eps / sqrt(1-b2^t) at step t
            for group in self.optimizer.param_groups:
                t = 1 + max((int(self.optimizer.state[p]["step"]) for p in group["params"]
                             if "step" in self.optimizer.state[p]), default=0)
                group["eps"] = self._adam_eps / math.sqrt(1.0 - group["betas"][1] ** t)
        self.optimizer.step()

    def _step(self) -> float:
        n = self._train_caps.shape[0]
        mask = torch.from_numpy(self.rng.choice(n, self.batch_size))
        if not self.distributed:
            captions = self._train_caps[mask].to(self.device)
            features = self._train_feats[self._train_idxs[mask]].to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.model.loss(features, captions)
            loss.backward()
            self._update()
            return float(loss.detach())
        # every rank drew the same global batch; keep this rank's contiguous slice
        mask = torch.tensor_split(mask, self.world_size)[self.rank]
        captions = self._train_caps[mask].to(self.device)
        features = self._train_feats[self._train_idxs[mask]].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        local = self._loss_module(features, captions)  # sum over this shard / shard size
        share = mask.shape[0] / self.batch_size
        # DDP averages gradients over ranks: scale so the average is d(global loss)
        (local * (share * self.world_size)).backward()
        self._update()
        total = (local.detach() * share).reshape(1).clone()
        torch.distributed.all_reduce(total)
        return float(total[0])

    def check_bleu(self, split: str = "val", num_images: int | None = None, beam_size: int = 1) -> dict:
        """Corpus BLEU-1..4 of the model's captions for (up to ``num_images``, the first
        ones) images of ``split`` against all their reference captions."""
        caps = np.asarray(self.data[f"{split}_captions"])
        idxs = np.asarray(self.data[f"{split}_image_idxs"])
        return evaluate_bleu(self.model, caps, idxs, np.asarray(self.data[f"{split}_features"]),
                             self.data["idx_to_word"], num_images=num_images, beam_size=beam_size,
                             max_length=self.max_length)

    def train(self, max_iterations: int | None = None, max_seconds: float | None = None) -> "CaptioningSolver":
        """Run (or continue) the optimisation. ``max_iterations`` stops once ``t``
        reaches it, ``max_seconds`` once this call has trained that long (an
        interruption; a checkpoint is written when checkpointing is on)."""
        total = self.num_iterations
        stop = total if max_iterations is None else min(total, int(max_iterations))
        ipe = self.iterations_per_epoch
        bar = None
        if self.progress and stop > self.t:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.t, desc=f"caption {self.model.cell_type}", leave=False)
        start = time.perf_counter()
        deadline = None if max_seconds is None else start + float(max_seconds)
        try:
            while self.t < stop:
                if deadline is not None and self._should_stop(time.perf_counter() >= deadline):
                    break
                loss = self._step()
                self.loss_history.append(loss)
                self.t += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                if self.verbose and (self.t - 1) % self.print_every == 0:
                    msg = f"(Iteration {self.t} / {total}) loss: {loss:f}"
                    (bar.write if bar is not None else print)(msg)
                if self.t % ipe == 0:
                    self.epoch += 1
                    for g in self.optimizer.param_groups:
                        g["lr"] *= self.lr_decay
                    if self.is_main and self.eval_bleu and "val_captions" in self.data and len(self.data["val_captions"]):
                        scores = self.check_bleu("val", self.num_val_images)
                        scores["epoch"] = self.epoch
                        scores["iteration"] = self.t
                        self.val_bleu_history.append(scores)
                        if self.verbose:
                            msg = (f"(Epoch {self.epoch} / {self.num_epochs}) val BLEU-1 {scores['bleu1']:.3f} "
                                   f"BLEU-4 {scores['bleu4']:.3f}")
                            (bar.write if bar is not None else print)(msg)
                if self.checkpoint_dir is not None and self.checkpoint_every and self.t % int(self.checkpoint_every) == 0:
                    self.train_seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    if self.is_main:
                        self.save()
        finally:
            self.train_seconds += time.perf_counter() - start
            if bar is not None:
                bar.close()
        if self.checkpoint_dir is not None and self.is_main:
            self.save()
        if self.distributed:
            torch.distributed.barrier()  # the final checkpoint exists when train() returns on any rank
        return self

    def _should_stop(self, local: bool) -> bool:
        """Under DDP the ranks must agree (a rank that stops alone would hang the others)."""
        if not self.distributed:
            return local
        flag = torch.tensor([1 if local else 0], dtype=torch.int64)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag[0])


def evaluate_bleu(model: CaptioningRNN, captions, image_idxs, features, idx_to_word,
                  num_images: int | None = None, beam_size: int = 1, max_length: int = 30,
                  batch_size: int = 1000) -> dict:
    """Decode each image once (greedy, or beam search with ``beam_size`` > 1) and score
    corpus BLEU-1..4 against all reference captions of that image. Returns
    ``{'bleu1'..'bleu4', 'num_images'}``."""
    captions, image_idxs = np.asarray(captions), np.asarray(image_idxs)
    images = np.unique(image_idxs)
    if num_images is not None:
        images = images[: int(num_images)]
    refs_by_image: dict[int, list] = {int(i): [] for i in images}
    tokens = captions_to_tokens(captions, idx_to_word)
    for toks, i in zip(tokens, image_idxs):
        if int(i) in refs_by_image:
            refs_by_image[int(i)].append(toks)
    feats = torch.as_tensor(np.asarray(features)[images])
    try:
        feats = feats.to(next(model.parameters()).device)
    except StopIteration:
        pass
    hyps = []
    for k in range(0, len(images), batch_size):
        f = feats[k:k + batch_size]
        out = model.sample(f, max_length) if beam_size == 1 else model.beam_search(f, beam_size, max_length)
        hyps.extend(captions_to_tokens(out.cpu().numpy(), idx_to_word))
    refs = [refs_by_image[int(i)] for i in images]
    scores = {f"bleu{n}": corpus_bleu(refs, hyps, max_n=n) for n in range(1, 5)}
    scores["num_images"] = int(len(images))
    return scores
