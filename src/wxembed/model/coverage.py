"""Echo coverage: the share of an image at or above reflectivity thresholds, and probability
matching, which gives a smooth reconstruction the coverage it should have.

A reconstruction that minimises the squared error is the conditional mean of the images its code
could stand for: where a 50-number code cannot say where the cells of a scattered outbreak are,
it paints a weak, smooth field, and almost nothing reaches 35 dBZ (an echo-area bias near 0.1 at
20 dBZ and a fractions skill score near 0 at 35 dBZ, for PCA and the networks alike).
:func:`match_coverage` is the meteorologists' remedy (probability matching, as in Ebert 2001's
probability-matched ensemble mean): a monotone remapping of each image's values such that the
share of pixels at or above each threshold equals a wanted share, keeping the field's spatial
order. So the strongest echo lands where the smooth field is highest, and the echo area is right.

The fast network carries the exact coverage of each image in its embedding
(:attr:`wxembed.model.fast.FastConfig.coverage`), so its matched decoding needs nothing else,
and a search can weigh a difference in coverage (``search_similar(coverage_weight=1)``) to find
hours with as much weather, not calm hours that happen to be near in pixel distance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def coverage(x: Tensor, thresholds: Tensor) -> Tensor:
    """(B, 1, ny, nx) or (B, ny, nx) images -> (B, k): the share of each image's pixels at or
    above each of the ``k`` thresholds (same units as the images)."""
    flat = x.reshape(x.shape[0], -1, 1)
    return (flat >= thresholds.to(flat)).float().mean(1)


def match_coverage(y: Tensor, shares: Tensor, thresholds: Tensor, floor: float = 0.0) -> Tensor:
    """Probability matching: ``y`` (B, ...) remapped, image by image, by a monotone
    piecewise-linear function so that about ``shares[b, j]`` of its pixels lie at or above
    ``thresholds[j]`` (ascending, same units as ``y``, above ``floor``).

    The knots send ``floor`` to ``floor`` and the value of the pixel ranked ``shares[b, j] * n``
    from the top to ``thresholds[j]``; above the last knot values are shifted, not stretched. A
    share of 0 leaves every pixel below its threshold. Values at or below ``floor`` (no echo)
    stay as they are, so where ``y`` has fewer echo pixels than wanted the coverage falls short
    rather than appearing in random places. Returns a float32 tensor of ``y``'s shape.
    """
    b, k = y.shape[0], len(thresholds)
    flat = y.reshape(b, -1).float()
    n = flat.shape[1]
    t = thresholds.to(flat)
    top = flat.sort(dim=1, descending=True).values  # (B, n)
    want = (shares.to(flat).clamp(0.0, 1.0) * n).round().long()  # pixels at or above each
    v = top.gather(1, (want - 1).clamp(0, n - 1))  # (B, k): the value that should reach t_j
    eps = 1e-6 * (1.0 + top[:, :1].abs())
    v = torch.where(want > 0, v, top[:, :1] + eps)  # none wanted: above the image's maximum
    knots = [torch.full_like(v[:, 0], floor)]
    for j in range(k):  # strictly increasing knots
        knots.append(torch.maximum(v[:, j], knots[-1] + eps[:, 0]))
    xk = torch.stack(knots, 1)  # (B, k + 1)
    yk = torch.cat([t.new_tensor([floor]), t]).expand(b, k + 1)
    seg = (torch.searchsorted(xk.contiguous(), flat.contiguous(), right=True) - 1).clamp(0, k)
    x0, y0 = xk.gather(1, seg), yk.gather(1, seg)
    x1 = xk.gather(1, (seg + 1).clamp(max=k))
    y1 = yk.gather(1, (seg + 1).clamp(max=k))
    slope = torch.where(seg < k, (y1 - y0) / (x1 - x0), torch.ones_like(x0))
    out = y0 + slope * (flat - x0)
    out = torch.where(flat > floor, out, flat)
    return out.reshape(y.shape)


def match_fields(fields, truth, thresholds_dbz) -> np.ndarray:
    """dBZ ``fields`` (n, ny, nx) probability-matched to the coverage of dBZ ``truth`` (same
    shape; NaN = no data, counted as no echo) at ``thresholds_dbz``: what a code given the
    truth's exact coverage numbers can do (the baselines' matched variant)."""
    t = torch.tensor([float(v) for v in thresholds_dbz])
    shares = coverage(torch.from_numpy(np.nan_to_num(np.asarray(truth, np.float32), nan=0.0)), t)
    y = torch.from_numpy(np.maximum(np.asarray(fields, np.float32), 0.0))
    return match_coverage(y, shares, t).numpy()


__all__ = ["coverage", "match_coverage", "match_fields"]
