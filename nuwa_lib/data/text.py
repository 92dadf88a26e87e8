"""Text tokens (Sec. 3.1): a lowercased byte-pair encoding, padded to a fixed length.

The paper tokenizes text with "a lowercased byte pair encoding (BPE)" into a 1 x 1 x L grid,
L = 77 (Sec. 4.1; our grids are written (s, h, w), so text is the grid (L, 1, 1)). We train
such a BPE with the ``tokenizers`` library on the Shapes World's captions:

* normalizer: NFKC, then lowercase -- "A Red Circle" and "a red circle" are the same tokens;
* pre-tokenizer: byte level with a leading space (as GPT-2 / CLIP), so any string encodes
  without ``<unk>`` and the 256 byte symbols get fixed ids -- which also makes training
  deterministic (the library numbers symbols it meets while counting in hash order, so a
  character-level alphabet would give different ids, run to run);
* special tokens ``<pad>`` = 0 and ``<unk>`` = 1;
* corpus: the captions of the training splits of every captioned dataset role (image and
  video captions) plus the word "None", the constant condition of video prediction (V2V,
  Eq. 16).

:func:`get_tokenizer` loads ``artifacts/<profile>/text/bpe-<hash>.json`` when present and
trains (and writes, atomically) otherwise; the hash covers everything the corpus and the
trainer depend on. :meth:`TextTokenizer.encode` returns ``(ids, keep)``: int64 ids of shape
(N, L), truncated or padded with ``<pad>`` to the profile's length, and a bool mask that is
True on real tokens (the model masks padded keys with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..utils.cache import artifact_path, fetch, key_hash, profile_of
from ..utils.files import atomic_write_bytes
from . import splits

TEXT_VERSION = 1            # bump when the recipe below changes: old files stop matching
PAD, UNK = "<pad>", "<unk>"
SPECIAL_TOKENS = (PAD, UNK)
PAD_ID, UNK_ID = 0, 1       # special tokens are numbered first, in this order
NONE_CAPTION = "None"       # V2V's condition: "a constant 3D representation c of the word None"
MIN_VOCAB = len(SPECIAL_TOKENS) + 256   # the byte alphabet is always in the vocabulary
# Roles whose captions the generator is trained on (their train splits form the corpus).
CAPTION_ROLES = tuple(r for r, spec in splits.ROLES.items() if spec.captioned)


class TokenizerFileError(RuntimeError):
    """A saved tokenizer that cannot be used: corrupt, or made for another config."""


@dataclass(frozen=True)
class TextConfig:
    """The ``text:`` section of a profile, plus what of ``world:`` the corpus depends on."""
    vocab_size: int = 512          # upper bound of the BPE vocabulary = the model's text rows
    length: int = 77               # tokens per caption after padding / truncation (Sec. 4.1)
    captions_per_role: int = 2000  # captions read from each role's train split (at most its size)
    seed: int = 0
    canvas: int = 32
    frames: int = 8
    train_size: int = 2000         # size of the world's train splits

    def __post_init__(self):
        if (not isinstance(self.vocab_size, int) or isinstance(self.vocab_size, bool)
                or self.vocab_size < MIN_VOCAB):
            raise ValueError(f"text.vocab_size must be an integer >= {MIN_VOCAB} (2 special "
                             f"tokens + 256 bytes), got {self.vocab_size!r}")
        for name in ("length", "captions_per_role", "train_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"text.{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_profile(cls, cfg: Mapping[str, Any]) -> "TextConfig":
        """Read the ``text:`` section (vocab_size, length, captions_per_role), ``seed`` and
        ``world.{canvas, frames, split_sizes.train}``."""
        section = dict(cfg.get("text") or {})
        allowed = {"vocab_size", "length", "captions_per_role"}
        unknown = set(section) - allowed
        if unknown:
            raise ValueError(f"text: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed))}")
        w = cfg.get("world") or {}
        return cls(**section, seed=int(cfg.get("seed", 0)), canvas=int(w.get("canvas", 32)),
                   frames=int(w.get("frames", 8)),
                   train_size=int((w.get("split_sizes") or {}).get("train", 2000)))

    @property
    def corpus_size(self) -> int:
        return min(self.captions_per_role, self.train_size)


def config_hash(config: TextConfig) -> str:
    """12 hex digits over everything the trained BPE depends on (not ``length``: padding
    is applied when encoding, the file holds only the BPE)."""
    key = {"version": TEXT_VERSION, "roles": CAPTION_ROLES, "none": NONE_CAPTION,
           "vocab_size": config.vocab_size, "seed": config.seed, "canvas": config.canvas,
           "frames": config.frames, "corpus_size": config.corpus_size}
    return key_hash(key)


def tokenizer_path(config: TextConfig, profile: str) -> Path:
    return artifact_path(profile, "text", "bpe", config_hash(config), ".json")


def training_captions(config: TextConfig) -> list[str]:
    """The corpus, in a fixed order: image and video captions of the train split of each
    captioned role (the first ``corpus_size`` samples), then the word "None"."""
    captions = [splits.sample(role, "train", i, seed=config.seed, canvas=config.canvas,
                             frames=config.frames).caption
                for role in CAPTION_ROLES for i in range(config.corpus_size)]
    return captions + [NONE_CAPTION]


def _empty_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(config: TextConfig, captions: Sequence[str] | None = None) -> Tokenizer:
    """A BPE of at most ``config.vocab_size`` tokens trained on ``captions`` (default: the
    world corpus). Deterministic: the same captions give the same file, in any process
    (byte-level symbols have fixed ids, so ties between equally frequent pairs always break
    the same way; tests/test_text.py checks it across processes)."""
    captions = training_captions(config) if captions is None else list(captions)
    tok = _empty_bpe()
    trainer = trainers.BpeTrainer(vocab_size=config.vocab_size,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(captions, trainer)
    return tok


class TextTokenizer:
    """Captions <-> fixed-length token ids on the text grid (L, 1, 1)."""

    def __init__(self, bpe: Tokenizer, config: TextConfig, path: Path | None = None):
        self.bpe, self.config, self.path = bpe, config, path
        where = f"{path}: " if path else ""
        for token, expected in zip(SPECIAL_TOKENS, (PAD_ID, UNK_ID)):
            if bpe.token_to_id(token) != expected:
                raise TokenizerFileError(f"{where}special token {token} must have id {expected}, "
                                         f"has {bpe.token_to_id(token)}")
        if bpe.get_vocab_size() > config.vocab_size:
            raise TokenizerFileError(f"{where}vocabulary of {bpe.get_vocab_size()} tokens is "
                                     f"larger than text.vocab_size={config.vocab_size}")

    @property
    def length(self) -> int:
        return self.config.length

    @property
    def vocab_size(self) -> int:
        """Tokens actually learned (<= ``config.vocab_size``, the model's embedding rows)."""
        return self.bpe.get_vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"TextTokenizer({self.vocab_size} tokens of at most {self.config.vocab_size}, "
                f"length {self.length})")

    @staticmethod
    def _captions(texts) -> list[str]:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence):
            raise ValueError(f"texts must be a string or a sequence of strings, got "
                             f"{type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] must be a string, got {type(t).__name__}: {t!r}")
        return list(texts)

    def tokens(self, text: str) -> list[str]:
        """The BPE pieces of one caption, untruncated (for display; 'Ġ' marks a space)."""
        return self.bpe.encode(self._captions(text)[0]).tokens

    def encode(self, texts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, keep)``: int64 (N, L) token ids, cut to L = ``length`` or padded with
        ``<pad>`` (id 0), and bool (N, L), True on real tokens. An empty caption (no token
        at all) raises ValueError: the encoder needs something to attend to."""
        captions = self._captions(texts)
        ids = torch.full((len(captions), self.length), PAD_ID, dtype=torch.int64)
        keep = torch.zeros((len(captions), self.length), dtype=torch.bool)
        for i, enc in enumerate(self.bpe.encode_batch(captions)):
            if not enc.ids:
                raise ValueError(f"texts[{i}] = {captions[i]!r} has no tokens; use the word "
                                 f"{NONE_CAPTION!r} for 'no text' (Eq. 16)")
            row = enc.ids[: self.length]
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
            keep[i, : len(row)] = True
        return ids, keep

    def decode(self, ids, keep=None) -> list[str]:
        """Captions back from (N, L) or (L,) ids; padding (``keep`` False, or ``<pad>``
        where ``keep`` is None) is dropped."""
        ids = torch.as_tensor(ids)
        if ids.dim() == 1:
            ids = ids[None]
            keep = None if keep is None else torch.as_tensor(keep)[None]
        if ids.dim() != 2 or ids.dtype == torch.bool or ids.is_floating_point():
            raise ValueError(f"ids must be integer token ids of shape (N, L) or (L,), got "
                             f"{ids.dtype} of shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        keep = ids != PAD_ID if keep is None else torch.as_tensor(keep, dtype=torch.bool)
        if keep.shape != ids.shape:
            raise ValueError(f"keep must have the shape of ids {tuple(ids.shape)}, got "
                             f"{tuple(keep.shape)}")
        return [self.bpe.decode(row[k].tolist(), skip_special_tokens=False).strip()
                for row, k in zip(ids, keep)]

    def save(self, path) -> Path:
        """Write the BPE as JSON, atomically (temp file + rename)."""
        path = Path(path)
        atomic_write_bytes(path, self.bpe.to_str().encode())
        return path

    @classmethod
    def load(cls, path, config: TextConfig) -> "TextTokenizer":
        """Read a saved BPE; a corrupt or unsuitable file raises :class:`TokenizerFileError`
        naming it."""
        path = Path(path)
        try:
            bpe = Tokenizer.from_str(path.read_text())
        except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception
            raise TokenizerFileError(f"{path}: not a readable tokenizer file ({err}); delete it "
                                     f"to rebuild") from None
        return cls(bpe, config, path)


def get_tokenizer(cfg: Mapping[str, Any], profile: str | None = None,
                  rebuild: bool = False) -> TextTokenizer:
    """The profile's tokenizer: loaded from ``artifacts/<profile>/text/bpe-<hash>.json`` when
    present, otherwise trained on the world's captions and written there (atomically)."""
    profile = profile_of(cfg, profile)
    config = TextConfig.from_profile(cfg)
    path = tokenizer_path(config, profile)

    def build():
        tok = TextTokenizer(train_bpe(config), config, path)
        tok.save(path)
        return tok

    return fetch(path, lambda p: TextTokenizer.load(p, config), build, rebuild=rebuild)[0]


__all__ = [
    "TextConfig", "TextTokenizer", "TokenizerFileError", "get_tokenizer", "train_bpe",
    "training_captions", "tokenizer_path", "config_hash", "PAD_ID", "UNK_ID", "NONE_CAPTION",
    "SPECIAL_TOKENS", "CAPTION_ROLES",
]
