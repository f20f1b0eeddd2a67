"""augment.py: the report's flip + RandomAffine and random erasing, batched on the device."""

import pytest
import torch

import augment


def images(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 48, 48, generator=g)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


NO_AFFINE = dict(degrees=0.0, translate=0.0, scale=(1.0, 1.0))


def test_zero_rotation_translation_scale_and_no_flip_is_the_identity():
    x = images()
    y = augment.augment(x, gen(), flip=0.0, **NO_AFFINE)
    assert torch.allclose(y, x, atol=1e-5)


def test_a_flip_flips():
    x = images()
    y = augment.augment(x, gen(), flip=1.0, **NO_AFFINE)
    assert torch.allclose(y, x.flip(-1), atol=1e-5)


def test_flip_probability_is_respected():
    x = images(2000)
    y = augment.augment(x, gen(1), flip=0.5, **NO_AFFINE)
    flipped = (y - x.flip(-1)).abs().flatten(1).max(1).values < 1e-5
    assert 0.44 < flipped.float().mean() < 0.56


def test_outputs_keep_shape_dtype_and_range():
    x = images(64)
    for erase in (0.0, 1.0):
        y = augment.augment(x, gen(2), erase=erase)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1


def test_translation_moves_content_by_the_drawn_pixels_and_fills_black():
    x = torch.zeros(1, 1, 48, 48)
    x[..., 20:28, 20:28] = 1
    shift_right = torch.tensor([[[1.0, 0.0, -2 * 6 / 48], [0.0, 1.0, 0.0]]])  # 6 px: output(x) = input(x - 6)
    y = augment.warp(x, shift_right)
    assert torch.allclose(y[..., 20:28, 26:34], torch.ones(1, 1, 8, 8), atol=1e-5)
    assert y.sum().item() == pytest.approx(64, abs=1e-3)
    edge = augment.warp(torch.ones(1, 1, 48, 48), shift_right)
    assert edge[..., :, :6].abs().max() < 1e-4  # what comes in from outside is black


def test_rotation_and_zoom_stay_within_their_ranges():
    """A centred bright square: its area scales with zoom^2, whatever the rotation and shift."""
    x = torch.zeros(500, 1, 48, 48)
    x[..., 16:32, 16:32] = 1
    # bilinear: its pixel sums track the area smoothly (nearest's count whole pixels, off by an edge's worth)
    y = augment.augment(x, gen(3), flip=0.0, degrees=8.0, translate=0.0, scale=(0.8, 1.2), interpolation="bilinear")
    area = y.sum((1, 2, 3)) / 256
    assert area.min() > 0.8 ** 2 - 0.05 and area.max() < 1.2 ** 2 + 0.05
    assert area.std() > 0.1  # it really varies


def test_batched_warp_equals_warping_each_image_alone():
    x = images(8)
    theta = augment.random_affine(lambda *s: torch.rand(*s, generator=gen(4)), 8, 0.5, 8.0, 0.2, (0.8, 1.2))
    batched = augment.warp(x, theta)
    singles = torch.cat([augment.warp(x[i:i + 1], theta[i:i + 1]) for i in range(8)])
    assert torch.allclose(batched, singles, atol=1e-6)


def test_nearest_interpolation_keeps_every_pixel_one_of_the_inputs_as_randomaffine_does():
    """torchvision's RandomAffine (the report's) defaults to nearest: a warped face holds only grey levels of
    the original and black, as sharp as an unwarped test face; bilinear mixes neighbours into new levels."""
    x = (torch.randint(0, 256, (4, 1, 48, 48), generator=gen(6)) / 255.0)
    for interpolation, only_input_levels in (("nearest", True), ("bilinear", False)):
        y = augment.augment(x, gen(7), interpolation=interpolation)
        for xi, yi in zip(x, y):
            levels = torch.cat([xi.flatten(), torch.zeros(1)])
            inside = torch.isclose(yi.flatten()[:, None], levels[None]).any(1)
            assert bool(inside.all()) is only_input_levels
    # the same draws move the face the same way, whichever resampling
    square = torch.zeros(1, 1, 48, 48)
    square[..., 16:32, 16:32] = 1
    near, bil = (augment.augment(square, gen(8), interpolation=i) for i in ("nearest", "bilinear"))
    assert (near - bil).abs().mean() < 0.05 and near.sum().item() == pytest.approx(bil.sum().item(), rel=0.1)


def test_random_erasing_blanks_one_rectangle_per_image():
    x = torch.ones(200, 1, 48, 48)
    y = augment.augment(x, gen(5), flip=0.0, erase=1.0, **NO_AFFINE)
    erased = 1 - y.mean((1, 2, 3))
    assert (erased > 0.015).all() and (erased < 0.21).all()
    rows = (y[:, 0] == 0).any(2).sum(1)  # a rectangle: its zero pixels form full rows x columns
    cols = (y[:, 0] == 0).any(1).sum(1)
    assert torch.equal((y[:, 0] == 0).sum((1, 2)), rows * cols)
