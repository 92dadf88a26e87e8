"""Real datasets as tokens: a reader encoded through the tokenizers (:class:`RealTokens`), cached
as ``artifacts/<profile>/tokens/real-<name>-<split>-<hash>.pt``; under ``torchrun`` each process
encodes its share and rank 0 merges them. Also the tokenizers a real-data run uses (a BPE trained
on the datasets' own captions).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..data import world
from ..data.catalog import data_config
from ..data.media import DataError, _file
from ..data.readers import Reader
from ..utils import checkpoint, progress as P
from ..utils.cache import artifact_path, fetch, key_hash
from .token_sets import (
    TokenCacheError,
    Tokenizers,
    WorldTokens,
    _small_int,
    profile_tokenizers,
)

REAL_TOKENS_FORMAT = "nuwa-real-tokens"
REAL_TOKENS_VERSION = 1


@dataclass
class RealTokens(WorldTokens):
    """A real dataset's samples as tokens: :class:`~nuwa_lib.tokenizers.token_sets.WorldTokens`
    with the dataset's name as ``role``, its ``kind`` ("image" / "video") and the reader
    index of each sample (skipped ones are absent)."""
    kind: str = "image"
    indices: Optional[torch.Tensor] = None


def real_tokens_key(reader: Reader, n: int, tokenizers: Tokenizers) -> dict:
    h = tokenizers.hashes()
    return {"version": REAL_TOKENS_VERSION, "dataset": reader.key(), "n": int(n),
            "tokenizers": {"text": h["text"] if reader.captioned else None,
                           "visual": h["visual"],
                           "sketch": h["sketch"] if reader.has_seg else None}}


def real_tokens_path(profile: str, key: Mapping) -> Path:
    d = key["dataset"]
    return artifact_path(profile, "tokens", f"real-{d['name']}-{d['split']}", key_hash(key))


def _encode(reader: Reader, indices, tokenizers: Tokenizers, progress: bool, chunk: int = 32):
    """Read and encode the samples at ``indices`` (skipping unreadable ones with
    ``skip_bad``): the ``visual`` and ``sketch`` tokens (None when there are none) and
    the lists ``captions`` and ``indices``."""
    from . import vqgan

    sketch = tokenizers.sketch if reader.has_seg else None
    out = {"visual": [], "sketch": [], "captions": [], "indices": []}
    pics, segs = [], []

    def flush():
        for part, vq, batch in (("visual", tokenizers.visual, pics), ("sketch", sketch, segs)):
            if vq is not None and batch:
                # frames at once: keep the (frames x h x w, codes) distance matrix near 512 MB
                at_once = max(1, 2 ** 27 // (vq.config.grid ** 2 * vq.config.codebook))
                out[part].append(_small_int(vqgan.encode(vq, np.stack(batch), batch_size=at_once),
                                            vq.config.codebook))
            batch.clear()

    bar = P.bar(total=len(indices), desc=f"tokens {reader.name}", progress=progress,
                leave=False)
    for s in reader.samples(indices):
        pics.append(s.video if s.video is not None else s.image)
        segs.append(s.seg)
        out["captions"].append(s.caption)
        out["indices"].append(s.index)
        if len(pics) == chunk:
            flush()
        bar.update(1)
    flush()
    bar.close()
    return {**out, "visual": _cat(out["visual"]), "sketch": _cat(out["sketch"])}


def _cat(parts):
    return torch.cat(parts) if parts else None


def sync(error: BaseException | None, world_size: int = 1) -> None:
    """A barrier that also tells every process whether one failed: the failed process
    re-raises its error, the others raise :class:`DataError` naming it (so no process
    waits forever for one that stopped)."""
    msgs: list = [None] * world_size
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_gather_object(
            msgs, None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    for rank, msg in enumerate(msgs):
        if msg:
            raise DataError(f"process {rank} failed: {msg}")


def save_real_tokens(path, rt: RealTokens) -> Path:
    return checkpoint.save(path, {"format": REAL_TOKENS_FORMAT, "version": REAL_TOKENS_VERSION,
                                  "key": rt.key, "kind": rt.kind, "captions": rt.captions,
                                  "indices": rt.indices, **rt.tensors()})


def load_real_tokens(path, key: Mapping | None = None) -> RealTokens:
    """A cached :class:`RealTokens`; one made for other data or tokenizers raises
    :class:`~nuwa_lib.tokenizers.token_sets.TokenCacheError` naming the file and the mismatch."""
    p = checkpoint.load(path, REAL_TOKENS_FORMAT, None if key is None else {"key": key},
                        what="token cache", hint="delete it to re-encode", error=TokenCacheError)
    try:
        k = p["key"]
        return RealTokens(role=k["dataset"]["name"], split=k["dataset"]["split"],
                          n=int(p["visual"].shape[0]), key=k, visual=p["visual"],
                          captions=p.get("captions"), text_ids=p.get("text_ids"),
                          text_keep=p.get("text_keep"), sketch=p.get("sketch"),
                          path=Path(path), source="loaded", kind=p["kind"],
                          indices=p.get("indices"))
    except (KeyError, TypeError, AttributeError) as err:
        raise TokenCacheError(f"{path}: token cache lacks {err}; delete it to re-encode") from None


def _assemble(reader, key, parts, tokenizers) -> RealTokens:
    """:class:`RealTokens` from :func:`_encode`'s parts, in reader order, captions encoded."""
    if parts["visual"] is None:
        raise DataError(f"dataset {reader.name!r} ({reader.root}): no sample could be read")
    indices = torch.as_tensor(parts["indices"], dtype=torch.int64)
    order = indices.argsort()
    captions = [parts["captions"][i] for i in order.tolist()] if reader.captioned else None
    rt = RealTokens(role=reader.name, split=reader.split, n=len(parts["visual"]), key=key,
                    visual=parts["visual"][order], kind=reader.kind, indices=indices[order],
                    captions=captions,
                    sketch=None if parts["sketch"] is None else parts["sketch"][order])
    if captions is not None and tokenizers.text is not None:
        ids, rt.text_keep = tokenizers.text.encode(captions)
        rt.text_ids = ids.to(torch.int32)
    return rt


