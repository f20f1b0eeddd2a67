"""The device-side batch pipeline (augment.augment, the sampler, train.Trainer.train_step) matches its
definition."""
import math

import numpy as np
import pytest
import torch

import augment
import data
import model
import synthetic
import train

NO_AFFINE = dict(degrees=0.0, translate=0.0, scale=(1.0, 1.0))


def images(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 48, 48, generator=g)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


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


def test_the_trainer_warps_with_the_interpolation_its_flag_names(monkeypatch):
    seen = []
    warp = augment.warp
    monkeypatch.setattr(augment, "warp", lambda x, theta, interpolation="bilinear":
                        seen.append(interpolation) or warp(x, theta, interpolation))
    for interpolation in ("nearest", "bilinear"):
        trainer, splits = make_trainer(["--bs", "16", "--interpolation", interpolation])
        trainer.train_step(splits["train"][0][:16], splits["train"][1][:16])
    assert seen == ["nearest", "bilinear"]


def test_random_erasing_blanks_one_rectangle_per_image():
    x = torch.ones(200, 1, 48, 48)
    y = augment.augment(x, gen(5), flip=0.0, erase=1.0, **NO_AFFINE)
    erased = 1 - y.mean((1, 2, 3))
    assert (erased > 0.015).all() and (erased < 0.21).all()
    rows = (y[:, 0] == 0).any(2).sum(1)  # a rectangle: its zero pixels form full rows x columns
    cols = (y[:, 0] == 0).any(1).sum(1)
    assert torch.equal((y[:, 0] == 0).sum((1, 2)), rows * cols)


def make_trainer(extra=(), n=280):
    x, y = synthetic.synthetic_faces(n, seed=0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    splits = {"train": (x, y), "val": (x[:70], y[:70])}
    args = train.parse_args(["--data", "synthetic", "--device", "cpu", *extra])[0]
    return train.Trainer(args, splits, torch.device("cpu")), splits


def test_weighted_sampler_draws_classes_in_proportion_to_the_weights():
    """1/class-count weights: every class is drawn about equally often, however unbalanced the data."""
    labels = torch.tensor([0] * 700 + [1] * 20 + [2] * 100 + [3] * 1500 + [4] * 300 + [5] * 80 + [6] * 300)
    trainer, _ = make_trainer()
    trainer.train_y = labels
    trainer.sample_weights = data.class_weights(labels)
    drawn = torch.cat([labels[trainer.epoch_order()] for _ in range(10)])
    share = torch.bincount(drawn, minlength=7).float() / len(drawn)
    assert torch.allclose(share, torch.full((7,), 1 / 7), atol=0.015)
    assert len(trainer.epoch_order()) == len(labels)  # one epoch = the data set's length, with replacement


def test_shuffle_sampler_is_a_permutation():
    trainer, splits = make_trainer(["--sampler", "shuffle"])
    order = trainer.epoch_order()
    assert torch.equal(torch.sort(order).values, torch.arange(len(splits["train"][1])))


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_fast_train_step_equals_a_plain_per_sample_reference(amp):
    """The device path (gather a uint8 batch, warp it, normalise, step) against the report's way: the
    FERDataset per sample through a DataLoader, each image warped alone with the same draws."""
    trainer, splits = make_trainer(["--amp", amp, "--bs", "16", "--lr", "1e-3"])
    reference = model.build("resnet").to(memory_format=torch.channels_last)  # same kernels as the fast path
    reference.load_state_dict(trainer.net.state_dict())
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-3)
    idx = trainer.epoch_order()[:16]

    # the draws the fast path will make, replayed per sample
    state = trainer.aug_gen.get_state()
    thetas = augment.random_affine(lambda *s: torch.rand(*s, generator=trainer.aug_gen), 16, 0.5, 8.0, 0.2, (0.8, 1.2))
    trainer.aug_gen.set_state(state)

    per_sample = data.FERDataset(*splits["train"], transform=None)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(per_sample, idx.tolist()), batch_size=1)
    xs, ys = [], []
    for k, (x, y) in enumerate(loader):
        pixels = x * data.STD + data.MEAN  # back to [0, 1], warp alone, normalise again
        xs.append(data.normalize(augment.warp(pixels, thetas[k:k + 1], trainer.args.interpolation)))
        ys.append(y)
    x_ref, y_ref = torch.cat(xs), torch.cat(ys)

    torch.manual_seed(123)  # the same dropout masks on both sides
    loss_sum, correct = trainer.train_step(splits["train"][0][idx], splits["train"][1][idx])
    torch.manual_seed(123)
    reference.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
        logits = reference(x_ref.contiguous(memory_format=torch.channels_last))
        ref_loss = torch.nn.functional.cross_entropy(logits.float(), y_ref)
    ref_opt.zero_grad()
    ref_loss.backward()
    ref_opt.step()

    tol = 1e-5 if amp == "off" else 2e-2
    assert math.isclose(loss_sum.item() / 16, ref_loss.item(), rel_tol=tol)
    assert correct.item() == (logits.argmax(1) == y_ref).sum().item()
    for (name, p), q in zip(trainer.net.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3 if amp == "off" else 5e-2, atol=1e-5), name


def test_the_ema_is_the_exponential_average_of_the_weights_with_a_warming_up_decay():
    trainer, splits = make_trainer(["--ema", "0.5", "--bs", "16", "--lr", "1e-3", "--amp", "off"])
    order = trainer.epoch_order()
    for n in range(1, 13):
        ema_before = {k: v.clone() for k, v in trainer.ema_net.state_dict().items()}
        idx = order[(n % 10) * 16:(n % 10 + 1) * 16]
        trainer.train_step(splits["train"][0][idx], splits["train"][1][idx])
        decay = min(0.5, (1 + n) / (10 + n))  # warms up to the --ema decay: 0.18, 0.25, ..., 0.5 from n = 8
        net = trainer.net.state_dict()
        for k, e in trainer.ema_net.state_dict().items():
            if e.is_floating_point():
                assert torch.allclose(e, decay * ema_before[k] + (1 - decay) * net[k], atol=1e-6), (n, k)
            else:
                assert torch.equal(e, net[k]), k  # BatchNorm's batch counter follows the network
    # it lags (the output layer: the only one a first step moves, as it starts at zero)
    assert not torch.allclose(trainer.ema_net.state_dict()["head.4.weight"], net["head.4.weight"])
    assert trainer.eval_net is trainer.ema_net and all(not p.requires_grad for p in trainer.ema_net.parameters())
