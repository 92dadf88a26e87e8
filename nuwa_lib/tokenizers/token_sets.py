"""Tokenized datasets: every task's inputs and targets as token grids (Sec. 3.1).

:func:`world_tokens` renders ``n`` samples of a Shapes World role's split and turns them into
tokens once:

* captions -> BPE ids (N, L) and a keep mask (:mod:`nuwa_lib.data.text`), for captioned roles;
* images / videos -> visual VQ-GAN tokens (N, s, h, w), s = 1 for images (:func:`vqgan.encode`);
* segmentation maps -> VQ-GAN-Seg tokens (N, s, h, w), for roles with sketches;
* for the zero-shot manipulation tasks (``variant="TI2I"`` / ``"TV2V"``) the counterfactual
  ground truth of :func:`nuwa_lib.data.tasks.counterfactual`: the edited picture's tokens become
  the target, the edited caption the text, the original's tokens are kept as ``given`` (what
  primes the decoder) with the token rows above the edit (TI2I).

With a profile the result is cached as ``artifacts/<profile>/tokens/<role>-<split>-<hash>.pt``
(written atomically), the hash covering (role, split, n, world seed / canvas / frames, the
variant, and content hashes of the tokenizers' weights or BPE), so notebooks never encode
twice and a retrained tokenizer never reads stale tokens. The tokenizers are arguments
(:class:`Tokenizers`), so tests can pass untrained ones; :func:`profile_tokenizers` fetches
the profile's.

One task's view of such tokens is :class:`~nuwa_lib.training.task_data.TaskData`. The paper's
datasets are tokenized by :mod:`nuwa_lib.tokenizers.real_tokens`, which builds on this module
(never the other way round).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..data import splits, tasks as T, world
from ..utils import checkpoint, progress as P
from ..utils.cache import artifact_path, fetch, key_hash
from . import vq_train, vqgan

TOKENS_FORMAT = "nuwa-world-tokens"
TOKENS_VERSION = 1
VARIANTS = (None, "TI2I", "TV2V")
TENSORS = ("visual", "text_ids", "text_keep", "sketch", "given", "edit_rows")   # of WorldTokens


class TokenCacheError(checkpoint.CheckpointError):
    """A token cache file that cannot be used: corrupt, or made for other data/tokenizers."""


# --------------------------------------------------------------------------- tokenizers
def text_hash(tok) -> str:
    """12 hex digits over a text tokenizer's BPE and its padded length."""
    return key_hash({"bpe": tok.bpe.to_str(), "length": tok.length})


def vq_hash(vq) -> str:
    """12 hex digits over a VQ model's config and weights (its codebook included)."""
    h = hashlib.sha256(json.dumps(vq.config.key(), sort_keys=True).encode())
    for name, t in sorted(vq.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


@dataclass
class Tokenizers:
    """The three tokenizers of Sec. 3.1; any may be None when no task needs it."""
    text: Any = None          # nuwa_lib.data.text.TextTokenizer
    visual: Any = None        # nuwa_lib.tokenizers.vqgan.VQModel (images and video frames)
    sketch: Any = None        # nuwa_lib.tokenizers.vqgan.VQModel of kind "seg"

    def __post_init__(self):
        if self.sketch is not None and self.sketch.config.kind != "seg":
            raise ValueError(f"the sketch tokenizer must be a VQ-GAN-Seg (kind 'seg'), got kind "
                             f"{self.sketch.config.kind!r}")
        if self.visual is not None and self.visual.config.kind == "seg":
            raise ValueError("the visual tokenizer must encode RGB pictures, got a VQ-GAN-Seg")

    def hashes(self) -> dict:
        return {"text": None if self.text is None else text_hash(self.text),
                "visual": None if self.visual is None else vq_hash(self.visual),
                "sketch": None if self.sketch is None else vq_hash(self.sketch)}

    def none_condition(self) -> tuple:
        """(ids (1, n), keep None): the word "None" (Eq. 16's constant c), cut to its tokens."""
        from ..data.text import NONE_CAPTION

        if self.text is None:
            raise ValueError('the word "None" needs the text tokenizer (Tokenizers(text=...))')
        ids, keep = self.text.encode(NONE_CAPTION)
        return ids[:, : int(keep.sum())], None


def profile_tokenizers(cfg: Mapping[str, Any], *, profile: str | None = None, sketch: bool = True,
                       untrained: bool = False, progress: bool = True,
                       text_tokenizer=None) -> Tokenizers:
    """The profile's tokenizers: its BPE (:func:`text.get_tokenizer`), its visual VQ-GAN
    (``vqgan.tokenizer``) and, with ``sketch``, its VQ-GAN-Seg (``vqgan.sketch_tokenizer``),
    each loaded from the cache or trained. ``untrained=True`` gives freshly initialised VQ
    models of the same configs instead (seeded; for timing runs and tests) -- their tokens
    are meaningless. ``text_tokenizer`` replaces the world's BPE (real data brings its own,
    :func:`nuwa_lib.tokenizers.real_tokens.real_text_tokenizer`)."""
    from ..data import text

    profile = profile or cfg.get("name")
    section = cfg.get("vqgan") or {}
    keys = {"visual": "tokenizer", **({"sketch": "sketch_tokenizer"} if sketch else {})}
    for part, key in keys.items():
        if not section.get(key):
            raise ValueError(f"the profile has no vqgan.{key}: name the {part} tokenizer there")
    out = {"text": text.get_tokenizer(cfg, profile) if text_tokenizer is None else text_tokenizer,
           "sketch": None}
    configs = vqgan.configs_from_profile(cfg) if untrained else None
    for part, key in keys.items():
        name = section[key]
        if untrained:
            world._check(f"vqgan.{key}", name, tuple(configs))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(cfg.get("seed", 0)))
                out[part] = vqgan.VQModel(configs[name]).eval().requires_grad_(False)
        else:
            out[part] = vq_train.get_tokenizer(cfg, name, profile=profile, progress=progress)[0]
    return Tokenizers(**out)


