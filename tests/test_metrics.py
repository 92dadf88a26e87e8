"""Specifications of the metrics (Sec. 4): closed forms, hand-made cases, torch-fidelity."""
import numpy as np
import pytest
import torch
from task_helpers import PerfectReader

from nuwa_lib.data import world
from nuwa_lib.evaluation import judge_nets, judges as J, metrics as M, segmentation as S


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return judge_nets.WorldClassifier(width=4, feature_dim=6).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images():
    a = J.world_data("test", 24, seed=0).pixels
    b = J.world_data("test", 24, seed=0, start=24).pixels
    return a, b


# ----------------------------------------------------------------------------- Fréchet
def test_frechet_distance_of_identical_feature_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(50, 5))
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    # Covariances sharing eigenvectors: tr (S1 S2)^(1/2) = sum sqrt(d1 * d2).
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    d1, d2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 0.1, 1.5, 3.0])
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    expected = ((mu1 - mu2) ** 2).sum() + (d1 + d2 - 2 * np.sqrt(d1 * d2)).sum()
    assert M.frechet_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    assert M.frechet_from_stats([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)


def test_frechet_distance_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, size=(20000, 2))
    b = rng.normal(1.0, 2.0, size=(20000, 2))
    assert M.frechet_distance(a, b) == pytest.approx(2 * 1 + 2 * 1, rel=0.03)


def test_frechet_needs_matching_two_dimensional_features():
    with pytest.raises(ValueError, match="N >= 2"):
        M.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="do not match"):
        M.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


# ----------------------------------------------------------------------------- torch-fidelity
def test_torch_fidelity_fid_agrees_with_the_plain_frechet_distance(classifier, images):
    a, b = images
    via_fidelity = M.fid(a, b, classifier)
    plain = M.frechet_distance(classifier.predict(a)["features"], classifier.predict(b)["features"])
    assert via_fidelity == pytest.approx(plain, rel=1e-4, abs=1e-6)
    assert M.fid(a, a, classifier) == pytest.approx(0.0, abs=1e-6)


def test_fid_k_blurs_both_sets(classifier, images):
    a, b = images
    got = M.fid_k(a, b, classifier, radii=(0, 2))
    assert got[0] == pytest.approx(M.fid(a, b, classifier))
    assert got[2] == pytest.approx(M.fid(M.gaussian_blur(a, 2), M.gaussian_blur(b, 2), classifier))


def test_registration_is_idempotent_and_replaces_a_stale_class():
    from torch_fidelity import registry

    name = M.register_world_extractor()
    cls = registry.FEATURE_EXTRACTORS_REGISTRY[name]
    assert M.register_world_extractor() == name
    assert registry.FEATURE_EXTRACTORS_REGISTRY[name] is cls

    class Stale(cls):     # what a reloaded module leaves behind
        pass

    registry.FEATURE_EXTRACTORS_REGISTRY[name] = Stale
    M.register_world_extractor()
    assert registry.FEATURE_EXTRACTORS_REGISTRY[name] is cls


def test_metrics_never_touch_the_network(classifier, images, monkeypatch):
    import socket
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a metric tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    a, b = images
    out = M.fidelity(a, b, classifier, fid=True, isc=True, kid=True, isc_splits=2,
                     kid_subsets=3, kid_subset_size=10)
    assert set(out) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std"}


def test_extractor_loads_a_classifier_checkpoint(tmp_path, classifier, images):
    jc = judge_nets.JudgesConfig(classifier=judge_nets.ClassifierConfig(width=4, feature_dim=6))
    path = J.save_judge(tmp_path / "c.pt", "classifier", jc, classifier, {})
    assert M._resolve_judge(str(path)).state_dict().keys() == classifier.state_dict().keys()
    with pytest.raises(ValueError, match="neither a live judge"):
        M._resolve_judge("nowhere.pt")


def test_is_of_uniform_logits_is_one():
    mean, std = M.inception_score_from_logits(torch.zeros(40, 7), splits=4)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_is_of_confident_balanced_predictions_is_the_class_count():
    logits = torch.full((60, 6), -1e4)
    logits[torch.arange(60), torch.arange(60) % 6] = 0.0
    mean, _ = M.inception_score_from_logits(logits, splits=1)
    assert mean == pytest.approx(6.0, rel=1e-6)


def test_kid_subset_larger_than_a_set_is_a_clear_error(classifier, images):
    a, b = images
    with pytest.raises(ValueError, match=r"kid_subset_size=30 is larger than the sets .*24.*use at most 24"):
        M.kid(a, b, classifier, subset_size=30)


def test_inputs_must_be_uint8_images(classifier, images):
    a, _ = images
    with pytest.raises(ValueError, match="uint8"):
        M.fid(a.astype(np.float32), a, classifier)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        M.fid(a[0], a, classifier)


# ----------------------------------------------------------------------------- blur, noise, frames
def test_blur_radius_zero_is_the_identity(images):
    a, _ = images
    assert np.array_equal(M.gaussian_blur(a, 0), a)


def test_blur_keeps_constant_images_and_smooths_others(images):
    flat = np.full((2, 32, 32, 3), 77, np.uint8)
    assert np.array_equal(M.gaussian_blur(flat, 8), flat)
    a, _ = images
    assert M.gaussian_blur(a, 2).astype(float).std() < a.astype(float).std()
    assert M.gaussian_blur(a[:, :10, :7], 8).shape == (24, 10, 7, 3)   # radius wider than image


