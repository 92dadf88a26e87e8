"""Watch NÜWA draw (notebook 04): a caption in, the picture (or each video frame) filled in
token by token in raster order, with the current token's 3DNA window and the text it attends
to highlighted.

The panel's callbacks are the pure functions here; :func:`panel` only wires them to widgets:

* :func:`check_caption` -- a typed caption normalised, or a ``ValueError`` whose message names
  the problem (empty, too long, words the world never uses);
* :func:`drawing` -- every decoding step of one sample with the KV cache (Eq. 15's causal 3DNA):
  the tokens so far, the slot drawn, the slots its self-attention window reads, and the share of
  attention it gives each text token (the last decoder layer's cross-attention, mean over heads);
* :func:`canvas` -- the pixels of the tokens drawn so far, undrawn cells grey;
* :func:`view` -- the figure and the one-line summary of step ``t``;
* :func:`attempt` -- what the Draw button does: a message and the steps, never a traceback.
"""
from __future__ import annotations

import html
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data import world
from ..model.config import Condition, modality_of
from ..model.layers import decode_windows
from ..tokenizers import vqgan
from .sampling import draw

WORDS = frozenset(world.VOCABULARY) | {"none"}     # "None": Eq. 16's empty condition
GREY = 96                                          # undrawn cells


def check_caption(text, max_words: int = 40) -> str:
    """``text`` lowercased with single spaces; ``ValueError`` naming what is wrong: not a
    string, empty, longer than ``max_words`` words, or words outside the world's vocabulary
    (which it lists)."""
    if not isinstance(text, str):
        raise ValueError(f"the caption must be text, got {type(text).__name__}")
    words = text.lower().replace(",", " ").split()
    if not words:
        raise ValueError("the caption is empty: type one, e.g. 'a large red circle at the top "
                         "left on grass', or pick a held-out caption")
    if len(words) > max_words:
        raise ValueError(f"the caption has {len(words)} words; at most {max_words}")
    unknown = sorted(set(words) - WORDS)
    if unknown:
        raise ValueError(f"the world has no word{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(w) for w in unknown)}; its words are: "
                         f"{', '.join(sorted(WORDS))}")
    return " ".join(words)


@dataclass(frozen=True)
class Step:
    """One decoding step: slot ``t`` (``slot`` = (frame, row, column)) got token ``token``;
    ``tokens`` (s, h, w) holds every token drawn so far (-1: not yet); ``window`` (s, h, w)
    the slots its causal 3DNA self-attention reads; ``text`` the share of its cross-attention
    on each real text token."""
    t: int
    slot: tuple
    token: int
    tokens: np.ndarray
    window: np.ndarray
    text: np.ndarray


@contextmanager
def _recording(attn):
    """Record the cross-attention weights of ``attn`` (one decoder layer's) at each step:
    softmax(q k^T / sqrt(D)) over the text keys, mean over heads, padding hidden."""
    seen = []
    plain = attn.step

    def step(x, k, v, key_keep=None):
        B = x.shape[0]
        q = attn.to_q(x).view(B, 1, attn.heads, -1).transpose(1, 2)          # (B, H, 1, D)
        scores = (q @ k.transpose(-1, -2))[:, :, 0] / math.sqrt(q.shape[-1])  # (B, H, W)
        if key_keep is not None:
            scores = scores.masked_fill(~key_keep[:, None], float("-inf"))
        seen.append(scores.softmax(-1).mean(1)[0])
        return plain(x, k, v, key_keep)

    attn.step = step
    try:
        yield seen
    finally:
        del attn.step          # the class's method again


@torch.no_grad()
def drawing(model, text_tokenizer, caption: str, grid, *, seed: int = 0,
            temperature: float = 1.0, top_k: int | None = None) -> list:
    """Every :class:`Step` of one sample for ``caption`` on the target ``grid`` (s, h, w),
    drawn with the KV cache as :func:`~nuwa_lib.generation.sampling.sample` draws it (same
    seed, same tokens)."""
    caption = check_caption(caption)
    ids, keep = text_tokenizer.encode(caption)
    cond = Condition.from_text(ids, keep).to(model.bos.device)
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    cache = model.start(cond, grid)
    grid = cache.grid
    self_extent = model.config.extent(modality_of("visual", grid))
    windows = decode_windows(model.config.decoder_attention, grid, grid, self_extent, True, "cpu")
    tokens = np.full(math.prod(grid), -1, dtype=np.int64)
    real = int(keep[0].sum())
    steps, prev = [], None
    with _recording(model.decoder[-1].cross_attn) as seen:
        for t in range(cache.length):
            logits = model.step(cache, prev)
            prev = draw(logits, temperature, top_k, gen)
            tokens[t] = int(prev[0])
            window = np.zeros(cache.length, dtype=bool)
            window[windows[t].numpy()] = True
            steps.append(Step(t, tuple(int(v) for v in np.unravel_index(t, grid)), tokens[t],
                              tokens.reshape(grid).copy(), window.reshape(grid),
                              seen[-1][:real].float().cpu().numpy().copy()))
    return steps


def canvas(visual, step: Step) -> np.ndarray:
    """The pixels of ``step``'s tokens (frames, H, W, 3) uint8: each drawn token's cell as the
    tokenizer decodes the whole grid (undrawn tokens as code 0), undrawn cells grey."""
    tokens = torch.as_tensor(np.where(step.tokens < 0, 0, step.tokens))[None]
    pixels = np.array(vqgan.decode(visual, tokens)[0])
    if pixels.ndim == 3:
        pixels = pixels[None]
    f = pixels.shape[1] // step.tokens.shape[1]
    undrawn = np.repeat(np.repeat(step.tokens < 0, f, axis=1), f, axis=2)
    pixels[undrawn] = GREY
    return pixels


