"""Does the learned representation earn its place? Ours, the original network and PCA, by size.

A rate-distortion table: each method at 16, 50 and 128 numbers an image, scored on held-out
hours that are not continuations of the training storms. Synthetic data by default: 4000 hours
of seed 0 (2 h apart, most of a year) on the HRRR grid coarsened 4x (264 x 449, 12 km) for
training, 150 hours of seed 1 (29 h apart) held out. ``--fmi DIR`` runs the same on the real FMI
frames instead (trained on one day, scored on the other).

Methods (all see the same training hours; networks train for the same CPU time each, counted
by ``time.process_time`` over all of the process's threads, so that other work on the machine
does not change the comparison; they take turns step by step; a closed-form fit before the
first step counts in the budget):

- ``ours``: the fast network (``wxembed train``'s default, working-resolution design) with the
  cosine schedule and ``--ours-loss``: the CSI-aware ``logcosh_csi`` by default, as
  ``wxembed train`` trains it (``--ours-loss logcosh`` for plain log-cosh);
- ``original``: the original network's scaled-down analogue on this grid (3 layers, pool 4,
  filters 4, ``num_dense`` = the size; 4 layers would crop 264 x 449 to 256 x 256), with its
  original recipe: plain log-cosh, constant-rate Adam;
- ``pca``: PCA/EOF (:class:`wxembed.evaluation.baselines.PCABaseline`) fit on the training hours.

Scores (``wxembed.evaluation``): MSE (dBZ²), CSI at 20 and 35 dBZ, FSS at 35 dBZ over 27 km,
frequency bias at 20 dBZ (echo area predicted / true; 1 is right), SSIM; and search quality:
each held-out hour is a query among the training hours; the true neighbours are its 10 nearest
in pixel space (dBZ floored at 0); ``recall_at_10`` is the share of a method's 10 nearest in its
own code space that are true neighbours; ``analog_fss`` the mean FSS (35 dBZ, 27 km) between the
query and the method's first analog, beside the pixel-space nearest (the ceiling) and a random
hour. Networks run with several torch seeds; each entry gives every seed, the mean and the
spread (standard deviation). ``--ablation`` adds, at 50: each network with the other's loss,
and ours without its distance term, its EOF path or its coverage numbers.

Ours' embedding records each hour's echo coverage at 10, 20 and 35 dBZ (3 of its numbers), so it
also decodes *probability-matched* (:mod:`wxembed.model.coverage`): the ``matched_*`` scores. PCA
gets the same matching from the truth's coverage (53 numbers in effect), a baseline at least
as strong as ours' matched decoding in what it is given.

Prints ONE JSON object, with ``targets``: whether ours beats PCA at 50 numbers by 10 % on MSE,
FSS and recall@10 on every seed, with its bias at 20 dBZ in 0.7..1.3.

    python bench/bench_representation.py                       # 200 CPU s a network (about 1.5 h)
    python bench/bench_representation.py --seconds 60 --seeds 0 --sizes 50
    python bench/bench_representation.py --fmi ../shared/data/fmi --factor 4
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from wxembed.evaluation.baselines import PCABaseline
from wxembed.evaluation.metrics import Verification
from wxembed.evaluation.search_quality import pixel_distances, search_quality
from wxembed.grid import HRRR_CONUS, coarsen_field
from wxembed.model import build_model, count_parameters
from wxembed.model.coverage import match_fields
from wxembed.model.fast import FastConfig
from wxembed.model.losses import LOSSES, distance_loss, scheduled_lr
from wxembed.reflectivity import dbz_to_unit, unit_to_dbz
from wxembed.sources.fmi import read_fmi
from wxembed.sources.synthetic import SynthConfig, render_hour
from wxembed.train import DISTANCE_WEIGHT

HEADLINE = ("mse", "csi_20", "csi_35", "fss_35_27km", "bias_20", "ssim")
SEARCH = ("recall_at_10", "analog_fss")


# ---- data ------------------------------------------------------------------------------------
def render(factor: int, seed: int, start: str, hours: int, step_h: int) -> torch.Tensor:
    """(hours, 1, ny, nx) uint8 network-scale codes (x / 255): synthetic hours ``step_h`` apart."""
    cfg = SynthConfig(seed=seed, grid=HRRR_CONUS.coarsen(factor))
    t0 = np.datetime64(start, "s")
    fields = [render_hour(cfg, t0 + np.timedelta64(h * step_h, "h")).dbz for h in range(hours)]
    return _quantise(dbz_to_unit(np.stack(fields)))


def _quantise(unit: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.rint(unit * 255).astype(np.uint8))[:, None]


def synthetic_data(args) -> tuple[torch.Tensor, torch.Tensor, float]:
    key = ("synthetic", args.factor, args.train_hours, args.train_every, args.test_hours)
    cached = torch.load(args.cache) if args.cache and Path(args.cache).exists() else None
    if cached is not None and tuple(cached["key"]) == key:
        return cached["train"], cached["test"], HRRR_CONUS.coarsen(args.factor).cell_size_km
    train = render(args.factor, 0, "2024-01-01T00", args.train_hours, args.train_every)
    test = render(args.factor, 1, "2023-01-01T05", args.test_hours, 29)
    if args.cache:
        torch.save({"key": key, "train": train, "test": test}, args.cache)
    return train, test, HRRR_CONUS.coarsen(args.factor).cell_size_km


def fmi_data(folder: str, factor: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Real FMI frames: the earlier day trains, the later day is held out."""
    days = sorted(p for p in Path(folder).iterdir() if p.is_dir())
    sets, cell_km = [], 1.0
    for day in days[:2]:
        fields = []
        for f in sorted(day.glob("*.pgm*")):
            field = read_fmi(f)
            fields.append(coarsen_field(np.nan_to_num(field.dbz, nan=-32.0), factor))
            cell_km = field.grid.coarsen(factor).cell_size_km
        sets.append(_quantise(dbz_to_unit(np.stack(fields))))
    return sets[0], sets[1], cell_km