def test_shuffled_frames_move_and_keep_the_frame_set():
    v = np.arange(2 * 4, dtype=np.uint8).reshape(2, 4, 1, 1, 1).repeat(3, -1)
    assert np.array_equal(M.shuffle_frames(v, 0.0), v)
    s = M.shuffle_frames(v, 1.0, seed=3)
    assert (s[:, :, 0, 0, 0] != v[:, :, 0, 0, 0]).all()
    assert (np.sort(s[:, :, 0, 0, 0], 1) == v[:, :, 0, 0, 0]).all()


# ----------------------------------------------------------------------------- SSIM
def test_ssim_of_an_image_with_itself_is_one(images):
    a, _ = images
    assert M.ssim(a, a) == pytest.approx(1.0)
    assert M.ssim(a, M.add_noise(a, 0.2)) < 0.9


def test_ssim_of_two_constant_images_matches_the_hand_computation():
    a, b = np.full((1, 16, 16, 3), 0.2), np.full((1, 16, 16, 3), 0.6)
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)    # variances are 0
    assert M.ssim(a, b) == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- segmentation
def test_pa_and_fwiou_on_a_hand_made_map():
    target = np.array([[0, 0, 0, 0],
                       [0, 0, 1, 1],
                       [0, 0, 1, 1],
                       [2, 2, 2, 2]])
    pred = np.array([[0, 0, 0, 0],
                     [0, 0, 1, 1],
                     [0, 1, 1, 1],
                     [2, 2, 0, 2]])
    # 14 of 16 pixels right. IoU: class 0 = 7/9 (8 target, 8 predicted, 7 shared),
    # class 1 = 4/5, class 2 = 3/4; frequencies 8/16, 4/16, 4/16.
    assert S.pixel_accuracy(pred, target) == pytest.approx(14 / 16)
    assert S.fwiou(pred, target, 3) == pytest.approx(0.5 * 7 / 9 + 0.25 * 4 / 5 + 0.25 * 3 / 4)
    assert S.mean_iou(pred, target, 3) == pytest.approx((7 / 9 + 4 / 5 + 3 / 4) / 3)
    assert S.fwiou(target, target, 3) == S.pixel_accuracy(target, target) == 1.0


def test_segmentation_metrics_check_shapes_and_labels():
    with pytest.raises(ValueError, match="differ in shape"):
        S.pixel_accuracy(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside 0..2"):
        S.fwiou(np.full((2, 2), 5), np.zeros((2, 2)), 3)


def test_detected_pa_segments_every_frame_against_the_sketch():
    class Oracle:       # "segments" a frame by reading the label stored in its red channel
        def predict(self, frames):
            return frames[..., 0].astype(np.uint8)

    sketches = np.random.default_rng(0).integers(0, 9, size=(2, 3, 4, 4))
    videos = np.repeat(sketches[..., None], 3, -1).astype(np.uint8)
    assert M.detected_pa(Oracle(), videos, sketches) == 1.0
    videos[0, 0] = 0
    assert M.detected_pa(Oracle(), videos, sketches) == pytest.approx(
        1 - (sketches[0, 0] != 0).sum() / sketches.size)


# ----------------------------------------------------------------------------- Acc and CLIPSIM
def test_acc_is_one_for_a_perfect_reader_and_names_what_disagrees():
    data = J.world_data("test", 12, seed=0)
    assert M.attribute_agreement(PerfectReader(data.scenes), data.pixels, data.captions)["all"] == 1.0
    wrong = [c.replace(" on grass", " on sand") if c.endswith("on grass") else
             c.rsplit(" ", 1)[0] + " grass" if c.endswith(" on sand") else c for c in data.captions]
    got = M.attribute_agreement(PerfectReader(data.scenes), data.pixels, wrong)
    changed = np.mean([a != b for a, b in zip(wrong, data.captions)])
    assert got["background"] == pytest.approx(1 - changed) and got["shape"] == 1.0


def test_acc_binds_attributes_to_objects_in_two_object_prompts():
    scene = world.Scene("water", 0, (world.Obj("circle", "red", "large", "left", 8.0, 16.0),
                                     world.Obj("square", "blue", "small", "right", 25.0, 16.0)))
    reader, img = PerfectReader([scene]), np.zeros((1, 32, 32, 3), np.uint8)
    right = world.caption(scene)
    swapped = right.replace("red circle", "blue circle").replace("blue square", "red square")
    assert M.attribute_agreement(reader, img, [right])["all"] == 1.0
    got = M.attribute_agreement(reader, img, [swapped])
    assert got["colour"] == 0.0 and got["shape"] == 1.0 and got["all"] == 0.0


def test_clipsim_is_the_mean_cosine_and_averages_video_frames():
    class Stub:
        def embed_images(self, x):
            return torch.nn.functional.normalize(torch.as_tensor(x[:, 0, 0, :2], dtype=torch.float32), dim=1)

        def embed_captions(self, captions):
            return torch.tensor([[1.0, 0.0]] * len(captions))

    imgs = np.zeros((2, 1, 1, 3), np.uint8)
    imgs[0, 0, 0, :2] = (1, 0)    # cosine 1
    imgs[1, 0, 0, :2] = (0, 1)    # cosine 0
    assert M.clipsim(Stub(), imgs, ["x", "y"]) == pytest.approx(0.5)
    assert M.clipsim(Stub(), imgs[None], ["x"]) == pytest.approx(0.5)     # one 2-frame video
    assert M.clip_rerank(Stub(), imgs[::-1], "x").tolist() == [1, 0]


def test_metric_names_say_which_networks_they_use():
    assert "world" in M.METRIC_NAMES["fid"] and "world" in M.METRIC_NAMES["clipsim"]
    assert set(M.FID_RADII) == {0, 1, 2, 4, 8}
    assert world.N_SEG_CLASSES == 9