def _label(piece: str) -> str:
    """A BPE piece as a reader writes it ('Ġ' marks a leading space)."""
    return piece.replace("Ġ", " ").strip() or "·"


def summary(step: Step, pieces: Sequence[str], n: int) -> str:
    """One line: which token, which slot, how many slots its window reads, the text it
    attends to most."""
    k, i, j = step.slot
    top = int(np.argmax(step.text)) if len(step.text) else None
    words = "" if top is None else \
        f"; it attends most to the text token {_label(pieces[top])!r} ({step.text[top]:.0%})"
    where = f"frame {k}, row {i}, column {j}" if step.tokens.shape[0] > 1 else f"row {i}, column {j}"
    return (f"token {step.t + 1} of {n} ({where}) = code {step.token}; its 3DNA window reads "
            f"{int(step.window.sum())} slots (itself and earlier ones){words}")


def view(visual, steps: Sequence[Step], t: int, pieces: Sequence[str]):
    """(figure, summary) of step ``t`` (clamped to the steps there are): the frame being
    drawn, with the current token's cell (red) and its self-attention window (cyan) outlined,
    and a bar per text token for the attention it receives."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if not steps:
        raise ValueError("nothing drawn yet: draw a caption first")
    step = steps[min(max(int(t), 0), len(steps) - 1)]
    pixels = canvas(visual, step)
    k, i, j = step.slot
    f = pixels.shape[1] // step.tokens.shape[1]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(7.6, 3.2), width_ratios=(1, 1.5))
    ax.imshow(pixels[k], interpolation="nearest")
    for (kk, ii, jj) in zip(*np.nonzero(step.window)):
        if kk == k:
            ax.add_patch(Rectangle((jj * f - .5, ii * f - .5), f, f, fill=False, ec="cyan", lw=.8))
    ax.add_patch(Rectangle((j * f - .5, i * f - .5), f, f, fill=False, ec="red", lw=1.6))
    ax.set_title(f"frame {k}" if len(pixels) > 1 else "picture", fontsize=8)
    ax.axis("off")
    labels = [_label(p) for p in pieces]
    bx.bar(range(len(step.text)), step.text, color="tab:orange")
    bx.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    bx.set_ylim(0, 1)
    bx.set_ylabel("attention (last layer)", fontsize=7)
    bx.set_title("the text this token attends to", fontsize=8)
    fig.tight_layout()
    return fig, summary(step, pieces, len(steps))


def attempt(model, tokenizers, text: str, grid, **kw) -> dict:
    """What the Draw button does: {"ok", "message", "steps", "pieces"}; a bad caption gives
    ok False, its message and no steps (never an exception)."""
    try:
        caption = check_caption(text)
    except ValueError as err:
        return {"ok": False, "message": str(err), "steps": [], "pieces": []}
    steps = drawing(model, tokenizers.text, caption, grid, **kw)
    pieces = tokenizers.text.tokens(caption)[: len(steps[0].text)]
    return {"ok": True, "message": f"drew “{caption}”: {len(steps)} tokens", "steps": steps,
            "pieces": pieces}


def panel(model, tokenizers, captions: Sequence[str], *, video_grid=None, seed: int = 0,
          temperature: float = 1.0, top_k: int | None = None):
    """The widget: a caption box (type one, or pick a held-out caption), picture or video,
    a Draw button and a slider over the tokens (with a play button). A bad caption shows its
    message under the box, not a traceback."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    c = model.config
    grids = {"picture": (1, *c.target_tokens[1:]), "video": tuple(video_grid or c.target_tokens)}
    pick = W.Dropdown(options=["(type below)"] + list(captions), description="held-out")
    text = W.Text(value=captions[0] if captions else "", description="caption",
                  layout=W.Layout(width="95%"))
    kind = W.ToggleButtons(options=list(grids), description="draw")
    go = W.Button(description="Draw", button_style="primary")
    step = W.IntSlider(min=1, max=1, description="token", continuous_update=False)
    play = W.Play(min=1, max=1, interval=150)
    W.jslink((play, "value"), (step, "value"))
    message, out = W.HTML(), W.Output()
    state = {"steps": [], "pieces": []}

    def render(*_):
        out.clear_output(wait=True)
        if not state["steps"]:
            return
        fig, line = view(tokenizers.visual, state["steps"], step.value - 1, state["pieces"])
        with out:
            display(fig)
            print(line)
        plt.close(fig)

    def on_pick(change):
        if change["new"] != "(type below)":
            text.value = change["new"]

    def on_draw(*_):
        message.value = "drawing…"
        got = attempt(model, tokenizers, text.value, grids[kind.value], seed=seed,
                      temperature=temperature, top_k=top_k)
        message.value = html.escape(got["message"]) if got["ok"] else \
            f"<span style='color:#b00'>{html.escape(got['message'])}</span>"
        if not got["ok"]:
            return
        state.update(steps=got["steps"], pieces=got["pieces"])
        step.max = play.max = len(state["steps"])
        if step.value == step.max:
            render()                  # same slider position: no change event to redraw on
        else:
            step.value = step.max     # its change event redraws

    pick.observe(on_pick, names="value")
    go.on_click(on_draw)
    step.observe(render, names="value")
    return W.VBox([pick, text, W.HBox([kind, go]), message, W.HBox([play, step]), out])
