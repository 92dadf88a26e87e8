"""The paper's metrics (Sec. 4, Tables 1-6), computed with the world's judges (DESIGN §7).

Same formulas, different networks: where the paper uses Inception-v3, CLIP, I3D or a COCO
segmenter, we use the judges of ``judges.py``, trained on the Shapes World. The numbers are
therefore on their own scale: compare rows within our tables, never with the paper's values.
:data:`METRIC_NAMES` gives the names tables use, which say so ("FID (world features)").

* FID, FID-k, IS, KID go through torch-fidelity with a registered feature extractor that
  wraps the world classifier (features -> FID/KID, joint shape x colour log-probabilities ->
  IS). FID-k (DALL-E, Table 1) blurs *both* image sets with a Gaussian of radius k first.
* FID-img is FID over all frames; FID-vid and FVD are Fréchet distances over clip-level
  features of the video net (FID-vid: its pooled features, as C3D-based FID-vid; FVD: its
  logit layer, as FVD uses I3D's logits), computed by :func:`frechet_distance`.
* CLIPSIM is the cosine similarity of the world CLIP's unit embeddings, in [-1, 1], for
  videos the mean over frames (GODIVA's CLIPSIM, used by the paper, is the same cosine with
  OpenAI's CLIP, on which the paper's models score 0.23-0.35 in Tables 1, 2 and 5; a world
  CLIP trained on a few dozen words spreads matched and mismatched pairs much further apart,
  so only differences within our tables mean anything).
* Acc: agreement of the classifier's (or video net's) reading with the attributes the
  prompt names (see :func:`attribute_agreement` for two-object prompts).
* SSIM (Table 4) as usually defined; PA and FWIoU (Table 4) are in
  :mod:`nuwa_lib.evaluation.segmentation`; Detected PA (Table 6) is the PA of the world
  segmenter's maps of generated frames against the input sketch.

Nothing here downloads anything: the extractor gets its network from memory (or a judge
checkpoint), inputs are in-memory datasets, and torch-fidelity's file cache is off.
"""
from __future__ import annotations

import math
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import world
from ..utils.tensors import evaluating, to_tensor
from .judge_nets import VIDEO_PRESENCE, _batched
from .judges import load_checkpoint
from .segmentation import pixel_accuracy

FID_RADII = (0, 1, 2, 4, 8)     # Table 1's FID-k columns
EXTRACTOR_NAME = "nuwa-world-classifier"
METRIC_NAMES = {
    "fid": "FID (world features)",
    "fid_k": "FID-{k} (world features)",
    "is": "IS (world shape×colour classes)",
    "kid": "KID (world features)",
    "clipsim": "CLIPSIM (world CLIP, cosine)",
    "acc": "Acc (world judges, all named attributes)",
    "fid_img": "FID-img (world features)",
    "fid_vid": "FID-vid (world video features)",
    "fvd": "FVD (world video logits)",
    "ssim": "SSIM",
    "pa": "PA",
    "fwiou": "FWIoU",
    "detected_pa": "Detected PA (world segmenter)",
}


def _uint8(x, name, ndim=None):
    x = np.ascontiguousarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 with values 0..255, got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[-1] != 3 or (ndim is not None and x.ndim != ndim):
        want = "(N, H, W, 3)" if ndim == 4 else "(N, T, H, W, 3)" if ndim == 5 else "(..., H, W, 3)"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    return x


# --------------------------------------------------------------------------- Fréchet distance
def gaussian_stats(features):
    """Mean and covariance (float64) of (N, D) features, N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """d² = |mu1 - mu2|² + tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al., FID).

    tr (S1 S2)^(1/2) = tr (S1^(1/2) S2 S1^(1/2))^(1/2): a symmetric PSD matrix, so both
    square roots come from ``eigh`` and stay real and stable for singular covariances."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {s1.shape} vs {s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def frechet_distance(features1, features2) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_from_stats(*gaussian_stats(features1), *gaussian_stats(features2))


