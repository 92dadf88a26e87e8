"""Text tokens (Sec. 3.1): the lowercased BPE, fixed-length encoding, and its cache file."""
import hashlib
import subprocess
import sys

import pytest
import torch

from nuwa_lib.data import splits, text, world
from nuwa_lib.data.text import (
    NONE_CAPTION,
    PAD_ID,
    TextConfig,
    TextTokenizer,
    TokenizerFileError,
    get_tokenizer,
    tokenizer_path,
    train_bpe,
)
from nuwa_lib.utils.profiles import load_profile

SMALL = TextConfig(vocab_size=512, length=32, captions_per_role=64, train_size=256)


def _profile(tmp_name="unit", **text_section):
    return {"name": tmp_name, "seed": 0, "world": {"canvas": 32, "frames": 8,
                                                   "split_sizes": {"train": 256}},
            "text": {"vocab_size": 512, "length": 12, "captions_per_role": 64, **text_section}}


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer(train_bpe(SMALL), SMALL)


def _captions(n=40):
    """Held-out captions (val split): image and video templates."""
    return ([splits.sample("mscoco", "val", i).caption for i in range(n)]
            + [splits.sample("msrvtt", "val", i).caption for i in range(n)])


def test_training_is_deterministic_across_processes(tok):
    code = ("import hashlib; from nuwa_lib.data.text import TextConfig, train_bpe; "
            "c = TextConfig(vocab_size=512, length=12, captions_per_role=64, train_size=256); "
            "print(hashlib.sha256(train_bpe(c).to_str().encode()).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other == hashlib.sha256(tok.bpe.to_str().encode()).hexdigest()


def test_corpus_is_the_captioned_train_splits_plus_the_word_none():
    corpus = text.training_captions(SMALL)
    assert len(corpus) == 64 * len(text.CAPTION_ROLES) + 1
    assert corpus[-1] == NONE_CAPTION
    assert corpus[0] == splits.sample(text.CAPTION_ROLES[0], "train", 0).caption
    assert {"cc", "vatex"} <= set(text.CAPTION_ROLES)   # image and video captions


def test_normalizer_lowercases(tok):
    a, _ = tok.encode("A LARGE Red Circle on Grass")
    b, _ = tok.encode("a large red circle on grass")
    assert torch.equal(a, b)


def test_frequent_words_and_none_are_single_tokens(tok):
    for word in world.SHAPES + world.COLOURS + world.SIZES + ("grass", "moves", "none"):
        assert len(tok.tokens(word)) == 1, (word, tok.tokens(word))
    assert tok.vocab_size <= SMALL.vocab_size


def test_world_captions_round_trip(tok):
    captions = _captions()
    ids, keep = tok.encode(captions)
    assert tok.decode(ids, keep) == captions
    assert tok.decode(ids) == captions                 # padding dropped by its id too
    assert tok.decode(ids[0]) == [captions[0]]         # a single row
    assert tok.decode(tok.encode(NONE_CAPTION)[0]) == ["none"]


def test_encoding_pads_and_truncates_to_the_fixed_length(tok):
    short, long = "a red circle on grass", " and ".join(["a small red circle moves up"] * 6)
    ids, keep = tok.encode([short, long])
    assert ids.shape == keep.shape == (2, SMALL.length)
    assert ids.dtype == torch.int64 and keep.dtype == torch.bool
    assert keep[0].tolist() == [True] * 5 + [False] * (SMALL.length - 5)
    assert (ids[0, 5:] == PAD_ID).all() and (ids[0, :5] != PAD_ID).all()
    assert keep[1].all()                                # cut at L tokens
    assert ids[1].tolist() == tok.bpe.encode(long).ids[: SMALL.length]


def test_unknown_characters_still_encode_byte_by_byte(tok):
    ids, keep = tok.encode("a zébra!")
    assert keep.sum() > 2 and int(ids.max()) < tok.vocab_size
    assert tok.decode(ids, keep) == ["a zébra!"]


@pytest.mark.parametrize("bad, match", [
    (123, "string or a sequence"),
    (["a red circle", 7], r"texts\[1\] must be a string"),
    (["a red circle", ""], r"texts\[1\] = '' has no tokens"),
])
def test_bad_captions_raise_clear_errors(tok, bad, match):
    with pytest.raises(ValueError, match=match):
        tok.encode(bad)


def test_bad_ids_raise_clear_errors(tok):
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        tok.decode(torch.tensor([[3, tok.vocab_size]]))
    with pytest.raises(ValueError, match="integer token ids"):
        tok.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="keep must have the shape"):
        tok.decode(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool))


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 258"):
        TextConfig(vocab_size=100)
    with pytest.raises(ValueError, match="length must be a positive integer"):
        TextConfig(length=0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['vocab'\]"):
        TextConfig.from_profile(_profile(vocab=3))


def test_tokenizer_is_built_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path))
    cfg = _profile()
    first = get_tokenizer(cfg)
    path = tokenizer_path(TextConfig.from_profile(cfg), "unit")
    assert first.path == path and path.exists()
    assert path.parent == tmp_path / "unit" / "text" and path.name.startswith("bpe-")
    assert not list(path.parent.glob(".*tmp"))          # written atomically, nothing left over

    def no_training(*args, **kwargs):
        raise AssertionError("a cached tokenizer must be loaded, not retrained")
    monkeypatch.setattr(text, "train_bpe", no_training)
    again = get_tokenizer(cfg)
    assert again.bpe.to_str() == first.bpe.to_str()
    # another corpus or vocabulary -> another file
    assert tokenizer_path(TextConfig.from_profile(_profile(captions_per_role=32)), "unit") != path
    # the length is applied when encoding, not stored in the file
    assert tokenizer_path(TextConfig.from_profile(_profile(length=20)), "unit") == path


def test_missing_file_is_rebuilt_and_corrupt_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path))
    cfg = _profile()
    path = get_tokenizer(cfg).path
    path.write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": ')
    with pytest.raises(TokenizerFileError, match=str(path)):
        get_tokenizer(cfg)
    path.unlink()
    assert get_tokenizer(cfg).path.exists()


def test_file_for_a_larger_vocabulary_is_refused(tmp_path):
    big = TextConfig(vocab_size=400, length=12, captions_per_role=64, train_size=256)
    trained = TextTokenizer(train_bpe(big), big)
    path = trained.save(tmp_path / "bpe.json")
    small = TextConfig(vocab_size=300, length=12, captions_per_role=64, train_size=256)
    with pytest.raises(TokenizerFileError,
                       match=rf"bpe.json: vocabulary of {trained.vocab_size} tokens is larger"):
        TextTokenizer.load(path, small)


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
def test_profiles_define_the_text_section(profile):
    config = TextConfig.from_profile(load_profile(profile))
    assert config.length == (77 if profile == "paper" else 32)   # Sec. 4.1: 1 x 1 x 77
    longest = max(len(c.split()) for c in _captions(200))
    assert config.length >= longest     # world captions are never truncated