def real_tokens(reader: Reader, tokenizers: Tokenizers, *, n: int | None = None,
                profile: str | None = None, rank: int = 0, world_size: int = 1,
                progress=True) -> RealTokens:
    """The first ``n`` samples (default: all) of a reader as tokens -- pictures through the
    visual tokenizer, class maps through the sketch tokenizer (when given), captions
    through the text tokenizer (when given) -- loaded from the cache when there, otherwise
    encoded and (with a profile) cached. Under ``torchrun`` (``rank`` / ``world_size``,
    a profile required) every process encodes every world_size-th sample and rank 0
    merges the shares into the cache, which all then read."""
    if not isinstance(reader, Reader):
        raise ValueError(f"reader must be a nuwa_lib.data.readers.Reader, got "
                         f"{type(reader).__name__}")
    if not isinstance(tokenizers, Tokenizers) or tokenizers.visual is None:
        raise ValueError("real_tokens needs Tokenizers(visual=...) (and text= / sketch= for "
                         "captions / class maps)")
    canvas = tokenizers.visual.config.canvas
    if reader.size != canvas:
        raise ValueError(f"dataset {reader.name!r} gives {reader.size}x{reader.size} pictures but "
                         f"the visual tokenizer takes {canvas}x{canvas}: open it with "
                         f"size={canvas}")
    if reader.has_seg and tokenizers.sketch is not None and \
            tokenizers.sketch.config.canvas != canvas:
        raise ValueError(f"the sketch tokenizer takes {tokenizers.sketch.config.canvas}² maps, "
                         f"the visual one {canvas}²: they must match")
    total = len(reader) if n is None else min(world._check_min("n", n, 1), len(reader))
    key = real_tokens_key(reader, total, tokenizers)
    if world_size > 1 and profile is None:
        raise ValueError("encoding under torchrun needs a profile (the shares meet in its cache)")

    def encode():
        parts = _encode(reader, range(total), tokenizers, progress)
        return _assemble(reader, key, parts, tokenizers)

    if profile is None:
        return encode()
    path = real_tokens_path(profile, key)

    def build():
        if world_size > 1:
            return _encode_in_shares(reader, key, path, tokenizers, total, rank, world_size,
                                     progress)
        rt = encode()
        save_real_tokens(path, rt)
        rt.path = path
        return rt

    return fetch(path, lambda p: load_real_tokens(p, key), build)[0]


def _encode_in_shares(reader, key, path, tokenizers, total, rank, world_size, progress):
    """Under ``torchrun``: every process encodes every world_size-th sample into a share
    file, rank 0 merges the shares into the cache at ``path``, and all read it back."""
    shares = [path.with_name(f".{path.stem}.share{r}of{world_size}.pt") for r in range(world_size)]
    error = None
    try:
        parts = _encode(reader, range(rank, total, world_size), tokenizers, progress and rank == 0)
        checkpoint.save(shares[rank], {"format": "nuwa-real-token-share", **parts})
    except Exception as err:  # noqa: BLE001 - every process must learn of it (sync)
        error = err
    sync(error, world_size)
    if rank == 0:
        try:
            loaded = [torch.load(share, weights_only=True) for share in shares]
            merged = {k: _cat([s[k] for s in loaded if s[k] is not None])
                      for k in ("visual", "sketch")}
            merged.update({k: [x for s in loaded for x in s[k]] for k in ("captions", "indices")})
            save_real_tokens(path, _assemble(reader, key, merged, tokenizers))
            for share in shares:
                share.unlink(missing_ok=True)
        except Exception as err:  # noqa: BLE001
            error = err
    sync(error, world_size)
    return load_real_tokens(path, key)


