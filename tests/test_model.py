"""The two autoencoders: parameter counts, shapes, crop/pad, errors, a few training steps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wxembed.errors import ModelError, WxembedError
from wxembed.grid import HRRR_CONUS
from wxembed.model import (
    FastAutoencoder,
    FastConfig,
    SeedAutoencoder,
    SeedConfig,
    build_model,
    count_parameters,
    logcosh,
    normalise_raw,
    weighted_logcosh,
)
from wxembed.model.common import centre_crop_box
from wxembed.model.losses import logcosh_csi, soft_csi_loss

HRRR = HRRR_CONUS.shape  # (1059, 1799)
COARSE8 = HRRR_CONUS.coarsen(8).shape  # (132, 224)


def blobs(batch: int, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(batch, 1, ny, nx) in [0, 1]: a few Gaussian cells over zero."""
    g = torch.Generator().manual_seed(seed)
    ny, nx = shape
    yy = torch.arange(ny, dtype=torch.float32)[:, None]
    xx = torch.arange(nx, dtype=torch.float32)[None, :]
    out = torch.zeros(batch, 1, ny, nx)
    for b in range(batch):
        for _ in range(4):
            cy, cx = (torch.rand(2, generator=g) * torch.tensor([ny, nx])).tolist()
            w = 3 + 5 * float(torch.rand(1, generator=g))
            cell = (0.5 + 0.5 * float(torch.rand(1, generator=g))) * torch.exp(
                -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w * w)
            )
            out[b, 0] = torch.maximum(out[b, 0], cell)
    return out


# ---- seed network --------------------------------------------------------------------------


def test_seed_default_on_hrrr_has_exactly_969123_parameters():
    model = build_model("seed", HRRR)
    assert model.config == SeedConfig(num_layers=4, pool_size=4, num_filters=4, num_dense=50)
    assert count_parameters(model) == 969_123


def test_seed_without_dense_bottleneck_embeds_the_flattened_conv_output():
    model = build_model("seed", HRRR, num_dense=0)
    assert model.embedding_dim == 128 * 4 * 7
    assert count_parameters(model) == 969_123 - 179_250 - 182_784


def test_seed_crops_17_18_rows_and_4_3_columns_on_hrrr():
    model = build_model("seed", HRRR)
    assert (model.crop_top, model.crop_bottom, model.crop_left, model.crop_right) == (17, 18, 4, 3)
    assert model.crop_shape == (1024, 1792)
    assert centre_crop_box(HRRR, 256) == ((17, 18), (4, 3))
    x = torch.arange(HRRR[0] * HRRR[1], dtype=torch.float32).reshape(1, 1, *HRRR)
    torch.testing.assert_close(model.crop(x), x[..., 17 : 1059 - 18, 4 : 1799 - 3])


def test_seed_reconstructs_full_hrrr_shape_with_zeros_in_the_cropped_margins():
    model = build_model("seed", HRRR).eval()
    with torch.no_grad():
        z = model.encode(torch.rand(1, 1, *HRRR))
        torch.nn.init.constant_(model.decoder_convs[-2].bias, 1.0)  # output > 0 everywhere inside
        y = model.decode(z)
    assert z.shape == (1, 50)
    assert y.shape == (1, 1, *HRRR)
    inside = y[..., 17 : 1059 - 18, 4 : 1799 - 3]
    assert bool((inside > 0).all())
    assert float(y.abs().sum()) == pytest.approx(float(inside.abs().sum()))


