"""Training throughput of the seed and the fast autoencoders, side by side, at full HRRR resolution.

Prints ONE JSON object: images/s of a full training step (forward, weighted log-cosh loss,
backward, Adam step) for each network, warm-up steps excluded, and the ratio fast / seed. The
batch is built once on the device (storm-like Gaussian cells), so data loading is not counted.

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


def bench_arch(arch: str, args: argparse.Namespace, x: torch.Tensor) -> dict:
    from wxembed.model import build_model, count_parameters, weighted_logcosh

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(arch, tuple(x.shape[-2:])).to(device)
    n_params = count_parameters(model)
    if cuda and not args.no_channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step_model = torch.compile(model) if args.compile else model

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and not args.no_bf16):
            recon = step_model(x)
        loss = weighted_logcosh(recon.float(), x)
        loss.backward()
        opt.step()
        return loss.detach()

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    out = {
        "params": n_params,
        "images_per_s": round(args.batch * args.steps / seconds, 3),
        "seconds_per_step": round(seconds / args.steps, 4),
        "warmup_seconds": round(warm_s, 2),
        "final_loss": float(loss),
    }
    if cuda:
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 64 on GPU")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps (default 3 CPU, 20 GPU)"
    )
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
    args.steps = args.steps or (20 if cuda else 3)
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
        "steps": args.steps,
        "warmup": args.warmup,
        "bf16_autocast": cuda and not args.no_bf16,
        "channels_last": cuda and not args.no_channels_last,
        "compile": args.compile,
    }
    for arch in args.archs.split(","):
        result[arch] = bench_arch(arch, args, x)
    if "seed" in result and "fast" in result:
        ratio = result["fast"]["images_per_s"] / result["seed"]["images_per_s"]
        result["speedup_fast_over_seed"] = round(ratio, 2) if math.isfinite(ratio) else None
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
