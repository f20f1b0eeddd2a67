"""Training augmentation as tensor ops on whole batches on the device (after airbench): the report's flip +
RandomAffine, and random erasing. Every random draw comes from a generator on the batch's device, so nothing
crosses between host and device inside a training step. (Test-time augmentation is model.tta_views.)
"""
import math

import torch
import torch.nn.functional as F


def augment(x, generator, flip=0.5, degrees=8.0, translate=0.2, scale=(0.8, 1.2), erase=0.0,
            interpolation="nearest"):
    """The report's v2 pipeline on a whole batch at once: random horizontal flip, then RandomAffine(degrees,
    translate, scale) with black fill, then optional random erasing. x: float [B, 1, H, W] in [0, 1].
    All draws come from `generator` on x's device, so nothing crosses to the host. `interpolation`:
    "nearest" is RandomAffine's own default, which the report ran (every output pixel is one input pixel, as
    sharp as the test faces); "bilinear" blurs each training face a little (docs/differences.md)."""
    rand = lambda *shape: torch.rand(*shape, device=x.device, generator=generator)
    theta = random_affine(rand, x.shape[0], flip, degrees, translate, scale)
    x = warp(x, theta, interpolation)
    return random_erase(x, rand, erase) if erase > 0 else x


def random_affine(rand, b, flip, degrees, translate, scale):
    """[B, 2, 3] random matrices: rotation within +-degrees, zoom within scale, shift within +-translate of
    the size, mirrored with probability flip."""
    angle = (rand(b) * 2 - 1) * (degrees * torch.pi / 180)
    zoom = scale[0] + rand(b) * (scale[1] - scale[0])
    shift = (rand(b, 2) * 2 - 1) * translate * 2  # a fraction of the size; normalised coordinates span 2
    mirror = torch.where(rand(b) < flip, -1.0, 1.0)
    return affine_matrix(angle, zoom, shift, mirror)


def affine_matrix(angle, zoom, shift, mirror):
    """[B, 2, 3] matrices for affine_grid, which maps output to input coordinates (normalised to [-1, 1]): the
    inverse of "mirror (-1), rotate (radians), zoom (>1 enlarges), shift [B, 2]", so the sampled picture is
    the transformed one."""
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx, ty = shift[:, 0], shift[:, 1]
    return torch.stack([torch.stack([cos * mirror, sin * mirror, -(cos * tx + sin * ty) * mirror], 1),
                        torch.stack([-sin, cos, sin * tx - cos * ty], 1)], 1)


def warp(x, theta, interpolation="bilinear"):
    """Resampling of x [B, 1, H, W] by theta [B, 2, 3] ("bilinear" or "nearest"); outside the image is black
    (0)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)


def random_erase(x, rand, p, area=(0.02, 0.2), ratio=(0.3, 3.3)):
    """RandomErasing (Zhong et al. 2017) as a batched mask: with probability p, a rectangle of the given area
    fraction and aspect ratio is set to 0 (black), as torchvision's RandomErasing(value=0)."""
    b, _, h, w = x.shape
    s = (area[0] + rand(b) * (area[1] - area[0])) * h * w
    r = torch.exp(math.log(ratio[0]) + rand(b) * (math.log(ratio[1]) - math.log(ratio[0])))
    eh, ew = (s * r).sqrt().clamp(max=h), (s / r).sqrt().clamp(max=w)
    top, left = rand(b) * (h - eh), rand(b) * (w - ew)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    box = ((ys >= top[:, None, None]) & (ys < (top + eh)[:, None, None]) &
           (xs >= left[:, None, None]) & (xs < (left + ew)[:, None, None]) & (rand(b) < p)[:, None, None])
    return x.masked_fill(box[:, None], 0.0)