@pytest.mark.parametrize(
    ("shape", "num_layers"), [((66, 112), 2), ((1226 // 4, 760 // 4), 3), ((67, 101), 1)]
)
def test_seed_output_shape_equals_input_shape_on_odd_grids(shape, num_layers):
    model = build_model("seed", shape, num_layers=num_layers)
    x = torch.rand(2, 1, *shape)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (2, 50)


def test_seed_too_deep_for_the_grid_raises_model_error_naming_grid_and_values():
    with pytest.raises(ModelError, match=r"1059 x 1799") as err:
        build_model("seed", HRRR, num_layers=6)
    assert "num_layers=6" in str(err.value) and "4096" in str(err.value)
    with pytest.raises(ModelError, match=r"132 x 224"):
        build_model("seed", COARSE8)  # 4**4 = 256 > 132
    assert issubclass(ModelError, WxembedError)


def _seed_layers(model) -> list[str]:
    """Every leaf layer of a seed network in order, with its padding where it pads itself."""
    out = []
    for name, module in model.named_modules():
        if not list(module.children()):
            same = getattr(module, "_same", None)
            out.append(f"{name} {module!r}" + (f" pad={same}" if same else ""))
    return out


def test_seed_network_is_the_original_layer_for_layer():
    """The original Keras design, pinned: conv kernel 4 with TensorFlow "same" padding (1 before,
    2 after), ReLU, max-pooling by 4, a linear 50-number code, ReLU after the dense decoder
    layer, nearest-neighbour upsampling, a 3 x 3 output convolution and a final ReLU."""
    model = build_model("seed", HRRR)
    conv = "SameConv2d({}, {}, kernel_size=(4, 4), stride=(1, 1)) pad=(1, 2, 1, 2)"
    pool = "MaxPool2d(kernel_size=4, stride=4, padding=0, dilation=1, ceil_mode=False)"
    up = "Upsample(scale_factor=4.0, mode='nearest')"
    expected = []
    for i, (c_in, c_out) in enumerate([(1, 16), (16, 32), (32, 64), (64, 128)]):
        expected += [f"encoder_convs.{3 * i} " + conv.format(c_in, c_out)]
        expected += [f"encoder_convs.{3 * i + 1} ReLU()", f"encoder_convs.{3 * i + 2} {pool}"]
    expected += [
        "to_embedding Linear(in_features=3584, out_features=50, bias=True)",
        "from_embedding.0 Linear(in_features=50, out_features=3584, bias=True)",
        "from_embedding.1 ReLU()",
    ]
    for i, (c_in, c_out) in enumerate([(128, 128), (128, 64), (64, 32), (32, 16)]):
        expected += [f"decoder_convs.{3 * i} " + conv.format(c_in, c_out)]
        expected += [f"decoder_convs.{3 * i + 1} ReLU()", f"decoder_convs.{3 * i + 2} {up}"]
    expected += [
        "decoder_convs.12 SameConv2d(16, 1, kernel_size=(3, 3), stride=(1, 1)) pad=(1, 1, 1, 1)",
        "decoder_convs.13 ReLU()",
    ]
    assert _seed_layers(model) == expected


def test_seed_network_computes_what_the_original_computes():
    """The forward pass written out here in plain torch functions, with the network's own
    weights, on a grid that is cropped on every side: any change of layer, mode, padding,
    crop or flattening order shows."""
    torch.manual_seed(0)
    model = build_model("seed", (260, 300)).eval()
    w = dict(model.named_parameters())
    x = blobs(2, (260, 300))

    def conv(h, name, before, after):
        h = F.pad(h, (before, after, before, after))
        return F.conv2d(h, w[f"{name}.weight"], w[f"{name}.bias"])

    with torch.no_grad():
        h = x[..., 2:258, 22:278]  # the centre 256 x 256
        for i in range(4):
            h = F.max_pool2d(F.relu(conv(h, f"encoder_convs.{3 * i}", 1, 2)), 4)
        z = F.linear(h.flatten(1), w["to_embedding.weight"], w["to_embedding.bias"])
        h = F.relu(F.linear(z, w["from_embedding.0.weight"], w["from_embedding.0.bias"]))
        h = h.reshape(2, 128, 1, 1)
        for i in range(4):
            h = F.interpolate(F.relu(conv(h, f"decoder_convs.{3 * i}", 1, 2)), scale_factor=4)
        y = F.pad(F.relu(conv(h, "decoder_convs.12", 1, 1)), (22, 22, 2, 2))
        torch.testing.assert_close(model.encode(x), z)
        torch.testing.assert_close(model(x), y)
    assert float(y.abs().sum()) > 0  # not a dead network: the comparison says something


# ---- fast network --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [HRRR, HRRR_CONUS.coarsen(2).shape, COARSE8, (66, 112), (1226 // 4, 760 // 4), (97, 131)],
)
def test_fast_round_trips_the_grid_shape_and_emits_50_numbers(shape):
    model = build_model("fast", shape).eval()
    x = torch.rand(1, 1, *shape)
    with torch.no_grad():
        z = model.encode(x)
        y = model.decode(z)
    assert z.shape == (1, 50) and model.embedding_dim == 50
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_fast_pads_instead_of_cropping_so_every_edge_point_reaches_the_embedding():
    model = build_model("fast", COARSE8, eof_path=False).eval()  # the convolutional path
    x = torch.zeros(1, 1, *COARSE8)
    with torch.no_grad():
        z0 = model.encode(x)
        for r, c in [
            (0, 0),
            (0, COARSE8[1] - 1),
            (COARSE8[0] - 1, 0),
            (COARSE8[0] - 1, COARSE8[1] - 1),
        ]:
            x1 = x.clone()
            x1[0, 0, r, c] = 1.0
            assert not torch.equal(model.encode(x1), z0), (r, c)


def test_fast_network_on_hrrr_works_on_a_152_by_257_grid_with_a_fixed_latent_grid():
    model = build_model("fast", HRRR)
    n = count_parameters(model)
    dense = count_parameters(model.to_embedding) + count_parameters(model.from_embedding)
    assert model.factor == 7 and model.work_shape == (152, 257)  # 1059 / 7, 1799 / 7, rounded up
    assert model.coarse_shape == (10, 17)  # 160 x 272 padded, over 16
    # latent (8, 12), 32 channels; 47 learned numbers out, all 50 (3 of coverage) back in
    assert dense == 32 * 8 * 12 * 47 + 47 + 32 * 8 * 12 * 50 + 32 * 8 * 12
    assert n == 1_667_411


def test_fast_output_clamp_keeps_the_gradient_of_points_predicted_below_zero():
    model = FastAutoencoder(COARSE8)
    x = blobs(1, COARSE8)
    with torch.no_grad():  # push every output far below zero
        model.head[-1].bias.fill_(-5.0)
    loss = logcosh(model(x), x)
    loss.backward()
    assert model.head[-1].bias.grad is not None
    assert float(model.head[-1].bias.grad.abs().sum()) > 0


def test_fast_too_deep_for_the_grid_raises_model_error_naming_grid():
    with pytest.raises(ModelError, match=r"7 x 30"):
        build_model("fast", (7, 30))  # 4 stages of patch 2: padded to 16 rows, over twice 7
    with pytest.raises(ModelError, match=r"enc_blocks"):
        FastConfig(widths=(32, 64), enc_blocks=(1, 1, 1))


def test_build_model_defaults_to_fast_and_rejects_unknown_arch_and_hparams():
    assert isinstance(build_model(in_shape=COARSE8), FastAutoencoder)
    assert isinstance(build_model("seed", COARSE8, num_layers=3), SeedAutoencoder)
    with pytest.raises(ModelError, match="unknown architecture"):
        build_model("unet", COARSE8)
    with pytest.raises(ModelError, match="num_layer"):
        build_model("seed", COARSE8, num_layer=3)
    with pytest.raises(ModelError, match="pool_size"):
        build_model("seed", COARSE8, pool_size=1)


def test_fast_config_accepts_lists_from_a_checkpoint_as_tuples():
    model = build_model("fast", COARSE8, widths=[16, 32, 48, 64])
    assert model.config.widths == (16, 32, 48, 64)


def test_encode_rejects_an_image_of_another_grid_with_model_error():
    for arch, hp in [("seed", {"num_layers": 3}), ("fast", {})]:
        model = build_model(arch, COARSE8, **hp)
        with pytest.raises(ModelError, match=r"132, 224"):
            model.encode(torch.zeros(1, 1, 66, 112))


@pytest.mark.parametrize(
    ("arch", "hparams"), [("seed", {"num_layers": 3}), ("fast", {"eof_path": False})]
)
def test_a_few_adam_steps_lower_the_loss(arch, hparams):
    torch.manual_seed(0)
    model = build_model(arch, COARSE8, **hparams)
    x = blobs(2, COARSE8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = weighted_logcosh(model(x), x)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_the_fitted_eof_path_makes_a_new_fast_network_pca_of_the_same_size():
    torch.manual_seed(0)
    x = blobs(12, COARSE8)
    model = build_model("fast", COARSE8, embedding_dim=7)  # 4 learned + 3 coverage numbers
    model.fit_data([x[:7], x[7:]])
    work = model.to_work(x).flatten(1).double()  # (12, wy * wx)
    mean = work.mean(0)
    _, _, vt = torch.linalg.svd(work - mean, full_matrices=False)
    with torch.no_grad():
        z = model.encode(x).double()[:, :4]
        recon = model.decode_work(model.encode(x)).flatten(1).double()
    # the code is the projection on the 4 leading EOFs (each up to its sign) ...
    expected = (work - mean) @ vt[:4].T
    torch.testing.assert_close(z.abs(), expected.abs(), atol=2e-3, rtol=1e-3)
    # ... and the reconstruction PCA's, clamped to the physical range
    pca = (mean + expected @ vt[:4]).clamp(0, 1)
    torch.testing.assert_close(recon, pca, atol=2e-3, rtol=1e-3)
    # the learned parts start at zero, and gradients reach them
    loss = weighted_logcosh(model.decode_work(model.encode(x) * 0.5), model.to_work(x))
    loss.backward()
    assert model.to_embedding.weight.grad.abs().sum() > 0
    assert model.head[-1].weight.grad.abs().sum() > 0


def test_the_embedding_records_echo_coverage_and_the_matched_decoding_restores_it():
    torch.manual_seed(0)
    x = blobs(12, COARSE8)
    model = build_model("fast", COARSE8, embedding_dim=6, coverage=(10.0, 20.0, 35.0))
    model.fit_data([x])
    with torch.no_grad():
        z = model.encode(x)
        plain, matched = model.decode(z), model.decode_matched(z)
    share = torch.stack([(x >= t / 60).float().mean((1, 2, 3)) for t in (10, 20, 35)], 1)
    assert share[:, 2].min() > 0.002 and share[:, 0].max() < 0.9  # echo at every threshold
    # the last three numbers are the exact coverage, scaled; the learned ones come first
    torch.testing.assert_close(model.shares(z), share, atol=1e-6, rtol=1e-5)
    wy, wx = model.work_shape
    scale = model.config.coverage_weight * (wy * wx) ** 0.5
    torch.testing.assert_close(z[:, 3:], scale * share.sqrt(), atol=1e-4, rtol=1e-5)
    # the plain decoding (PCA-like, smooth) falls short at 35 dBZ; the matched one has the
    # image's coverage at each threshold to within a pixel, and keeps the plain one's order
    got = torch.stack([(matched >= t / 60).float().mean((1, 2, 3)) for t in (10, 20, 35)], 1)
    plain35 = (plain >= 35 / 60).float().mean((1, 2, 3))
    assert float(plain35.sum()) < 0.5 * float(share[:, 2].sum()), (plain35, share[:, 2])
    torch.testing.assert_close(got, share, atol=1.5 / x[0].numel(), rtol=0)
    order = plain[0].flatten().argsort()
    assert bool((matched[0].flatten()[order].diff() >= -1e-6).all())
    # a hour with much more echo is farther away than its own slightly shifted copy
    shifted = torch.roll(x[:1], 1, dims=-1)
    stormy = (x[:1] * 1.6).clamp(0, 1)
    with torch.no_grad():
        z0, z1, z2 = model.encode(x[:1]), model.encode(shifted), model.encode(stormy)
    assert torch.dist(z0[:, 3:], z2[:, 3:]) > 5 * torch.dist(z0[:, 3:], z1[:, 3:])


@pytest.mark.parametrize(
    "hp, words",
    [
        ({"coverage": (20.0, 10.0)}, "ascending dBZ thresholds"),
        ({"coverage": (0.0,)}, "between 0 and 60"),
        ({"coverage": (10.0, 10.0)}, "ascending"),
        ({"coverage": ("20",)}, "coverage must be"),
        ({"embedding_dim": 3}, "leaves no learned number"),
        ({"coverage_weight": 0}, "coverage_weight must be > 0"),
        ({"coverage_weight": float("nan")}, "coverage_weight must be > 0"),
    ],
)
def test_bad_coverage_settings_are_one_clear_model_error(hp, words):
    with pytest.raises(ModelError, match=words):
        FastConfig(**hp)


def test_a_checkpoint_made_before_coverage_numbers_still_loads_without_them(tmp_path, tiny_grid):
    from conftest import write_untrained_checkpoint

    from wxembed.model.checkpoint import Checkpoint

    path = write_untrained_checkpoint(tmp_path / "old.ckpt", tiny_grid, coverage=())
    ckpt = torch.load(path, weights_only=False)
    del ckpt["hyper_parameters"]["hparams"]["coverage"]  # as checkpoints were written before
    torch.save(ckpt, path)
    net = Checkpoint(path).module().net
    assert net.config.coverage == () and net.to_embedding.out_features == 50
    # a new checkpoint keeps its coverage numbers
    new = write_untrained_checkpoint(tmp_path / "new.ckpt", tiny_grid)
    assert Checkpoint(new).module().net.config.coverage == (10.0, 20.0, 35.0)


def test_matching_with_no_echo_wanted_leaves_every_pixel_below_the_thresholds():
    from wxembed.model.coverage import match_coverage

    y = torch.rand(2, 1, 20, 30)
    out = match_coverage(y, torch.zeros(2, 2), torch.tensor([0.5, 0.8]))
    assert float(out.max()) < 0.5
    assert torch.equal(out.flatten(1).argsort(1), y.flatten(1).argsort(1))


# ---- normalisation and losses --------------------------------------------------------------


def test_normalise_raw_maps_nodata_and_0_dbz_to_0_and_60_dbz_to_1():
    raw = torch.tensor([255, 64, 184, 0, 124, 254, 63], dtype=torch.uint8)
    x = normalise_raw(raw)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([0.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0]))


def test_logcosh_is_log_cosh_and_stays_finite_for_large_errors():
    d = torch.tensor([0.0, 0.1, -0.5, 2.0])
    assert float(logcosh(d, torch.zeros(4))) == pytest.approx(
        float(torch.log(torch.cosh(d)).mean()), rel=1e-6
    )
    big = logcosh(torch.tensor([1000.0]), torch.tensor([0.0]))
    assert float(big) == pytest.approx(1000.0 - math.log(2.0))


def test_weighted_logcosh_weights_strong_echo_misses_and_false_alarms():
    target = torch.tensor([0.9, 0.1, 0.0])
    miss = torch.tensor([0.1, 0.1, 0.0])  # a strong echo predicted weak
    false_alarm = torch.tensor([0.9, 0.1, 0.8])  # strong echo where there is none
    weak_error = torch.tensor([0.9, 0.5, 0.0])  # weak-echo error of the same size
    assert float(weighted_logcosh(miss, target, weight=1.0)) == pytest.approx(
        float(logcosh(miss, target))
    )
    assert float(weighted_logcosh(miss, target, weight=10.0)) == pytest.approx(
        10 * float(logcosh(miss, target)), rel=1e-5
    )
    assert float(weighted_logcosh(false_alarm, target, weight=10.0)) > 5 * float(
        logcosh(false_alarm, target)
    )
    assert float(weighted_logcosh(weak_error, target, weight=10.0)) == pytest.approx(
        float(logcosh(weak_error, target)) + 0.0, rel=1e-5
    )


def test_soft_csi_loss_is_zero_for_a_perfect_forecast_and_near_one_for_a_missed_storm():
    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:8, 4:8] = 0.9  # a 54 dBZ core
    target[..., 3:9, 3:9] = torch.maximum(target[..., 3:9, 3:9], torch.tensor(0.4))
    perfect = soft_csi_loss(target, target)
    blurred = soft_csi_loss(torch.full_like(target, 0.5), target)  # 30 dBZ everywhere: a miss
    assert float(perfect) == pytest.approx(0.0, abs=0.02)
    assert float(blurred) > 0.9
    # a batch with no storm and none predicted costs nothing
    assert float(soft_csi_loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))) < 1e-4
    # the full loss: the perfect forecast costs ~0; cutting the 16-point core to 27 dBZ (still
    # above 20 dBZ) adds about lam35 * 16 / (16 + 1) = 0.28 to the log-cosh
    kw = {"lam35": 0.3, "lam20": 0.1, "tau": 0.03, "weight": 1.0}
    assert float(logcosh_csi(target, target, **kw)) < 0.02
    missed = torch.where(target >= 0.5, torch.tensor(0.45), target)
    assert float(logcosh_csi(missed, target, **kw)) > 0.25 + float(logcosh(missed, target))


