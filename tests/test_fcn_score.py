"""Unit tests of benchmarks/fcn_score.py on constructed inputs (fake facades in tmp; no shared data, no network)."""
import dataclasses
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import fcn_score  # noqa: E402


def label_maps(n: int = 3, size: int = 48, seed: int = 0, noise: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 colour label maps (n, 3, size, size), their int64 classes): random 12 x 12 px blocks of the 12
    palette colours, each pixel off by up to +-noise per channel (JPEG-like)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(fcn_score.CLASSES), (n, size // 12, size // 12))
    classes = blocks.repeat(12, axis=1).repeat(12, axis=2)
    colours = fcn_score.PALETTE[classes].astype(np.int64) + rng.integers(-noise, noise + 1, (n, size, size, 3))
    return np.clip(colours, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2), classes


class PaletteNet(nn.Module):
    """A stand-in segmenter that reads its input as a label map: class scores = -(distance to each palette colour)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x + 1) * 127.5  # (B, 3, H, W)
        palette = torch.from_numpy(fcn_score.PALETTE).float()[None, :, :, None, None]  # (1, 12, 3, 1, 1)
        return -((rgb[:, None] - palette) ** 2).sum(2)  # (B, 12, H, W)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A weights file of a seeded, untrained two-level U-Net, and its SHA-256."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "fcn_tiny.pt"
    config = fcn_score.TrainConfig(widths=(4, 8))
    return path, fcn_score.save_weights(path, fcn_score.UNet(config.widths), config, {})


def write_facades(root: Path, n_train: int = 4, n_test: int = 3) -> Path:
    """Fake facades AB JPEGs (64x32: photo | label map) under root/facades/{train,test}."""
    for split, n, seed in [("train", n_train, 1), ("test", n_test, 2)]:
        folder = root / "facades" / split
        folder.mkdir(parents=True)
        maps, _ = label_maps(n, 36, seed)
        maps = torch.from_numpy(maps)[:, :, :32, :32]
        photos = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed),
                               dtype=torch.uint8)
        for i in range(n):
            torchvision.io.write_jpeg(torch.cat([photos[i], maps[i]], 2), str(folder / f"{i + 1}.jpg"), quality=95)
    return root


# ---------------------------------------------------------------------------------------------------------------
# Palette
# ---------------------------------------------------------------------------------------------------------------
def test_palette_mapping_recovers_classes_from_noisy_colours():
    maps, classes = label_maps()
    out = fcn_score.classes_from_label_maps(maps)
    assert out.dtype == np.int64 and out.shape == classes.shape
    np.testing.assert_array_equal(out, classes)
    np.testing.assert_array_equal(fcn_score.classes_from_label_maps(fcn_score.PALETTE.T[None, :, None, :])[0, 0],
                                  np.arange(len(fcn_score.CLASSES)))


def test_palette_mapping_takes_the_nearest_colour():
    # halfway between facade (1, 48, 254) and window (1, 127, 254), a little nearer window
    pixel = np.array([1, 90, 254], np.uint8).reshape(1, 3, 1, 1)
    assert fcn_score.classes_from_label_maps(pixel)[0, 0, 0] == fcn_score.CLASSES.index("window")
    with pytest.raises(ValueError, match="uint8"):
        fcn_score.classes_from_label_maps(pixel.astype(np.float32))


def test_palette_modes_finds_the_palette_of_flat_maps():
    maps, _ = label_maps(n=6, size=96, seed=3, noise=4)  # flat: 5x5 spread <= 8
    modes = fcn_score.palette_modes(maps)
    dist = np.abs(modes[:, None].astype(int) - fcn_score.PALETTE[None].astype(int)).max(-1)  # (12 modes, 12)
    assert sorted(dist.argmin(1).tolist()) == list(range(12))  # one mode per palette colour
    assert dist.min(1).max() <= 2  # the noise is symmetric: the means land on the colours


def test_palette_distance_tells_label_maps_from_photos():
    maps, _ = label_maps()
    photos = np.random.default_rng(0).integers(0, 256, maps.shape, dtype=np.uint8)
    assert fcn_score.palette_distance(maps) < 20 < fcn_score.palette_distance(photos)


# ---------------------------------------------------------------------------------------------------------------
# Score definitions
# ---------------------------------------------------------------------------------------------------------------
def test_perfect_prediction_scores_one():
    _, classes = label_maps()
    hist = fcn_score.confusion_matrix(classes, classes)
    assert fcn_score.scores_from_confusion(hist) == {"per_pixel_acc": 1.0, "per_class_acc": 1.0, "class_iou": 1.0}


def test_known_confusion():
    # true 0 0 0 1, predicted 0 0 1 1: n = [[2, 1], [0, 1]]
    hist = fcn_score.confusion_matrix(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), n=2)
    np.testing.assert_array_equal(hist, [[2, 1], [0, 1]])
    s = fcn_score.scores_from_confusion(hist)
    assert s["per_pixel_acc"] == pytest.approx(3 / 4)
    assert s["per_class_acc"] == pytest.approx((2 / 3 + 1 / 1) / 2)
    assert s["class_iou"] == pytest.approx((2 / (3 + 2 - 2) + 1 / (1 + 2 - 1)) / 2)


def test_a_class_absent_from_the_ground_truth_is_not_averaged_but_its_false_positives_count():
    # true 0 0 1 1, predicted 0 2 1 1: class 2 never occurs in the ground truth
    s = fcn_score.scores_from_confusion(fcn_score.confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), 3))
    assert s["per_pixel_acc"] == pytest.approx(3 / 4)
    assert s["per_class_acc"] == pytest.approx((1 / 2 + 1) / 2)
    assert s["class_iou"] == pytest.approx((1 / 2 + 1) / 2)
    with pytest.raises(ValueError, match="no pixels"):
        fcn_score.scores_from_confusion(np.zeros((3, 3)))


def test_score_runs_the_segmenter_at_its_size_and_compares_at_the_label_size():
    maps, classes = label_maps(size=48)
    assert fcn_score.score(maps, classes, PaletteNet())["per_pixel_acc"] > 0.97  # resized 48 -> 128 -> 48
    wrong = fcn_score.score(maps, np.roll(classes, 1, axis=0), PaletteNet())  # each image, another one's map
    assert wrong["per_pixel_acc"] < 0.3 and wrong["class_iou"] < 0.2
    with pytest.raises(ValueError, match="class maps"):
        fcn_score.score(maps, classes[:2], PaletteNet())


# ---------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------
def test_load_checks_the_sha256(tiny_weights, tmp_path):
    path, digest = tiny_weights
    model = fcn_score.load(path, digest)
    assert isinstance(model, fcn_score.UNet) and not model.training and model.widths == (4, 8)
    corrupted = tmp_path / "corrupted.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        fcn_score.load(corrupted, digest)
    with pytest.raises(ValueError, match="SHA-256"):
        fcn_score.load(path, "0" * 64)


def test_saved_weights_are_float16_and_load_as_the_round_trip(tiny_weights, tmp_path):
    path, digest = tiny_weights
    config = fcn_score.TrainConfig(widths=(4, 8))
    again = fcn_score.save_weights(tmp_path / "again.pt", fcn_score.load(path, digest), config, {})
    assert again == digest  # nothing run-dependent in the file: same weights, same bytes
    ckpt = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    torch.manual_seed(0)
    expected = fcn_score.half_round_trip(fcn_score.UNet((4, 8)))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(fcn_score.load(path, digest)(x), expected(x))


def test_committed_weights_are_small_and_match_their_sha256():
    assert fcn_score.WEIGHTS_PATH.stat().st_size < 2 * 2 ** 20
    model = fcn_score.load()
    assert model.widths == fcn_score.TrainConfig().widths
    ckpt = torch.load(fcn_score.WEIGHTS_PATH, weights_only=True)
    assert ckpt["config"] == dataclasses.asdict(fcn_score.TrainConfig())  # `--train` with the defaults made them
    assert ckpt["palette"] == fcn_score.PALETTE.tolist() and ckpt["input_size"] == fcn_score.INPUT_SIZE


# ---------------------------------------------------------------------------------------------------------------
# Translations
# ---------------------------------------------------------------------------------------------------------------
def test_score_translations_picks_pix2pix_inputs_and_outputs(tmp_path):
    maps, _ = label_maps()
    noise = np.random.default_rng(0).integers(0, 256, maps.shape, dtype=np.uint8)
    np.savez(tmp_path / "translations.npz", inputs=maps, outputs=maps, targets=noise)
    out = fcn_score.score_translations(tmp_path / "translations.npz", PaletteNet())
    assert (out["label_maps"], out["photos"], out["n"]) == ("inputs", "outputs", len(maps))
    assert out["per_pixel_acc"] > 0.97


def test_score_translations_picks_the_cyclegan_direction_from_label_maps(tmp_path):
    maps, _ = label_maps()
    noise = np.random.default_rng(0).integers(0, 256, maps.shape, dtype=np.uint8)
    # b2a: label maps -> "photos" that PaletteNet segments perfectly; a2b: photos -> garbage
    np.savez(tmp_path / "translations.npz", a2b_inputs=noise, a2b_outputs=noise[::-1], a2b_cycle=noise,
             b2a_inputs=maps, b2a_outputs=maps, b2a_cycle=maps, a2b_targets=maps, b2a_targets=noise)
    out = fcn_score.score_translations(tmp_path / "translations.npz", PaletteNet())
    assert (out["label_maps"], out["photos"]) == ("b2a_inputs", "b2a_outputs")
    assert out["per_pixel_acc"] > 0.97
    # the same file with the domains swapped (A = label maps) picks a2b
    np.savez(tmp_path / "swapped.npz", a2b_inputs=maps, a2b_outputs=maps, b2a_inputs=noise, b2a_outputs=noise)
    out = fcn_score.score_translations(tmp_path / "swapped.npz", PaletteNet())
    assert (out["label_maps"], out["photos"]) == ("a2b_inputs", "a2b_outputs")


def test_score_translations_refuses_photo_to_label_translations(tmp_path):
    maps, _ = label_maps()
    noise = np.random.default_rng(0).integers(0, 256, maps.shape, dtype=np.uint8)
    np.savez(tmp_path / "translations.npz", inputs=noise, outputs=maps, targets=maps)  # pix2pix --direction AtoB
    with pytest.raises(ValueError, match="no labels->photo"):
        fcn_score.score_translations(tmp_path / "translations.npz", PaletteNet())


# ---------------------------------------------------------------------------------------------------------------
# Data, calibration, training, command line
# ---------------------------------------------------------------------------------------------------------------
def test_derangement_moves_every_image():
    for n in (2, 5, 106):
        perm = fcn_score.derangement(n, seed=n)
        assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n))


def test_read_split_and_calibration_rows(tmp_path, tiny_weights):
    root = write_facades(tmp_path)
    photos, maps = fcn_score.read_split(root / "facades" / "test", 24)
    assert photos.shape == maps.shape == (3, 3, 24, 24) and photos.dtype == torch.uint8
    assert fcn_score.palette_distance(maps) < 20 < fcn_score.palette_distance(photos)
    cal = fcn_score.calibrate(root, 24, fcn_score.load(*tiny_weights))
    assert (cal["size"], cal["n"]) == (24, 3) and len(cal["rows"]) == 5
    assert all(set(r) == {"per_pixel_acc", "per_class_acc", "class_iou"} for r in cal["rows"].values())


def test_train_is_seeded(tmp_path):
    root = write_facades(tmp_path)
    config = fcn_score.TrainConfig(batch_size=2, widths=(4, 8), max_steps=2)
    a, _ = fcn_score.train(root, config, log=False)
    b, _ = fcn_score.train(root, config, log=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert not a.training


def test_cli_scores_a_translations_npz(tmp_path, tiny_weights, capsys, monkeypatch):
    """`python benchmarks/fcn_score.py RUN_DIR --weights W --sha256 S`, run as __main__ in this process."""
    maps, _ = label_maps(n=2, size=36)
    np.savez(tmp_path / "translations.npz", inputs=maps, outputs=maps[::-1].copy(), targets=maps)
    path, digest = tiny_weights
    script = ROOT / "benchmarks" / "fcn_score.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path), "--weights", str(path), "--sha256", digest])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # main() takes one thread; the later tests keep this process's count
    out = json.loads(capsys.readouterr().out)["fcn_score"]
    assert out["label_maps"] == "inputs" and 0 <= out["per_pixel_acc"] <= 1