# --------------------------------------------------------------------------- blur (FID-k)
def _blur_matrix(n, radius):
    """(n, n) matrix of a 1-D Gaussian blur with sigma = radius px, truncated at 3 sigma,
    mirrored at the borders (any radius, even wider than the image)."""
    half = int(math.ceil(3 * radius))
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / radius) ** 2)
    taps /= taps.sum()
    src = np.pad(np.arange(n), half, mode="symmetric")
    m = np.zeros((n, n))
    for i in range(n):
        np.add.at(m[i], src[i:i + 2 * half + 1], taps)
    return m


def gaussian_blur(images, radius) -> np.ndarray:
    """Blur uint8 images (..., H, W, 3) with a Gaussian of standard deviation ``radius``
    pixels (PIL's convention for GaussianBlur(radius)), rounded back to uint8. Radius 0
    returns the images unchanged. FID-k applies this to both sets (DALL-E, Table 1). At
    32 px a radius is 8x stronger, relative to the image, than at the paper's 256 px."""
    images = _uint8(images, "images")
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius!r}")
    if radius == 0:
        return images.copy()
    h, w = images.shape[-3:-1]
    mh, mw = _blur_matrix(h, radius), _blur_matrix(w, radius)
    out = np.einsum("ij,...jkc->...ikc", mh, images.astype(np.float64))
    out = np.einsum("kl,...ilc->...ikc", mw, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def add_noise(images, sigma, seed=0) -> np.ndarray:
    """uint8 images plus Gaussian noise of std ``sigma`` on the [0, 1] scale, clipped."""
    images = _uint8(images, "images")
    rng = np.random.default_rng(seed)
    noisy = images + rng.normal(0.0, sigma * 255.0, images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def shuffle_frames(videos, fraction, seed=0) -> np.ndarray:
    """In every video (N, T, H, W, 3), round(fraction*T) randomly chosen frames swap places
    (a cyclic shift among them, so each chosen frame really moves)."""
    videos = _uint8(videos, "videos", ndim=5)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    t = videos.shape[1]
    k = int(round(fraction * t))
    out = videos.copy()
    if k < 2:
        return out
    for i in range(len(videos)):
        chosen = np.sort(rng.choice(t, k, replace=False))
        out[i, chosen] = videos[i, np.roll(chosen, 1)]
    return out


# --------------------------------------------------------------------------- torch-fidelity
_LIVE = weakref.WeakValueDictionary()   # token -> judge, for the extractor to find


def _token(model) -> str:
    token = f"nuwa-live-judge:{id(model)}"
    _LIVE[token] = model
    return token


def _resolve_judge(source):
    if isinstance(source, str) and source in _LIVE:
        return _LIVE[source]
    if source is not None and Path(str(source)).is_file():
        return load_checkpoint(source, expect="classifier")   # a classifier judge file
    raise ValueError(f"feature_extractor_weights_path {source!r} is neither a live judge "
                     f"token from nuwa_lib.evaluation.metrics nor a classifier judge checkpoint")


def _extractor_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class WorldFeatureExtractor(FeatureExtractorBase):
        """torch-fidelity's view of the world classifier: "features" (penultimate layer:
        FID, KID) and "logits" (joint shape x colour log-probabilities: IS). Its network
        comes through ``feature_extractor_weights_path``: a live-judge token or a file."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            # Not a submodule: torch-fidelity calls requires_grad_(False) / eval() / cuda()
            # on the extractor, which must not touch the caller's judge.
            self.__dict__["judge"] = _resolve_judge(feature_extractor_weights_path)

        @staticmethod
        def get_provided_features_list():
            return ("features", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits", "fid": "features", "kid": "features",
                    "prc": "features"}[metric]

        @staticmethod
        def can_be_compiled():   # so torch-fidelity never asks for a dummy input
            return False

        def forward(self, x):
            x = x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x
            with evaluating(self.judge):
                out = self.judge(x)
            layers = {"features": out["features"], "logits": self.judge.is_log_probs(out)}
            return tuple(layers[name] for name in self.features_list)

    return WorldFeatureExtractor


_EXTRACTOR = None     # the class, made on first use (importing torch-fidelity takes a while)


def register_world_extractor() -> str:
    """Register the world classifier with torch-fidelity under :data:`EXTRACTOR_NAME`.
    Safe to call any number of times (a re-run notebook, a reloaded module)."""
    global _EXTRACTOR
    from torch_fidelity import registry

    if _EXTRACTOR is None:
        _EXTRACTOR = _extractor_class()
    # Set directly: register_feature_extractor refuses a name that is already there (the
    # class left by an earlier import of this module).
    registry.FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR_NAME] = _EXTRACTOR
    return EXTRACTOR_NAME


class _Pixels(torch.utils.data.Dataset):
    """uint8 (N, H, W, 3) -> items (3, H, W) uint8, the layout torch-fidelity expects."""

    def __init__(self, images):
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def fidelity(generated, real=None, classifier=None, *, fid=True, isc=False, kid=False,
             radius=0, isc_splits=10, kid_subsets=100, kid_subset_size=None, batch_size=256,
             seed=2020) -> dict:
    """torch-fidelity's ``calculate_metrics`` with the world classifier as its network.

    ``generated`` and ``real`` are uint8 (N, H, W, 3); IS is computed on ``generated``.
    ``radius`` > 0 blurs both sets first (FID-k). KID's subsets hold ``kid_subset_size``
    images (default: min(1000, both set sizes)). Returns {"fid", "is_mean", "is_std",
    "kid_mean", "kid_std"} for the metrics asked for."""
    import torch_fidelity

    if classifier is None:
        raise ValueError("classifier is required: the world classifier judge")
    generated = _uint8(generated, "generated", ndim=4)
    if (fid or kid) and real is None:
        raise ValueError("FID and KID compare two sets: pass real images")
    if real is not None:
        real = _uint8(real, "real", ndim=4)
    n_sets = [len(generated)] + ([len(real)] if real is not None else [])
    if kid:
        if kid_subset_size is None:
            kid_subset_size = min([1000] + n_sets)
        if kid_subset_size > min(n_sets):
            raise ValueError(f"kid_subset_size={kid_subset_size} is larger than the sets "
                             f"(generated: {n_sets[0]}, real: {n_sets[-1]} images); use at "
                             f"most {min(n_sets)}")
    if isc and len(generated) < isc_splits:
        raise ValueError(f"isc_splits={isc_splits} needs at least that many images, "
                         f"got {len(generated)}")
    if radius:
        generated = gaussian_blur(generated, radius)
        real = gaussian_blur(real, radius) if real is not None else None
    name = register_world_extractor()
    cuda = next(classifier.parameters()).is_cuda
    kwargs = dict(input1=_Pixels(generated), cuda=cuda, batch_size=batch_size,
                  fid=fid, isc=isc, kid=kid, feature_extractor=name,
                  feature_extractor_weights_path=_token(classifier),
                  cache=False, save_cpu_ram=True, verbose=False, rng_seed=seed,
                  datasets_download=False)
    if real is not None and (fid or kid):
        kwargs["input2"] = _Pixels(real)
    if isc:
        kwargs["isc_splits"] = isc_splits
    if kid:
        kwargs.update(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
    res = torch_fidelity.calculate_metrics(**kwargs)
    keys = {"fid": (fid, torch_fidelity.KEY_METRIC_FID),
            "is_mean": (isc, torch_fidelity.KEY_METRIC_ISC_MEAN),
            "is_std": (isc, torch_fidelity.KEY_METRIC_ISC_STD),
            "kid_mean": (kid, torch_fidelity.KEY_METRIC_KID_MEAN),
            "kid_std": (kid, torch_fidelity.KEY_METRIC_KID_STD)}
    return {k: res[key] for k, (wanted, key) in keys.items() if wanted}


def fid(generated, real, classifier, radius=0) -> float:
    """FID (world features); with ``radius`` k it is FID-k."""
    return fidelity(generated, real, classifier, fid=True, radius=radius)["fid"]


def fid_k(generated, real, classifier, radii=FID_RADII) -> dict:
    """{k: FID-k} for every blur radius k (Table 1's FID-0 .. FID-8)."""
    return {k: fid(generated, real, classifier, radius=k) for k in radii}


def inception_score(generated, classifier, splits=10, seed=2020):
    """(mean, std) of IS over ``splits`` splits, on the classifier's joint classes."""
    r = fidelity(generated, None, classifier, fid=False, isc=True, isc_splits=splits, seed=seed)
    return r["is_mean"], r["is_std"]


def inception_score_from_logits(logits, splits=10, seed=2020):
    """IS = exp E_x KL(p(y|x) || p(y)) of (N, C) logits, torch-fidelity's formula."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    r = isc_features_to_metric(torch.as_tensor(logits), splits, True, seed)
    return r["inception_score_mean"], r["inception_score_std"]


def kid(generated, real, classifier, subsets=100, subset_size=None, seed=2020):
    """(mean, std) of KID (polynomial-kernel MMD² over the classifier's features)."""
    r = fidelity(generated, real, classifier, fid=False, kid=True, kid_subsets=subsets,
                 kid_subset_size=subset_size, seed=seed)
    return r["kid_mean"], r["kid_std"]


# --------------------------------------------------------------------------- video
def _frames(videos, name):
    v = _uint8(videos, name, ndim=5)
    return v.reshape(-1, *v.shape[2:])


def fid_img(generated_videos, real_videos, classifier) -> float:
    """FID-img: FID over every frame of every clip (TFGAN, Table 2)."""
    return fid(_frames(generated_videos, "generated_videos"), _frames(real_videos, "real_videos"),
               classifier)


@torch.no_grad()
def video_layers(video_net, videos, batch_size=128) -> dict:
    """{"features": (N, D), "logits": (N, C)} of the video net for uint8 (N, T, H, W, 3)."""
    def run(chunk):
        out = video_net(to_tensor(chunk))
        return {"features": out["features"], "logits": video_net.all_logits(out)}
    videos = _uint8(videos, "videos", ndim=5)
    with evaluating(video_net):
        return {k: v.numpy() for k, v in _batched(run, videos, batch_size).items()}


def fid_vid(generated_videos, real_videos, video_net) -> float:
    """FID-vid: Fréchet distance of the video net's pooled clip features."""
    return frechet_distance(video_layers(video_net, generated_videos)["features"],
                            video_layers(video_net, real_videos)["features"])


def fvd(generated_videos, real_videos, video_net) -> float:
    """FVD: Fréchet distance of the video net's logit layer (FVD uses I3D's logits)."""
    return frechet_distance(video_layers(video_net, generated_videos)["logits"],
                            video_layers(video_net, real_videos)["logits"])


# --------------------------------------------------------------------------- CLIP
def clip_similarity(clip, pixels, captions) -> np.ndarray:
    """Per-sample cosine similarity in [-1, 1] of image (or mean over a video's frames) and
    caption embeddings of the world CLIP."""
    pixels = np.asarray(pixels)
    if len(pixels) != len(captions):
        raise ValueError(f"{len(pixels)} images/videos but {len(captions)} captions")
    txt = clip.embed_captions(list(captions))
    if pixels.ndim == 5:
        n, t = pixels.shape[:2]
        img = clip.embed_images(_uint8(pixels, "videos").reshape(n * t, *pixels.shape[2:]))
        return (img.reshape(n, t, -1) * txt[:, None, :]).sum(-1).mean(1).numpy()
    img = clip.embed_images(_uint8(pixels, "images", ndim=4))
    return (img * txt).sum(-1).numpy()


def clipsim(clip, pixels, captions) -> float:
    """CLIPSIM (GODIVA): the mean cosine similarity of generated images/videos and their
    input texts, here with the world CLIP (see the module docstring for its scale)."""
    return float(clip_similarity(clip, pixels, captions).mean())


def clip_rerank(clip, candidates, caption) -> np.ndarray:
    """Indices of ``candidates`` (images or videos for one caption) best first: the
    paper's "generate n, keep the best by CLIP" (Sec. 4.2)."""
    scores = clip_similarity(clip, candidates, [caption] * len(candidates))
    return np.argsort(-scores, kind="stable")


# --------------------------------------------------------------------------- Acc
def attribute_agreement(judge, pixels, captions, per_sample=False) -> dict:
    """Acc: how often the judge's reading of each image / video agrees with the attributes
    its prompt names. One-object prompts are read with the per-object heads. Two-object
    prompts: for images, each object's shape, colour and size must be what the slot heads see
    in the cell the prompt puts it in (its position counts as right when that cell is not
    empty); for videos, each named value must be detected by the presence heads. The
    background always by its head. Returns per-attribute agreement rates, "all" (every named
    attribute agrees: the Acc of our tables), "n" and, with ``per_sample``, "per_sample"
    (bool array: did every named attribute of that sample agree)."""
    pixels = np.asarray(pixels)
    if len(pixels) != len(captions):
        raise ValueError(f"{len(pixels)} images/videos but {len(captions)} captions")
    pred = judge.predict(pixels)
    bit = {k: i for i, k in enumerate(VIDEO_PRESENCE)}
    hits = {a: [] for a in judge.head_names}
    all_ok = []
    for i, text in enumerate(captions):
        parsed = world.parse_caption(text)
        ok = [pred["background"][i] == world.BACKGROUNDS.index(parsed["background"])]
        hits["background"].append(ok[0])
        single = len(parsed["objects"]) == 1
        for obj in parsed["objects"]:
            for a, value in obj.items():
                if a not in judge.head_names or a == "background":
                    continue
                if single:
                    good = pred[a][i] == world.ATTRIBUTE_VALUES[a].index(value)
                elif judge.video:
                    good = pred["presence"][i, bit[(a, value)]] > 0.5
                else:
                    cell = world.POSITIONS.index(obj["position"])
                    if a == "position":
                        good = pred["slot_shape"][i, cell] != 0
                    else:
                        want = world.ATTRIBUTE_VALUES[a].index(value) + 1
                        good = pred[f"slot_{a}"][i, cell] == want
                hits[a].append(bool(good))
                ok.append(bool(good))
        all_ok.append(all(ok))
    out = {a: float(np.mean(v)) for a, v in hits.items() if v}
    out["all"] = float(np.mean(all_ok))
    out["n"] = len(captions)
    if per_sample:
        out["per_sample"] = np.array(all_ok)
    return out


def readout(judges, pixels, captions, video: bool) -> dict:
    """What the judges read in generated (or real) pictures against their prompts: Acc
    ("Acc": every named attribute agrees), each attribute's agreement and CLIPSIM. ``pixels``:
    (N, 1, H, W, 3) images or (N, T, H, W, 3) videos; ``judges`` a
    :class:`~nuwa_lib.evaluation.judges.Judges` (its video network reads videos)."""
    pix = np.asarray(pixels)
    pix = pix if video else pix[:, 0]
    agree = attribute_agreement(judges.video if video else judges.classifier, pix, captions)
    named = ("background", "colour", "shape", "size", "position", "motion")
    return {"Acc": agree["all"], **{a: agree[a] for a in named if a in agree},
            "CLIPSIM": clipsim(judges.clip, pix, captions)}


def accuracy(judge, pixels, captions) -> float:
    """Acc of our tables: the fraction of samples whose every named attribute agrees."""
    return attribute_agreement(judge, pixels, captions)["all"]


# --------------------------------------------------------------------------- SSIM
def _gaussian_window(size=11, sigma=1.5):
    g = torch.exp(-0.5 * ((torch.arange(size, dtype=torch.float64) - size // 2) / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def _unit(x, name):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    x = x.astype(np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name}: float images must be in [0, 1] (or pass uint8)")
    return x


def ssim_per_image(a, b, window=11, sigma=1.5) -> np.ndarray:
    """SSIM (Wang et al. 2004) of image pairs (N, H, W, C), uint8 or floats in [0, 1]:
    Gaussian window (11 px, sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1, valid
    positions only; the mean over positions and channels, per image."""
    a, b = _unit(a, "a"), _unit(b, "b")
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must both be (N, H, W, C), got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < window:
        raise ValueError(f"images of {a.shape[1]}x{a.shape[2]} are smaller than the "
                         f"{window}x{window} SSIM window")
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x = torch.from_numpy(a).permute(0, 3, 1, 2).reshape(-1, 1, *a.shape[1:3])
    y = torch.from_numpy(b).permute(0, 3, 1, 2).reshape(-1, 1, *b.shape[1:3])
    w = _gaussian_window(window, sigma)[None, None]
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    vx = F.conv2d(x * x, w) - mx * mx
    vy = F.conv2d(y * y, w) - my * my
    cxy = F.conv2d(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(a.shape[0], -1).mean(1).numpy()


def ssim(a, b) -> float:
    """Mean SSIM over image pairs (Table 4)."""
    return float(ssim_per_image(a, b).mean())


# --------------------------------------------------------------------------- segmentation
def detected_pa(segmenter, videos, sketches) -> float:
    """Detected PA (Table 6): segment every generated frame with the world segmenter and
    score the pixel accuracy against the input sketch (N, T, H, W)."""
    frames = _frames(videos, "videos")
    sketches = np.asarray(sketches)
    if sketches.shape != np.asarray(videos).shape[:-1]:
        raise ValueError(f"sketches {sketches.shape} must be the videos' (N, T, H, W) "
                         f"{np.asarray(videos).shape[:-1]}")
    return pixel_accuracy(segmenter.predict(frames), sketches.reshape(frames.shape[:-1]))


# --------------------------------------------------------------------------- sanity curves
def is_monotonic(values, increasing=True) -> bool:
    d = np.diff(np.asarray(values, np.float64))
    return bool((d >= 0).all() if increasing else (d <= 0).all())


def fid_sanity_curves(classifier, real_a, real_b, noise_levels, blur_radii, seed=0) -> list:
    """Rows {curve, level, value}: FID (world features) between two disjoint real sets as
    the second is degraded by noise (std on the [0, 1] scale) or blur (radius in px), and
    FID-k with both sets blurred (it should stay near the real-vs-real value)."""
    degraded = (("noise", noise_levels, lambda s: add_noise(real_b, s, seed)),
                ("blur (second set)", blur_radii, lambda k: gaussian_blur(real_b, k)))
    rows = [{"curve": curve, "level": float(x), "value": fid(degrade(x), real_a, classifier)}
            for curve, levels, degrade in degraded for x in levels]
    return rows + [{"curve": "FID-k (both blurred)", "level": float(k),
                    "value": fid(real_b, real_a, classifier, radius=k)} for k in blur_radii]


def video_sanity_curves(video_net, real_a, real_b, fractions, seed=0) -> list:
    """Rows {curve, level, value}: FVD and FID-vid between two disjoint real video sets as a
    growing fraction of each second-set clip's frames is shuffled."""
    ref = video_layers(video_net, real_a)
    rows = []
    for f in fractions:
        got = video_layers(video_net, shuffle_frames(real_b, f, seed))
        rows.append({"curve": "FVD", "level": float(f),
                     "value": frechet_distance(got["logits"], ref["logits"])})
        rows.append({"curve": "FID-vid", "level": float(f),
                     "value": frechet_distance(got["features"], ref["features"])})
    return rows