def test_soft_csi_loss_pushes_a_missed_core_up_and_a_false_alarm_down():
    target = torch.tensor([0.9, 0.0, 0.0, 0.0])
    pred = torch.tensor([0.55, 0.0, 0.6, 0.0], requires_grad=True)  # 33 dBZ core, 36 dBZ false
    soft_csi_loss(pred, target).backward()
    assert pred.grad[0] < 0  # gradient descent raises the missed core
    assert pred.grad[2] > 0  # and lowers the false alarm


def test_cosine_schedule_warms_up_peaks_and_ends_at_zero():
    from wxembed.model.losses import WARMUP, scheduled_lr

    assert scheduled_lr("constant", 1e-3, 0.7) == 1e-3
    lrs = [scheduled_lr("cosine", 1e-3, i / 100) for i in range(101)]
    peak = lrs.index(max(lrs))
    assert lrs[0] < 1e-4 and abs(peak / 100 - WARMUP) < 0.02 and abs(max(lrs) - 1e-3) < 1e-9
    assert all(
        a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :], strict=True)
    )  # never rises after the peak
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert scheduled_lr("cosine", 1e-3, 0.5) == pytest.approx(0.5e-3, rel=0.1)
    with pytest.raises(ValueError, match="'linear'"):
        scheduled_lr("linear", 1e-3, 0.5)
