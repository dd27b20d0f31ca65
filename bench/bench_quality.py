"""Reconstruction quality of the seed and the fast autoencoders for the same training time.

Both networks train for ``--seconds`` of wall-clock time each (Adam, batch ``--batch``) on
synthetic storms (``wxembed.sources.synthetic``, seed 0: 4000 hours 2 h apart, most of a year)
on the HRRR grid coarsened ``--factor`` times, then reconstruct held-out hours drawn from
another synthetic seed (other storms altogether). Prints ONE JSON object with, per network:
steps and images trained, held-out MSE in dBZ^2 (on the networks' 0..60 dBZ scale, every grid
point), MSE where the target is >= 35 dBZ, and the critical success index at 35 and at 20 dBZ
(hits / (hits + misses + false alarms), pooled over all held-out points). The same scores on as
many training hours come beside them: with few training hours (``--train-hours 800
--train-every 11``) the fast network overfits within three minutes and its held-out MSE lead
shrinks to a tie.

The seed trains with its original recipe (log-cosh, plain Adam at a constant rate), the fast
network with the defaults of ``wxembed train`` (``logcosh_csi``, and the cosine schedule: a
warm-up, then down to 0 as its time runs out); ``--seed-loss``/``--fast-loss`` and
``--seed-schedule``/``--fast-schedule`` change that (any of ``LOSSES``), ``--extra`` adds more
runs, each with optional ``loss_kwargs``, ``lr``, ``schedule`` and ``weight_decay`` (AdamW).
The runs take turns, step by step (whichever has used the least time goes next), so on a shared
machine they see the same load. At ``--factor 4`` (264 x 449, 12 km) the seed gets
``num_layers=3``, the scale analogue of 4/4/4 on the full grid (crop to 256 x 448 and a
4 x 7 x 64 code, as 4/4/4 crops 1059 x 1799 to 1024 x 1792 and ends at 4 x 7 x 128): with 4
layers it would crop the grid to 256 x 256. The fast network keeps its defaults.

    python bench/bench_quality.py                     # 2 x 180 s of training on CPU
    python bench/bench_quality.py --seconds 60 --fast-loss logcosh
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from wxembed.model.losses import LOSSES, SCHEDULES, STRONG_ECHO, scheduled_lr
from wxembed.reflectivity import dbz_to_unit, unit_to_dbz

ANALOGUE_HPARAMS = {4: {"seed": {"num_layers": 3}}}


def render(factor: int, seed: int, start: str, hours: int, step_h: int) -> torch.Tensor:
    """(hours, 1, ny, nx) float32 in [0, 1]: synthetic hours ``step_h`` apart."""
    from wxembed.grid import HRRR_CONUS
    from wxembed.sources.synthetic import SynthConfig, render_hour

    cfg = SynthConfig(seed=seed, grid=HRRR_CONUS.coarsen(factor))
    t0 = np.datetime64(start, "s")
    fields = [render_hour(cfg, t0 + np.timedelta64(h * step_h, "h")).dbz for h in range(hours)]
    return torch.from_numpy(dbz_to_unit(np.stack(fields)))[:, None]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, batch: int) -> dict:
    model.eval()
    se = se_strong = 0.0
    n = n_strong = hits = misses = false_alarms = 0
    hits20 = misses20 = false_alarms20 = 0
    moderate = 20.0 / 60.0
    max_t, max_p = [], []
    for i in range(0, len(x), batch):
        t = x[i : i + batch]
        p = model(t).clamp(0, 1)
        err2 = (unit_to_dbz(p) - unit_to_dbz(t)) ** 2
        strong_t, strong_p = t >= STRONG_ECHO, p >= STRONG_ECHO
        se += float(err2.sum())
        n += err2.numel()
        se_strong += float(err2[strong_t].sum())
        n_strong += int(strong_t.sum())
        hits += int((strong_t & strong_p).sum())
        misses += int((strong_t & ~strong_p).sum())
        false_alarms += int((~strong_t & strong_p).sum())
        mod_t, mod_p = t >= moderate, p >= moderate
        hits20 += int((mod_t & mod_p).sum())
        misses20 += int((mod_t & ~mod_p).sum())
        false_alarms20 += int((~mod_t & mod_p).sum())
        max_t += unit_to_dbz(t.amax(dim=(1, 2, 3))).tolist()
        max_p += unit_to_dbz(p.amax(dim=(1, 2, 3))).tolist()
    model.train()
    denom = hits + misses + false_alarms
    denom20 = hits20 + misses20 + false_alarms20
    return {
        "mse_dbz2": round(se / n, 3),
        "mse_dbz2_where_target_ge35": round(se_strong / n_strong, 2) if n_strong else None,
        "csi_35dbz": round(hits / denom, 4) if denom else None,
        "csi_20dbz": round(hits20 / denom20, 4) if denom20 else None,
        "points_ge35_target": n_strong,
        "points_ge35_predicted": hits + false_alarms,
        "mean_image_max_dbz_target": round(float(np.mean(max_t)), 2),
        "mean_image_max_dbz_predicted": round(float(np.mean(max_p)), 2),
    }


class Run:
    """One network in training: its model, optimiser, batch sampler and time used so far."""

    def __init__(self, name: str, spec: dict, shape: tuple[int, int], args: argparse.Namespace):
        from wxembed.model import build_model

        self.name, self.spec = name, spec
        self.loss_fn = functools.partial(LOSSES[spec["loss"]], **spec.get("loss_kwargs", {}))
        torch.manual_seed(args.torch_seed)
        self.model = build_model(spec["arch"], shape, **spec["hparams"])
        self.lr = spec.get("lr", args.lr)
        self.schedule = spec.get("schedule", "constant")
        self.budget = args.seconds
        wd = spec.get("weight_decay", 0.0)
        params = self.model.parameters()
        self.opt = (
            torch.optim.AdamW(params, self.lr, weight_decay=wd)
            if wd
            else torch.optim.Adam(params, self.lr)
        )
        self.gen = torch.Generator().manual_seed(args.torch_seed)
        self.seconds = 0.0
        self.steps = 0
        self.losses: list[float] = []

    def step(self, train_x: torch.Tensor, batch: int) -> None:
        t0 = time.perf_counter()
        if self.schedule != "constant":  # by the share of the time budget used so far
            for group in self.opt.param_groups:
                group["lr"] = scheduled_lr(self.schedule, self.lr, self.seconds / self.budget)
        idx = torch.randint(len(train_x), (batch,), generator=self.gen)
        xb = train_x[idx]
        self.opt.zero_grad(set_to_none=True)
        recon, target, _ = self.model.training_terms(xb)
        loss = self.loss_fn(recon, target)
        loss.backward()
        self.opt.step()
        self.seconds += time.perf_counter() - t0
        self.losses.append(float(loss.detach()))
        self.steps += 1

    def report(self, test_x: torch.Tensor, batch: int, train_x: torch.Tensor) -> dict:
        from wxembed.model import count_parameters

        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return {
            **self.spec,
            "params": count_parameters(self.model),
            "train_seconds": round(self.seconds, 1),
            "steps": self.steps,
            "images_seen": self.steps * batch,
            "train_loss_last10pct": float(np.mean(tail)) if tail else None,
            "held_out": evaluate(self.model, test_x, 16),
            # as many training hours, spread over the year: the gap to held_out is overfitting
            "training_hours": evaluate(
                self.model, train_x[:: max(1, len(train_x) // len(test_x))], 16
            ),
        }


def train_interleaved(runs: list[Run], train_x: torch.Tensor, args: argparse.Namespace) -> None:
    """Step whichever run has used the least time until each has had ``args.seconds``: the runs
    share the machine's ups and downs (other jobs on a shared CPU) instead of one getting a
    quiet minute and the other a busy one."""
    while True:
        active = [r for r in runs if r.seconds < args.seconds]
        if not active:
            return
        min(active, key=lambda r: r.seconds).step(train_x, args.batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factor", type=int, default=4, help="coarsening of the HRRR grid")
    parser.add_argument("--seconds", type=float, default=180.0, help="training time per network")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-hours", type=int, default=4000, help="training hours")
    parser.add_argument("--train-every", type=int, default=2, help="hours between training hours")
    parser.add_argument("--test-hours", type=int, default=150, help="held-out hours, 29 h apart")
    parser.add_argument("--archs", default="seed,fast")
    parser.add_argument("--seed-hparams", default=None, help="JSON; default: the factor's analogue")
    parser.add_argument("--fast-hparams", default=None, help="JSON; default: the factor's analogue")
    parser.add_argument("--seed-loss", default="logcosh", choices=sorted(LOSSES))
    parser.add_argument("--fast-loss", default="logcosh_csi", choices=sorted(LOSSES))
    parser.add_argument("--seed-schedule", default="constant", choices=SCHEDULES)
    parser.add_argument("--fast-schedule", default="cosine", choices=SCHEDULES)
    parser.add_argument(
        "--extra",
        default=None,
        help='more runs, JSON: {"name": {"arch": .., "hparams": {..}, "loss": .., '
        '"loss_kwargs": {..}}}',
    )
    parser.add_argument("--torch-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", default=None, help="a .pt file to keep the rendered hours in")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    key = (args.factor, args.train_hours, args.test_hours, args.train_every)
    cached = torch.load(args.cache) if args.cache and Path(args.cache).exists() else None
    if cached is not None and cached["key"] == key:
        train_x, test_x = cached["train"].float() / 255, cached["test"].float() / 255
    else:
        train_x = render(args.factor, 0, "2024-01-01T00", args.train_hours, args.train_every)
        test_x = render(args.factor, 1, "2023-01-01T05", args.test_hours, 29)
        if args.cache:  # 8 bits are enough: the archive stores 0.5 dBZ steps
            q = {
                "train": (train_x * 255).round().to(torch.uint8),
                "test": (test_x * 255).round().to(torch.uint8),
            }
            torch.save({"key": key, **q}, args.cache)
            train_x, test_x = q["train"].float() / 255, q["test"].float() / 255
    out: dict = {
        "grid_shape": list(train_x.shape[-2:]),
        "factor": args.factor,
        "train_hours": len(train_x),
        "train_every_hours": args.train_every,
        "test_hours": len(test_x),
        "train_fraction_ge35dbz": round(float((train_x >= 35 / 60).float().mean()), 5),
        "test_fraction_ge35dbz": round(float((test_x >= 35 / 60).float().mean()), 5),
        "render_seconds": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "lr": args.lr,
        "seconds_per_arch": args.seconds,
    }
    # the all-zero reconstruction, for scale
    zero_mse = float(((test_x * 60) ** 2).mean())
    out["held_out_mse_dbz2_of_all_zero_output"] = round(zero_mse, 3)
    analogue = ANALOGUE_HPARAMS.get(args.factor, {})
    specs: dict[str, dict] = {}
    for arch in args.archs.split(","):
        given = getattr(args, f"{arch}_hparams")
        hparams = json.loads(given) if given else analogue.get(arch, {})
        specs[arch] = {
            "arch": arch,
            "hparams": hparams,
            "loss": getattr(args, f"{arch}_loss"),
            "schedule": getattr(args, f"{arch}_schedule"),
        }
    specs.update(json.loads(args.extra) if args.extra else {})
    shape = tuple(train_x.shape[-2:])
    runs = [Run(name, spec, shape, args) for name, spec in specs.items()]
    train_interleaved(runs, train_x, args)
    for run in runs:
        out[run.name] = run.report(test_x, args.batch, train_x)
    if "seed" in out and "fast" in out:
        s, f = out["seed"]["held_out"]["mse_dbz2"], out["fast"]["held_out"]["mse_dbz2"]
        out["mse_ratio_fast_over_seed"] = round(f / s, 3) if s and math.isfinite(s) else None
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
