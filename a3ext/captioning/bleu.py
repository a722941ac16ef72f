"""BLEU (Papineni et al., 2002): modified n-gram precision with clipping against
several references, geometric mean over n = 1..max_n, brevity penalty.

Conventions follow nltk's ``corpus_bleu`` (without smoothing): corpus BLEU sums the
clipped n-gram matches and the candidate n-gram counts over the whole corpus before
dividing; the reference length of each hypothesis is the reference length closest to
the hypothesis length (the shorter one on a tie); a hypothesis shorter than n
counts as one (unmatched) n-gram in the denominator of order n; a zero precision at any order gives
BLEU 0 unless ``smoothing`` adds an epsilon to zero numerators (nltk's method1).
BLEU-n means uniform weights 1/n over orders 1..n.

May import: no other a3ext module.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Iterable, Mapping, Sequence

__all__ = ["corpus_bleu", "sentence_bleu", "bleu_scores", "captions_to_tokens", "ngram_stats"]

Tokens = Sequence[Hashable]


def _ngrams(tokens: Tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _closest_ref_length(refs: Sequence[Tokens], hyp_len: int) -> int:
    return min((len(r) for r in refs), key=lambda r: (abs(r - hyp_len), r))


def ngram_stats(references: Sequence[Tokens], hypothesis: Tokens, max_n: int = 4):
    """Clipped matches and totals per order for one hypothesis, plus its length and
    its closest reference length: ``(matches[max_n], totals[max_n], hyp_len, ref_len)``."""
    if len(references) == 0:
        raise ValueError("bleu: every hypothesis needs at least one reference, but got an empty list")
    matches, totals = [0] * max_n, [0] * max_n
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        max_ref: Counter = Counter()
        for ref in references:
            for g, c in _ngrams(ref, n).items():
                if c > max_ref[g]:
                    max_ref[g] = c
        matches[n - 1] = sum(min(c, max_ref[g]) for g, c in hyp.items())
        # as nltk: a hypothesis shorter than n still counts one n-gram slot
        totals[n - 1] = max(len(hypothesis) - n + 1, 1)
    return matches, totals, len(hypothesis), _closest_ref_length(references, len(hypothesis))


def _weights(max_n: int, weights) -> list[float]:
    if weights is None:
        return [1.0 / max_n] * max_n
    weights = [float(w) for w in weights]
    if len(weights) != max_n:
        raise ValueError(f"bleu: expected {max_n} weights (one per n-gram order), but got {len(weights)}")
    return weights


def corpus_bleu(
    list_of_references: Sequence[Sequence[Tokens]],
    hypotheses: Sequence[Tokens],
    max_n: int = 4,
    weights: Sequence[float] | None = None,
    smoothing: float = 0.0,
) -> float:
    """Corpus BLEU in [0, 1].

    ``list_of_references[i]`` is the list of reference token sequences of
    ``hypotheses[i]``. ``max_n``: highest n-gram order (BLEU-max_n, uniform weights
    unless ``weights`` is given). ``smoothing`` > 0 replaces zero match counts by that
    epsilon (nltk SmoothingFunction().method1); 0 means none.
    """
    if len(list_of_references) != len(hypotheses):
        raise ValueError(
            f"corpus_bleu: expected one list of references per hypothesis, but got "
            f"{len(list_of_references)} reference lists for {len(hypotheses)} hypotheses"
        )
    if not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"corpus_bleu: max_n must be a positive int, but got {max_n!r}")
    w = _weights(max_n, weights)
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for refs, hyp in zip(list_of_references, hypotheses):
        m, t, h, r = ngram_stats(refs, hyp, max_n)
        for k in range(max_n):
            matches[k] += m[k]
            totals[k] += t[k]
        hyp_len += h
        ref_len += r
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    log_p = 0.0
    for k in range(max_n):
        if w[k] == 0:
            continue
        num = matches[k]
        if num == 0:
            if smoothing <= 0 or totals[k] == 0:
                return 0.0
            num = smoothing
        log_p += w[k] * math.log(num / totals[k])
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return bp * math.exp(log_p)


def sentence_bleu(references: Sequence[Tokens], hypothesis: Tokens, max_n: int = 4,
                  weights: Sequence[float] | None = None, smoothing: float = 0.0) -> float:
    """BLEU of one hypothesis against its references (corpus BLEU of a one-item corpus)."""
    return corpus_bleu([references], [hypothesis], max_n=max_n, weights=weights, smoothing=smoothing)


def bleu_scores(list_of_references, hypotheses, smoothing: float = 0.0) -> dict[str, float]:
    """Corpus BLEU-1..4 and the mean sentence BLEU-1..4, as a dict
    ``{'bleu1': .., 'bleu4': .., 'sentence_bleu1': ..}``."""
    out = {}
    for n in range(1, 5):
        out[f"bleu{n}"] = corpus_bleu(list_of_references, hypotheses, max_n=n, smoothing=smoothing)
    for n in range(1, 5):
        s = [sentence_bleu(r, h, max_n=n, smoothing=smoothing) for r, h in zip(list_of_references, hypotheses)]
        out[f"sentence_bleu{n}"] = sum(s) / len(s) if s else 0.0
    return out


_SPECIAL = ("<NULL>", "<START>", "<END>")


def captions_to_tokens(captions: Iterable[Iterable[int]], idx_to_word: Mapping[int, str] | Sequence[str]) -> list[list[str]]:
    """Integer captions (rows) to word lists, dropping ``<START>`` and ``<NULL>`` and
    stopping at ``<END>`` (the tokens BLEU is computed on)."""
    out = []
    for row in captions:
        words = []
        for i in row:
            w = idx_to_word[int(i)]
            if w == "<END>":
                break
            if w not in _SPECIAL:
                words.append(w)
        out.append(words)
    return out