def as_dbz(x: torch.Tensor) -> np.ndarray:
    """uint8 network-scale codes (n, 1, ny, nx) -> dBZ (n, ny, nx)."""
    return unit_to_dbz(x[:, 0].float().numpy() / 255.0)


# ---- methods ---------------------------------------------------------------------------------
class Net:
    """One network in training: its model, optimiser, batch sampler and time used so far."""

    def __init__(self, name: str, spec: dict, train: torch.Tensor, torch_seed: int, args):
        self.name, self.spec = name, spec
        self.loss_fn = LOSSES[spec["loss"]]
        torch.manual_seed(torch_seed)
        self.model = build_model(spec["arch"], tuple(train.shape[-2:]), **spec["hparams"])
        self.opt = torch.optim.Adam(self.model.parameters(), args.lr)
        self.gen = torch.Generator().manual_seed(torch_seed)
        self.budget, self.lr, self.clip = args.seconds, args.lr, args.clip
        self.seconds, self.steps = 0.0, 0
        t0 = time.process_time()  # the closed-form fit (ours' EOF path) counts in the budget
        self.model.fit_data(train[i : i + 64].float() / 255.0 for i in range(0, len(train), 64))
        self.fit_seconds = time.process_time() - t0
        self.seconds = self.fit_seconds

    def step(self, train: torch.Tensor, batch: int) -> None:
        t0 = time.process_time()
        for group in self.opt.param_groups:
            progress = self.seconds / self.budget
            group["lr"] = scheduled_lr(self.spec["schedule"], self.lr, progress)
        x = train[torch.randint(len(train), (batch,), generator=self.gen)].float() / 255.0
        recon, target, code = self.model.training_terms(x)
        loss = self.loss_fn(recon, target)
        if self.spec.get("distance_weight"):
            loss = loss + self.spec["distance_weight"] * distance_loss(code, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.seconds += time.process_time() - t0
        self.steps += 1

    @torch.no_grad()
    def codes_and_fields(
        self, x: torch.Tensor, batch: int = 32, fields: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Codes, reconstructions and probability-matched reconstructions (None when the
        network records no coverage) of ``x``; with ``fields=False`` just the codes."""
        self.model.eval()
        z, out, matched = [], [], []
        match = getattr(getattr(self.model, "config", None), "coverage", ())  # ours by default
        for i in range(0, len(x), batch):
            xb = x[i : i + batch].float() / 255.0
            zb = self.model.encode(xb)
            z.append(zb.numpy())
            if fields:
                out.append(unit_to_dbz(self.model.decode(zb).clamp(0, 1)[:, 0].numpy()))
            if fields and match:
                matched.append(unit_to_dbz(self.model.decode_matched(zb)[:, 0].numpy()))
        self.model.train()
        fields_out = np.concatenate(out) if out else None
        return np.concatenate(z), fields_out, np.concatenate(matched) if matched else None


def train_interleaved(nets: list[Net], train: torch.Tensor, args) -> None:
    """Step whichever network has used the least time until each has had ``args.seconds``."""
    while active := [n for n in nets if n.seconds < args.seconds]:
        min(active, key=lambda n: n.seconds).step(train, args.batch)


def score(truth: np.ndarray, fields: np.ndarray, cell_km: float, matched=None) -> dict:
    """The headline scores of ``fields``; with ``matched`` (probability-matched fields) also
    theirs, as ``matched_<score>``."""
    out = {}
    for prefix, f in (("", fields), ("matched_", matched)):
        if f is None:
            continue
        s = Verification(thresholds=(20.0, 35.0), fss_windows_km=(27.0,), cell_km=cell_km)
        scores = s.accumulate(truth, f).compute()
        out.update({prefix + k: scores[k] for k in HEADLINE})
    return out


def search(data: dict, codes_test: np.ndarray, codes_train: np.ndarray) -> dict:
    """Search quality of one code, the held-out hours as queries among the training hours."""
    train_dbz = data["train_dbz"]
    return search_quality(
        data["test_dbz"],
        data["pixel"],
        lambda idx: train_dbz[np.asarray(idx)],
        {"m": codes_test},
        {"m": codes_train},
        cell_km=data["cell_km"],
    )


# ---- the table -------------------------------------------------------------------------------
def summarise(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    mean = {k: float(np.nanmean([r[k] for r in runs])) for k in keys}
    std = {k: float(np.nanstd([r[k] for r in runs])) for k in keys}
    return {"seeds": runs, "mean": mean, "std": std}


def network_specs(size: int, args, ablation: bool) -> dict[str, dict]:
    ours = {"arch": "fast", "hparams": {"embedding_dim": size}, "loss": args.ours_loss}
    ours.update(schedule="cosine", distance_weight=DISTANCE_WEIGHT)
    layers = 3 if args.fmi is None else args.fmi_layers
    seed_hp = {"num_layers": layers, "pool_size": 4, "num_filters": 4, "num_dense": size}
    original = {"arch": "seed", "hparams": seed_hp, "loss": "logcosh", "schedule": "constant"}
    specs = {"ours": ours, "original": original}
    if ablation:
        other = "logcosh" if args.ours_loss != "logcosh" else "logcosh_csi"
        specs[f"ours_with_{other}"] = {**ours, "loss": other}
        specs["ours_without_distance_term"] = {**ours, "distance_weight": 0.0}
        specs["original_with_logcosh_csi"] = {**original, "loss": "logcosh_csi"}
        no_eof = {**ours["hparams"], "eof_path": False}
        specs["ours_without_eof_path"] = {**ours, "hparams": no_eof}
        no_cov = {**ours["hparams"], "coverage": ()}
        specs["ours_without_coverage"] = {**ours, "hparams": no_cov}
    return specs


def run_size(size: int, data, args) -> dict:
    train, test, cell_km = data["train"], data["test"], data["cell_km"]
    train_dbz, test_dbz = data["train_dbz"], data["test_dbz"]
    out: dict = {}
    t0 = time.process_time()
    pca = PCABaseline(n_components=size)
    for i in range(0, len(train), 64):
        pca.partial_fit(train_dbz[i : i + 64])
    pca_seconds = time.process_time() - t0
    z_test, z_train = pca.encode(test_dbz), pca.encode(train_dbz)
    fields = pca.decode(z_test)  # matched: given the truth's coverage numbers, as ours has them
    s = score(test_dbz, fields, cell_km, match_fields(fields, test_dbz, FastConfig().coverage))
    found = search(data, z_test, z_train)
    out["pca"] = {**s, **found["m"], "fit_cpu_seconds": round(pca_seconds, 1)}
    out["search_ceiling"] = {"pixel_nearest": found["pixel_nearest"], "random": found["random"]}
    specs = network_specs(size, args, args.ablation and size == 50)
    per_seed: dict[str, list[dict]] = {name: [] for name in specs}
    for torch_seed in args.seeds:
        nets = [Net(n, spec, train, torch_seed, args) for n, spec in specs.items()]
        train_interleaved(nets, train, args)
        for net in nets:
            z_test, fields, matched = net.codes_and_fields(test)
            z_train, _, _ = net.codes_and_fields(train, fields=False)
            found = search(data, z_test, z_train)
            entry = {**score(test_dbz, fields, cell_km, matched), **found["m"]}
            entry.update(torch_seed=torch_seed, steps=net.steps, cpu_seconds=round(net.seconds, 1))
            entry["fit_cpu_seconds"] = round(net.fit_seconds, 1)
            entry["params"] = count_parameters(net.model)
            per_seed[net.name].append(entry)
    for name, runs in per_seed.items():
        out[name] = {**summarise(runs), "spec": specs[name]}
    return out


def targets(table: dict) -> dict:
    """Ours against PCA at 50 numbers: 10 % better on MSE, FSS and recall@10 on every seed, and
    a frequency bias at 20 dBZ within 0.7..1.3.

    MSE and recall are ours' plain decoding and code; FSS and bias are its probability-matched
    decoding (the one to use at thresholds) against plain PCA, as the issue poses them. The
    ``*_vs_matched_pca`` checks hold ours' matched decoding against PCA matched the same way,
    given the same coverage: what the representation itself adds at thresholds."""
    if "50" not in table or "ours" not in table["50"]:
        return {}
    pca, seeds = table["50"]["pca"], table["50"]["ours"]["seeds"]
    fss = "matched_fss_35_27km" if "matched_fss_35_27km" in seeds[0] else "fss_35_27km"
    bias = "matched_bias_20" if "matched_bias_20" in seeds[0] else "bias_20"

    def better(key: str, theirs: float, factor: float = 1.1) -> bool:
        # and strictly better: 1.1 x 0 is no bar at all
        return all(r[key] >= factor * theirs and r[key] > theirs for r in seeds)

    checks = {
        "mse_10pct_better": all(r["mse"] <= 0.9 * pca["mse"] for r in seeds),
        "fss_10pct_better": better(fss, pca["fss_35_27km"]),
        "recall_10pct_better": better("recall_at_10", pca["recall_at_10"]),
        "bias_20_in_0.7_1.3": all(0.7 <= r[bias] <= 1.3 for r in seeds),
    }
    checks["all"] = all(checks.values())
    if "matched_fss_35_27km" in pca and fss.startswith("matched_"):
        checks["fss_10pct_better_vs_matched_pca"] = better(fss, pca["matched_fss_35_27km"])
        checks["fss_better_vs_matched_pca"] = better(fss, pca["matched_fss_35_27km"], 1.0)
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factor", type=int, default=4, help="coarsening of the grid")
    parser.add_argument("--seconds", type=float, default=200.0, help="CPU seconds a network")
    parser.add_argument("--sizes", default="16,50,128", help="numbers an image, comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="torch seeds, comma-separated")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: none)")
    parser.add_argument("--train-hours", type=int, default=4000)
    parser.add_argument("--train-every", type=int, default=2, help="hours between them")
    parser.add_argument("--test-hours", type=int, default=150, help="held out, 29 h apart")
    parser.add_argument("--ablation", action="store_true", help="each network with each loss")
    parser.add_argument("--ours-loss", default="logcosh_csi", choices=sorted(LOSSES))
    parser.add_argument("--fmi", default=None, help="a folder of FMI days instead of synthetic")
    parser.add_argument("--fmi-layers", type=int, default=2, help="original's layers on FMI")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", default=None, help="a .pt file to keep the rendered hours in")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.fmi:
        train, test, cell_km = fmi_data(args.fmi, args.factor)
    else:
        train, test, cell_km = synthetic_data(args)
    train_dbz, test_dbz = as_dbz(train), as_dbz(test)
    batches = (train_dbz[i : i + 256] for i in range(0, len(train_dbz), 256))
    data = {
        "train": train,
        "test": test,
        "cell_km": cell_km,
        "train_dbz": train_dbz,
        "test_dbz": test_dbz,
        "pixel": pixel_distances(test_dbz, batches),  # the true neighbours, for every method
    }
    out: dict = {
        "data": "fmi" if args.fmi else "synthetic",
        "grid_shape": list(train.shape[-2:]),
        "cell_km": round(cell_km, 2),
        "train_hours": len(train),
        "test_hours": len(test),
        "train_hours_per_number_at_50": round(len(train) / 50, 1),
        "prepare_seconds": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
        "seconds_per_network": args.seconds,
        "batch": args.batch,
        "lr": args.lr,
        "clip": args.clip,
        "held_out_mse_of_all_zero_output": round(float(np.mean(np.maximum(test_dbz, 0) ** 2)), 3),
        "table": {},
    }
    for size in (int(s) for s in args.sizes.split(",")):
        out["table"][str(size)] = run_size(size, data, args)
    out["targets"] = targets(out["table"])
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(_finite(out), indent=1))


def _finite(v):
    """NaN and infinities as null: strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


if __name__ == "__main__":
    main()
