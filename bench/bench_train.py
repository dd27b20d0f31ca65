"""Training throughput of the seed and the fast autoencoders, side by side, at full HRRR resolution.

Prints ONE JSON object: images/s of a full training step (forward, the default loss of
``wxembed train``, backward, Adam step) for each network, warm-up steps excluded, and the ratio
fast / seed. The batch is built once on the device (storm-like Gaussian cells), so data loading
is not counted. On a CPU the timed steps come in rounds that alternate between the networks, so
that on a shared machine both see the same load; on a GPU each network runs alone (its own peak
memory).

    python bench/bench_train.py                       # CPU, batch 4
    python bench/bench_train.py --device cuda         # GPU: bf16 autocast, channels_last, batch 64
    python bench/bench_train.py --device cuda --compile

On a GPU it also reports the peak memory (``torch.cuda.max_memory_allocated``) of each network.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

HRRR_SHAPE = (1059, 1799)


def storm_batch(batch: int, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(batch, 1, ny, nx) in [0, 1]: a few Gaussian cells (up to 60 dBZ) over no echo."""
    g = torch.Generator().manual_seed(seed)
    ny, nx = shape
    yy = torch.arange(ny, dtype=torch.float32)[:, None]
    xx = torch.arange(nx, dtype=torch.float32)[None, :]
    out = torch.zeros(batch, 1, ny, nx)
    for b in range(batch):
        for _ in range(12):
            cy, cx = float(torch.rand(1, generator=g)) * ny, float(torch.rand(1, generator=g)) * nx
            peak = 0.4 + 0.6 * float(torch.rand(1, generator=g))
            width = (5 + 40 * float(torch.rand(1, generator=g))) * min(ny, nx) / 1059
            cell = peak * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
            out[b, 0] = torch.maximum(out[b, 0], cell)
    return out


class Trainer:
    """One network, its optimiser and the time its timed steps took."""

    def __init__(self, arch: str, args: argparse.Namespace, x: torch.Tensor):
        from wxembed.model import build_model, count_parameters
        from wxembed.model.losses import logcosh_csi

        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.x, self.loss_fn = x, logcosh_csi  # the default loss of wxembed train
        self.bf16 = self.cuda and not args.no_bf16
        torch.manual_seed(0)
        model = build_model(arch, tuple(x.shape[-2:])).to(self.device)
        self.params = count_parameters(model)
        if self.cuda and not args.no_channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        # the training step's own function, compiled when asked (ours trains on its working grid)
        self.pair = torch.compile(model.training_terms) if args.compile else model.training_terms
        self.seconds = 0.0
        self.steps = 0
        self.loss = float("nan")

    def step(self) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            recon, target, _ = self.pair(self.x)
        loss = self.loss_fn(recon.float(), target.float())
        loss.backward()
        self.opt.step()
        return loss.detach()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def warm_up(self, steps: int) -> dict:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.sync()
        return {"warmup_seconds": round(time.perf_counter() - t0, 2)}

    def timed(self, steps: int) -> None:
        self.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        self.sync()
        self.seconds += time.perf_counter() - t0
        self.steps += steps
        self.loss = float(loss)

    def report(self, batch: int) -> dict:
        out = {
            "params": self.params,
            "images_per_s": round(batch * self.steps / self.seconds, 3),
            "seconds_per_step": round(self.seconds / self.steps, 4),
            "timed_steps": self.steps,
            "last_loss": round(self.loss, 6),
        }
        if self.cuda:
            out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 64 on GPU")
    parser.add_argument("--steps", type=int, default=None, help="steps a round (2 CPU, 10 GPU)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (3 CPU, 2 GPU)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps (default 1 CPU, 5 GPU)"
    )
    parser.add_argument("--archs", default="seed,fast", help="comma-separated (default seed,fast)")
    parser.add_argument("--shape", default=f"{HRRR_SHAPE[0]},{HRRR_SHAPE[1]}", help="ny,nx")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("--no-bf16", action="store_true", help="GPU: no bf16 autocast")
    parser.add_argument("--no-channels-last", action="store_true", help="GPU: NCHW memory layout")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (64 if cuda else 4)
    args.steps = args.steps or (10 if cuda else 2)
    args.rounds = args.rounds or (2 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    shape = tuple(int(n) for n in args.shape.split(","))

    x = storm_batch(args.batch, shape).to(args.device)
    if cuda and not args.no_channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    result: dict = {
        "device": torch.cuda.get_device_name(args.device)
        if cuda
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": list(shape),
        "batch": args.batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "bf16_autocast": cuda and not args.no_bf16,
        "channels_last": cuda and not args.no_channels_last,
        "compile": args.compile,
    }
    archs = args.archs.split(",")
    if cuda:  # one network at a time on the GPU, so that each peak memory is its own
        for arch in archs:
            trainer = Trainer(arch, args, x)
            warm = trainer.warm_up(args.warmup)
            for _ in range(args.rounds):
                trainer.timed(args.steps)
            result[arch] = {**trainer.report(args.batch), **warm}
            del trainer
    else:  # interleaved rounds: both networks see the same load on a shared CPU
        trainers = {arch: Trainer(arch, args, x) for arch in archs}
        warm = {arch: t.warm_up(args.warmup) for arch, t in trainers.items()}
        for _ in range(args.rounds):
            for t in trainers.values():
                t.timed(args.steps)
        for arch, t in trainers.items():
            result[arch] = {**t.report(args.batch), **warm[arch]}
    if "seed" in result and "fast" in result:
        ratio = result["fast"]["images_per_s"] / result["seed"]["images_per_s"]
        result["speedup_fast_over_seed"] = round(ratio, 2) if math.isfinite(ratio) else None
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
