"""Sampling NÜWA's target tokens (Sec. 3.3, Eq. 15; Sec. 4.2's "best of 60 by CLIP").

The decoder predicts a target grid (s, h, w) one slot at a time in raster order, time-major
(frame by frame, row by row), each token conditioned on the tokens before it and on the
encoded condition. :func:`sample` runs that loop:

* **KV cache** (``use_cache=True``, the default): :meth:`Nuwa.start` encodes the condition
  once, and each :meth:`Nuwa.step` adds one slot's keys/values to the cache and attends only
  to the cached keys in that slot's 3DNA window, so a token costs O(window), not
  O(sequence). ``use_cache=False`` is the baseline and the test oracle: the full
  teacher-forced forward (encoder included) for every slot, reading off that slot's logits.
* **temperature and top-k**: logits / temperature, restricted to the k most likely codes,
  drawn with the Gumbel-max trick (``argmax(logits / T + Gumbel noise)`` is a draw from
  ``softmax(logits / T)``). The noise comes from ``generator`` when given (on the
  generator's device, then moved), so a seed fixes the samples, on any device and with or
  without the cache. ``top_k=1`` is greedy decoding, and so is the limit ``temperature -> 0``.
* **priming with given tokens**: ``prime`` (B, s, h, w) holds tokens and ``prime_mask`` the
  positions that are given -- the top rows of an image (I2I completion), the rows above an
  edit (TI2I), the first frame(s) of a video (V2V, TV2V). Given positions are copied, never
  drawn, and still fed to the decoder, so every later slot conditions on them. A raster
  prefix is the natural case, but any mask works: a slot sees every given or drawn token
  before it in raster order (and, as in any autoregressive model, none after it).

:func:`best_of_n` draws n samples per condition in one batch (``Condition.repeat``) and keeps
the one a caller's ``score_fn`` scores best (Sec. 4.2: the best of 60 by CLIP). This module
knows nothing of pixels: ``score_fn`` decodes and scores them (:mod:`.generate` does).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from einops import rearrange

from ..model.config import Condition, Shape3, _check_condition, _check_grid, _describe, exists
from ..model.nuwa import Nuwa
from ..utils import progress as P
from ..utils.tensors import evaluating

LogitsHook = Callable[[int, torch.Tensor], None]
ScoreFn = Callable[[torch.Tensor, int], object]


# --------------------------------------------------------------------------- checks
def _is_int(v, lo: int = 1, hi: float = math.inf) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and lo <= v <= hi


def _check_model(model) -> Nuwa:
    if not isinstance(model, Nuwa):
        raise ValueError(f"model must be a nuwa_lib.model.nuwa.Nuwa, got {type(model).__name__}")
    return model


def _check_temperature(temperature) -> float:
    if (not isinstance(temperature, numbers.Real) or isinstance(temperature, bool)
            or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a positive finite number (small values approach "
                         f"greedy decoding; top_k=1 is greedy), got {temperature!r}")
    return float(temperature)


def _check_top_k(top_k, codebook_size: int) -> Optional[int]:
    if top_k is not None and not _is_int(top_k, 1, codebook_size):
        raise ValueError(f"top_k must be None (every code) or an integer in [1, "
                         f"{codebook_size}] (the codebook size), got {top_k!r}")
    return None if top_k is None else int(top_k)


def _check_prime(prime, prime_mask, batch: int, grid: Shape3, codebook_size: int,
                 device) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(given (B, N) bool, prime (B, N) int64) on ``device``, or (None, None)."""
    if prime is None and prime_mask is None:
        return None, None
    if prime is None or prime_mask is None:
        missing, present = ("prime", "prime_mask") if prime is None else ("prime_mask", "prime")
        raise ValueError(f"{present} needs {missing}: pass the tokens (prime, (B, s, h, w)) and "
                         f"the positions that are given (prime_mask, bool (s, h, w) or "
                         f"(B, s, h, w)) together")
    want = (batch, *grid)
    if not isinstance(prime, torch.Tensor) or tuple(prime.shape) != want \
            or prime.is_floating_point() or prime.dtype == torch.bool:
        raise ValueError(f"prime must be an integer token tensor of shape (B, s, h, w) = {want} "
                         f"(the condition's batch and target_grid), got {_describe(prime)}")
    if not isinstance(prime_mask, torch.Tensor) or prime_mask.dtype != torch.bool \
            or tuple(prime_mask.shape) not in (want, want[1:]):
        raise ValueError(f"prime_mask must be a bool tensor of shape (s, h, w) = {want[1:]} or "
                         f"(B, s, h, w) = {want}, got {_describe(prime_mask)}")
    given = rearrange(prime_mask.to(device).expand(want), "b s h w -> b (s h w)")
    prime = rearrange(prime.to(device).long(), "b s h w -> b (s h w)")
    if bool(given.any()):
        values = prime[given]
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= codebook_size:
            raise ValueError(f"prime tokens at the given positions must lie in [0, "
                             f"{codebook_size}) (the codebook), got values in [{lo}, {hi}]")
    return given, prime


