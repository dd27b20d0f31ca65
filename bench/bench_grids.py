"""The same network on any grid: parameters, checkpoint size, step time and peak memory.

For each grid (HRRR CONUS 1059 x 1799, MRMS CONUS 3500 x 7000, FMI 1226 x 760), builds the
default network of ``wxembed train`` (or ``--arch``/``--hp``), writes a checkpoint the way
training does (weights, optimiser state and hyperparameters) and runs ``--steps`` training steps
at ``--batch`` on random storm-like uint8 fields, each grid in a fresh process so that the peak
resident memory (``ru_maxrss``) is that grid's alone. Prints ONE JSON object.

    python bench/bench_grids.py                 # fast network, batch 4, 3 steps a grid
    python bench/bench_grids.py --arch seed --hp num_layers=3
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRIDS = {"hrrr": (1059, 1799), "mrms": (3500, 7000), "fmi": (1226, 760)}


def one_grid(name: str, arch: str, hparams: dict, batch: int, steps: int) -> dict:
    import torch

    from wxembed.model.common import count_parameters
    from wxembed.model.task import AutoencoderModule

    torch.manual_seed(0)
    shape = GRIDS[name]
    module = AutoencoderModule(arch, shape, hparams, loss="logcosh_csi")
    opt = torch.optim.Adam(module.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 200, (batch, 1, *shape), dtype=torch.uint8, generator=gen)
    t0 = time.perf_counter()
    module.net.fit_data([module._inputs(raw)])  # the EOF path (fitted on the batch here)
    fit_seconds = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = _loss(module, raw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.ckpt"
        state = {
            "state_dict": module.state_dict(),
            "optimizer_states": [opt.state_dict()],
            "hyper_parameters": dict(module.hparams),
        }
        torch.save(state, path)
        size = path.stat().st_size
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "shape": list(shape),
        "parameters": count_parameters(module.net),
        "checkpoint_mb": round(size / 1e6, 2),
        "buffers": sum(b.numel() for b in module.net.buffers()),
        "fit_seconds": round(fit_seconds, 2),
        "step_seconds": [round(t, 2) for t in times],
        "peak_resident_gb": round(peak_kb / 1e6, 2),
        "input_batch_gb": round(raw.numel() / 1e9, 3),
    }


def _loss(module, raw):
    x = module._inputs(raw)
    recon, target, _ = module.net.training_terms(x)
    return module.loss_fn(recon.float(), target.float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="fast")
    parser.add_argument("--hp", action="append", default=[], help="NAME=JSON, repeatable")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--grids", default=",".join(GRIDS))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    hparams = {k: json.loads(v) for k, v in (h.split("=", 1) for h in args.hp)}
    if args.one:  # the child process: one grid
        print(json.dumps(one_grid(args.one, args.arch, hparams, args.batch, args.steps)))
        return
    out = {"arch": args.arch, "hparams": hparams, "batch": args.batch, "grids": {}}
    for name in args.grids.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--arch", args.arch]
        cmd += [f"--batch={args.batch}", f"--steps={args.steps}"]
        cmd += [f"--hp={h}" for h in args.hp]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        out["grids"][name] = json.loads(lines[-1]) if done.returncode == 0 else done.stderr[-500:]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