# --------------------------------------------------------------------------- tokenizers
def real_text_tokenizer(cfg: Mapping[str, Any], readers, *, profile: str | None = None):
    """The lowercased BPE of the ``text:`` section trained on the datasets' own captions
    (``text.captions_per_role`` of each captioned dataset, plus the word "None"), cached
    as ``artifacts/<profile>/text/bpe-real-<hash>.json``."""
    from ..data import text

    profile = profile or cfg.get("name")
    config = text.TextConfig.from_profile(cfg)
    corpus = [c for r in readers for c in r.captions()[: config.captions_per_role]]
    corpus.append(text.NONE_CAPTION)

    def build(path=None):
        tok = text.TextTokenizer(text.train_bpe(config, corpus), config, path)
        if path is not None:
            tok.save(path)
        return tok

    if profile is None:
        return build()
    digest = hashlib.sha256(json.dumps(corpus).encode()).hexdigest()
    key = {"version": text.TEXT_VERSION, "vocab_size": config.vocab_size, "corpus": digest}
    path = artifact_path(profile, "text", "bpe-real", key_hash(key), ".json")
    return fetch(path, lambda p: text.TextTokenizer.load(p, config), lambda: build(path))[0]


def visual_canvas(cfg: Mapping[str, Any]) -> int:
    """The side of the pictures the run's visual tokenizer takes (``data.tokenizers.visual``
    file, else the profile's ``vqgan.tokenizer``)."""
    from . import vq_train, vqgan

    spec = data_config(cfg)["tokenizers"]
    if isinstance(spec, Mapping) and spec.get("visual"):
        return int(vq_train.load_tokenizer(Path(spec["visual"]).expanduser())[0].config.canvas)
    name = (cfg.get("vqgan") or {}).get("tokenizer")
    configs = vqgan.configs_from_profile(cfg)
    world._check("vqgan.tokenizer", name, tuple(configs))
    return configs[name].canvas


def real_tokenizers(cfg: Mapping[str, Any], readers, *, sketch: bool, untrained=False,
                    profile: str | None = None, progress=True) -> Tokenizers:
    """Tokenizers for real data: the BPE of :func:`real_text_tokenizer`, and VQ models from
    ``data.tokenizers`` -- files written by :func:`nuwa_lib.tokenizers.vq_train.save_tokenizer`
    ({visual: FILE, sketch: FILE}), ``untrained`` (freshly initialised, seeded: dry runs and
    tests), or (None) the profile's own, which :mod:`nuwa_lib.tokenizers.vqgan` trains on the
    Shapes World and which therefore exist only at the world's canvases (32, 64)."""
    from . import vq_train

    profile = profile or cfg.get("name")
    spec = data_config(cfg)["tokenizers"]
    if spec is None and not untrained and (canvas := visual_canvas(cfg)) not in world.CANVASES:
        raise ValueError(
            f"the profile's visual tokenizer takes {canvas}² pictures, and "
            f"nuwa_lib.tokenizers.vqgan trains tokenizers on the Shapes World, which renders "
            f"only {' or '.join(map(str, world.CANVASES))} px: give trained checkpoints in "
            f"data.tokenizers {{visual: FILE, sketch: FILE}} (written by nuwa_lib.tokenizers."
            f"vq_train.save_tokenizer), or data.tokenizers: untrained for a dry run")
    text_tok = real_text_tokenizer(cfg, [r for r in readers if r.captioned], profile=profile)
    if untrained or spec == "untrained":
        return profile_tokenizers(cfg, profile=profile, sketch=sketch, untrained=True,
                                  progress=progress, text_tokenizer=text_tok)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"visual", "sketch"}
        if unknown or not spec.get("visual") or (sketch and not spec.get("sketch")):
            raise ValueError("data.tokenizers must name checkpoint files {visual: FILE"
                             + (", sketch: FILE" if sketch else "") + f"}}, got {dict(spec)}")

        def load(part):
            path = _file(Path(spec[part]).expanduser(), f"{part} tokenizer checkpoint")
            return vq_train.load_tokenizer(path)[0]

        return Tokenizers(text_tok, load("visual"), load("sketch") if sketch else None)
    if spec is not None:
        raise ValueError(f"data.tokenizers must be null, 'untrained' or {{visual: FILE, "
                         f"sketch: FILE}}, got {spec!r}")
    return profile_tokenizers(cfg, profile=profile, sketch=sketch, progress=progress,
                              text_tokenizer=text_tok)
