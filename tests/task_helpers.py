"""Tiny, untrained tokenizers and NÜWA model shared by the task-level tests: the pipelines
need their shapes, not their quality."""
import torch

from nuwa_lib.data import text
from nuwa_lib.evaluation import judge_nets, judges as J
from nuwa_lib.model.config import NuwaConfig
from nuwa_lib.model.nuwa import Nuwa
from nuwa_lib.tokenizers import token_sets as D, vqgan as V

WORLD = dict(seed=0, canvas=32, frames=4)
TEXT = text.TextConfig(vocab_size=512, length=32, captions_per_role=32, train_size=64)


def tiny_tokenizers() -> D.Tokenizers:
    torch.manual_seed(0)
    vq = V.VQModel(V.VQConfig(kind="vqgan", codebook=16, code_dim=8, width=4)).eval()
    return D.Tokenizers(text.TextTokenizer(text.train_bpe(TEXT), TEXT), vq)


def tiny_model() -> Nuwa:
    torch.manual_seed(0)
    return Nuwa(NuwaConfig(dim=16, heads=2, encoder_layers=1, decoder_layers=1, text_vocab=512,
                           text_length=32, codebook_size=16, sketch_codebook_size=16,
                           target_tokens=(4, 8, 8), sketch_tokens=(4, 8, 8),
                           image_extent=(1, 1, 1), video_extent=(1, 1, 1))).eval()


class PerfectReader:
    """A judge stub (image or video judge) that reads the scenes it was given perfectly."""

    def __init__(self, scenes, video=False):
        self.video = video
        self.head_names = judge_nets.VIDEO_HEADS if video else judge_nets.IMAGE_HEADS
        self.t = J.scene_targets(scenes, video=video)

    def predict(self, pixels):
        extra = (lambda k: k == "presence") if self.video else (lambda k: k.startswith("slot_"))
        return {k: v for k, v in self.t.items() if k in self.head_names or extra(k)}