# --------------------------------------------------------------------------- world tokens
@dataclass
class WorldTokens:
    """``n`` samples of a role's split as tokens (see the module docstring). Visual and
    sketch grids are int16 (int32 for codebooks over 32,767 codes), text ids int32;
    :class:`~nuwa_lib.training.task_data.TaskData` hands them to the model as int64."""
    role: str
    split: str
    n: int
    key: dict
    visual: torch.Tensor                       # (n, s, h, w): the target pictures
    captions: Optional[list] = None            # the captions the text ids encode
    text_ids: Optional[torch.Tensor] = None    # (n, L)
    text_keep: Optional[torch.Tensor] = None   # (n, L) bool
    sketch: Optional[torch.Tensor] = None      # (n, s, h, w)
    variant: Optional[str] = None              # None, "TI2I" or "TV2V"
    given: Optional[torch.Tensor] = None       # counterfactuals: the original's tokens
    edit_rows: Optional[torch.Tensor] = None   # TI2I: token rows above the edit (n,)
    path: Optional[Path] = None
    source: str = "built"                      # "built" or "loaded"

    def __len__(self) -> int:
        return self.n

    @property
    def grid(self) -> tuple:
        return tuple(self.visual.shape[1:])

    def tensors(self) -> dict:
        return {k: getattr(self, k) for k in TENSORS}


def _small_int(t: torch.Tensor, bound: int) -> torch.Tensor:
    return t.to(torch.int16 if bound <= 32767 else torch.int32)


def tokens_key(role, split, n, tokenizers: Tokenizers, *, seed=0, canvas=32, frames=8,
               variant=None) -> dict:
    """What a token cache depends on; the tokenizers that the role does not use are None."""
    spec = splits.ROLES[role]
    h = tokenizers.hashes()
    return {"version": TOKENS_VERSION, "role": role, "split": split, "n": int(n), "seed": int(seed),
            "canvas": int(canvas), "frames": int(frames) if spec.kind == "video" else None,
            "variant": variant,
            "tokenizers": {"text": h["text"] if spec.captioned else None, "visual": h["visual"],
                           "sketch": h["sketch"] if spec.seg else None}}


def tokens_path(profile: str, key: Mapping) -> Path:
    return artifact_path(profile, "tokens", f"{key['role']}-{key['split']}", key_hash(key))


def _encode_chunks(vq, pictures: np.ndarray, desc: str, progress: bool, chunk: int = 256):
    out = []
    bar = P.bar(total=len(pictures), desc=desc, progress=progress, leave=False)
    for i in range(0, len(pictures), chunk):
        out.append(_small_int(vqgan.encode(vq, pictures[i:i + chunk]), vq.config.codebook))
        bar.update(len(out[-1]))
    bar.close()
    return torch.cat(out) if out else None


def _check_args(role, split, n, tokenizers, variant):
    world._check("role", role, tuple(splits.ROLES))
    world._check("split", split, world.SPLITS)
    world._check_min("n", n, 1)
    world._check("variant", variant, VARIANTS)
    if not isinstance(tokenizers, Tokenizers):
        raise ValueError(f"tokenizers must be a Tokenizers(text=, visual=, sketch=), got "
                         f"{type(tokenizers).__name__}")
    spec = splits.ROLES[role]
    if tokenizers.visual is None:
        raise ValueError("world_tokens needs the visual tokenizer (Tokenizers(visual=...))")
    if spec.captioned and tokenizers.text is None:
        raise ValueError(f"role {role!r} is captioned: pass the text tokenizer (Tokenizers(text=...))")
    if variant is not None:
        task = T.get_task(variant)
        if (spec.kind == "video") != task.video:
            raise ValueError(f"variant {variant} edits {task.target}s; role {role!r} holds "
                             f"{spec.kind}s")
        if not spec.captioned:
            raise ValueError(f"variant {variant} needs a captioned role (the edit's caption); "
                             f"{role!r} has no captions")