# ------------------------------------------------------------------------- choosing
def draw(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One code per row of ``logits`` (B, K) from softmax(logits / temperature) restricted to
    the ``top_k`` largest logits: Gumbel-max, argmax(logits / T + G) with G ~ Gumbel(0, 1)."""
    # noise and scores in float32 at least: half-precision noise would skew the draws
    logits = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype,
                   device=generator.device if exists(generator) else logits.device)
    gumbel = -torch.log(-torch.log(u.to(logits.device).clamp_min(torch.finfo(u.dtype).tiny)))
    scores = logits / temperature + gumbel
    if exists(top_k) and top_k < logits.shape[-1]:
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep.scatter_(-1, logits.topk(top_k, dim=-1).indices, True)
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores.argmax(-1)


class _Chooser:
    """Picks slot t's tokens: copies given ones, draws the rest. A slot given in every row
    draws nothing (and needs no logits), so both decoding paths use the generator alike."""

    def __init__(self, temperature, top_k, generator, given, prime, on_logits):
        self.temperature, self.top_k, self.generator = temperature, top_k, generator
        self.given, self.prime, self.on_logits = given, prime, on_logits
        # per-slot flags as Python bools: no device sync inside the loop
        self.all_given = given.all(0).tolist() if exists(given) else None
        self.any_given = given.any(0).tolist() if exists(given) else None

    def fully_given(self, t: int) -> bool:
        return exists(self.all_given) and self.all_given[t]

    def __call__(self, t: int, logits: Optional[torch.Tensor]) -> torch.Tensor:
        if self.fully_given(t):
            return self.prime[:, t]
        if exists(self.on_logits):
            self.on_logits(t, logits)
        tokens = draw(logits, self.temperature, self.top_k, self.generator)
        if exists(self.any_given) and self.any_given[t]:
            tokens = torch.where(self.given[:, t], self.prime[:, t], tokens)
        return tokens


# ------------------------------------------------------------------------- decoding
def _guided(cond_logits, uncond_logits, scale):
    """Classifier-free guidance: u + scale (c - u); scale 1 is the conditional model."""
    return uncond_logits + scale * (cond_logits - uncond_logits)


def _decode_cached(model: Nuwa, cond: Condition, grid: Shape3, choose: _Chooser, bar,
                   guide=None) -> torch.Tensor:
    cache = model.start(cond, grid)
    plain = model.start(guide[0], grid) if exists(guide) else None
    tokens = cache.positions.new_zeros(cache.batch_size, cache.length, dtype=torch.long)
    prev = None
    for t in range(cache.length):
        logits = model.step(cache, prev)   # slot t's keys join the cache: given slots too
        if exists(plain):
            logits = _guided(logits, model.step(plain, prev), guide[1])
        tokens[:, t] = prev = choose(t, logits)
        bar.update()
    return tokens


def _decode_uncached(model: Nuwa, cond: Condition, grid: Shape3, choose: _Chooser, bar,
                     guide=None) -> torch.Tensor:
    """The whole teacher-forced forward per slot; future slots hold placeholder zeros, which
    the causal decoder cannot see (``tests/test_model.py`` checks that)."""
    n = math.prod(grid)
    tokens = torch.zeros(cond.batch_size, n, dtype=torch.long, device=model.bos.device)
    for t in range(n):
        logits = None
        if not choose.fully_given(t):
            logits = model(cond, tokens.view(-1, *grid))[:, t]
            if exists(guide):
                logits = _guided(logits, model(guide[0], tokens.view(-1, *grid))[:, t], guide[1])
        tokens[:, t] = choose(t, logits)
        bar.update()
    return tokens


def _check_guide(guidance, uncond, batch: int, device):
    """(uncond on ``device``, scale) or None; both or neither."""
    if guidance is None and uncond is None:
        return None
    if guidance is None or uncond is None:
        raise ValueError("classifier-free guidance needs both guidance (a scale) and uncond "
                         "(the unconditional condition, e.g. the word 'None')")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
            or not math.isfinite(guidance) or guidance <= 0:
        raise ValueError(f"guidance must be a positive number (1: no guidance), got {guidance!r}")
    uncond = _check_condition(uncond)
    if uncond.batch_size != batch:
        raise ValueError(f"uncond must have the condition's batch size {batch}, got "
                         f"{uncond.batch_size}")
    return uncond.to(device), float(guidance)


def sample(model: Nuwa, cond: Condition, target_grid, *, temperature: float = 1.0,
           top_k: Optional[int] = None, prime: Optional[torch.Tensor] = None,
           prime_mask: Optional[torch.Tensor] = None,
           generator: Optional[torch.Generator] = None, use_cache: bool = True,
           progress: bool = False, on_logits: Optional[LogitsHook] = None,
           guidance: Optional[float] = None, uncond: Optional[Condition] = None) -> torch.Tensor:
    """Target tokens (B, s, h, w) for ``cond`` (B conditions), drawn slot by slot.

    target_grid: (s, h, w), s = 1 for an image; within the model's ``target_tokens``.
    temperature: > 0, divides the logits; top_k: None or 1..codebook_size (1 = greedy).
    prime, prime_mask: given tokens (B, s, h, w) and where they are given, bool (s, h, w)
        or (B, s, h, w); given positions are copied and fed, never drawn. Values at other
        positions are ignored. Both or neither.
    generator: a torch.Generator for reproducible draws (default: torch's global RNG).
    use_cache: False runs the full teacher-forced forward for every slot (the slow
        baseline and test oracle; each token then costs a whole forward, not a window).
    on_logits: called as on_logits(t, logits (B, codebook_size)) before slot t is drawn
        (not for slots given in every row), e.g. to inspect or record the distribution.
    guidance, uncond: classifier-free guidance (beyond the paper): the logits are
        u + guidance (c - u), u from the same model on ``uncond`` (B conditions, e.g. the
        word "None" of Eq. 16, which condition dropout trains); both or neither.
    """
    model = _check_model(model)
    cond = _check_condition(cond)
    grid = _check_grid("target_grid", target_grid, model.config.target_tokens)
    codes = model.config.codebook_size
    if exists(generator) and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__}")
    if exists(on_logits) and not callable(on_logits):
        raise ValueError(f"on_logits must be callable as on_logits(t, logits) or None, got "
                         f"{type(on_logits).__name__}")
    choose = _Chooser(_check_temperature(temperature), _check_top_k(top_k, codes), generator,
                      *_check_prime(prime, prime_mask, cond.batch_size, grid, codes,
                                    model.bos.device), on_logits)
    guide = _check_guide(guidance, uncond, cond.batch_size, model.bos.device)
    cond = cond.to(model.bos.device)
    decode = _decode_cached if use_cache else _decode_uncached
    with evaluating(model), torch.no_grad(), \
            P.bar(total=math.prod(grid), desc="sampling" if use_cache else "sampling (no cache)",
                  unit="tok", progress=progress, leave=False) as bar:
        tokens = decode(model, cond, grid, choose, bar, guide)
    return tokens.view(cond.batch_size, *grid)


# ------------------------------------------------------------------------ best of n
@dataclass(frozen=True)
class BestOfN:
    """The outcome of :func:`best_of_n` for B conditions and n samples each."""
    tokens: torch.Tensor    # (B, s, h, w): the best-scoring sample of each condition
    best: torch.Tensor      # (B,) int64: its index among the n (the first, on ties)
    scores: torch.Tensor    # (B, n) float64: every sample's score
    samples: torch.Tensor   # (B, n, s, h, w): every sample, in drawing order


def _slice(cond: Condition, start: int, stop: int) -> Condition:
    keep = cond.keep[start:stop] if exists(cond.keep) else None
    return replace(cond, tokens=cond.tokens[start:stop], keep=keep)


def _scores(score_fn: ScoreFn, tokens: torch.Tensor, index: int) -> torch.Tensor:
    n = tokens.shape[0]
    out = score_fn(tokens, index)
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    try:
        scores = torch.as_tensor(np.asarray(out, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"score_fn must return {n} numbers (one per sample), got "
                         f"{type(out).__name__}") from None
    if tuple(scores.shape) != (n,):
        raise ValueError(f"score_fn must return scores of shape ({n},) for tokens of shape "
                         f"{tuple(tokens.shape)}, got shape {tuple(scores.shape)} for "
                         f"condition {index}")
    if bool(scores.isnan().any()):
        raise ValueError(f"score_fn returned NaN scores for condition {index}")
    return scores


def best_of_n(model: Nuwa, cond: Condition, target_grid, n: int, score_fn: ScoreFn, *,
              batch_size: Optional[int] = None, prime: Optional[torch.Tensor] = None,
              prime_mask: Optional[torch.Tensor] = None, progress: bool = False,
              **kw) -> BestOfN:
    """Draw n samples per condition and keep the highest-scoring one (Sec. 4.2: 60 per
    text, best by CLIP).

    score_fn(tokens (n, s, h, w), i) -> n scores (tensor, array or list; higher is better)
        for the samples of condition i (0 <= i < B); it decodes and scores them, e.g. with
        the VQ-GAN and ``metrics.clip_similarity``.
    batch_size: at most this many sequences decoded at once (rounded down to whole
        conditions, at least one); None decodes all B * n together.
    prime, prime_mask: as in :func:`sample`, per condition (B, ...); repeated n times.
    kw: temperature, top_k, generator, use_cache, on_logits, guidance, passed to
        :func:`sample`; ``uncond`` (B conditions) is sliced and repeated as ``cond`` is.
    """
    _check_model(model)
    cond = _check_condition(cond)
    if not _is_int(n):
        raise ValueError(f"n must be a positive integer (samples per condition; the paper "
                         f"used 60), got {n!r}")
    n = int(n)
    if not callable(score_fn):
        raise ValueError(f"score_fn must be callable as score_fn(tokens, index) -> scores, "
                         f"got {type(score_fn).__name__}")
    if exists(batch_size) and not _is_int(batch_size):
        raise ValueError(f"batch_size must be None or a positive integer, got {batch_size!r}")
    grid = _check_grid("target_grid", target_grid, model.config.target_tokens)
    B = cond.batch_size
    # validate the primes once, at the condition's batch, before anything is drawn
    _check_prime(prime, prime_mask, B, grid, model.config.codebook_size, "cpu")
    per_batch = B if batch_size is None else max(1, batch_size // n)
    samples, scores = [], []
    conditions = P.bar(range(0, B, per_batch), desc=f"best of {n}", unit="batch",
                       progress=progress and B > per_batch, leave=False)
    for start in conditions:
        stop = min(B, start + per_batch)
        primes = {}
        if exists(prime):
            mask = prime_mask[start:stop] if prime_mask.dim() == 4 else prime_mask
            primes = {"prime": prime[start:stop].repeat_interleave(n, 0),
                      "prime_mask": mask.repeat_interleave(n, 0) if mask.dim() == 4 else mask}
        if exists(kw.get("uncond")):
            primes["uncond"] = _slice(_check_condition(kw["uncond"]), start, stop).repeat(n)
        tokens = sample(model, _slice(cond, start, stop).repeat(n), grid, progress=progress,
                        **primes, **{k: v for k, v in kw.items() if k != "uncond"})
        tokens = tokens.view(stop - start, n, *grid)
        samples.append(tokens)
        scores.extend(_scores(score_fn, tokens[i], start + i) for i in range(stop - start))
    samples, scores = torch.cat(samples), torch.stack(scores)
    best = scores.argmax(1)   # the first maximum on ties
    return BestOfN(tokens=samples[torch.arange(B), best.to(samples.device)], best=best,
                   scores=scores, samples=samples)


__all__ = ["sample", "best_of_n", "BestOfN", "draw"]