def build_world_tokens(role, split, n, tokenizers: Tokenizers, *, seed=0, canvas=32, frames=8,
                       variant=None, progress=True) -> WorldTokens:
    """Render and encode (no cache): see :func:`world_tokens`."""
    _check_args(role, split, n, tokenizers, variant)
    spec = splits.ROLES[role]
    key = tokens_key(role, split, n, tokenizers, seed=seed, canvas=canvas, frames=frames,
                     variant=variant)
    samples = [splits.sample(role, split, i, seed=seed, canvas=canvas, frames=frames)
               for i in range(n)]
    originals = np.stack([s.video if spec.kind == "video" else s.image for s in samples])
    out = dict(role=role, split=split, n=n, key=key, variant=variant)
    what = f"{role}/{split}"
    if variant is None:
        pictures = originals
        captions = [s.caption for s in samples] if spec.captioned else None
    else:
        edits = [T.counterfactual(variant, s, frames) for s in samples]
        pictures = np.stack([e["picture"] for e in edits])
        captions = [e["caption"] for e in edits]
        out["given"] = _encode_chunks(tokenizers.visual, originals, f"tokens {what} (original)",
                                      progress)
        if variant == "TI2I":
            factor = canvas // tokenizers.visual.config.grid
            out["edit_rows"] = torch.tensor([e["edit_row"] // factor for e in edits],
                                            dtype=torch.int16)
    out["visual"] = _encode_chunks(tokenizers.visual, pictures, f"tokens {what}", progress)
    if captions is not None:
        ids, keep = tokenizers.text.encode(captions)
        out.update(captions=captions, text_ids=ids.to(torch.int32), text_keep=keep)
    if spec.seg and tokenizers.sketch is not None:
        seg = np.stack([s.seg for s in samples])
        out["sketch"] = _encode_chunks(tokenizers.sketch, seg, f"sketch tokens {what}", progress)
    return WorldTokens(**out)


def save_world_tokens(path, wt: WorldTokens) -> Path:
    payload = {"format": TOKENS_FORMAT, "version": TOKENS_VERSION, "key": wt.key,
               "captions": wt.captions, **wt.tensors()}
    return checkpoint.save(path, payload)


def load_world_tokens(path, key: Mapping | None = None) -> WorldTokens:
    """A cached :class:`WorldTokens`; with ``key``, a file made for other data or other
    tokenizers raises :class:`TokenCacheError` naming the file and the mismatch."""
    expect = None if key is None else {"key": key}
    p = checkpoint.load(path, TOKENS_FORMAT, expect, what="token cache",
                        hint="delete it to re-encode", error=TokenCacheError)
    k = p["key"]
    try:
        return WorldTokens(role=k["role"], split=k["split"], n=k["n"], key=k, variant=k["variant"],
                           captions=p.get("captions"), path=Path(path), source="loaded",
                           **{name: p.get(name) for name in TENSORS})
    except (KeyError, TypeError) as err:
        raise TokenCacheError(f"{path}: token cache lacks {err}; delete it to re-encode") from None


def world_tokens(role, split, n, tokenizers: Tokenizers, *, seed=0, canvas=32, frames=8,
                 variant=None, profile: str | None = None, progress=True) -> WorldTokens:
    """The first ``n`` samples of ``role``'s ``split`` as tokens (see the module docstring):
    loaded from ``artifacts/<profile>/tokens/`` when cached, otherwise rendered, encoded and
    (with a profile) cached atomically. ``variant`` ("TI2I" / "TV2V") gives the zero-shot
    manipulation ground truth instead of the plain samples."""
    _check_args(role, split, n, tokenizers, variant)
    data = dict(seed=seed, canvas=canvas, frames=frames, variant=variant)
    if profile is None:
        return build_world_tokens(role, split, n, tokenizers, progress=progress, **data)
    key = tokens_key(role, split, n, tokenizers, **data)
    path = tokens_path(profile, key)

    def build():
        wt = build_world_tokens(role, split, n, tokenizers, progress=progress, **data)
        save_world_tokens(path, wt)
        wt.path = path
        return wt

    return fetch(path, lambda p: load_world_tokens(p, key), build)[0]
