"""The overfit-a-small-batch search: the smallest embedding that can still learn a few images.

Each Optuna trial builds a candidate network, trains it for a fixed number of Adam steps on the
same handful of hours (4 by default) and scores how far the loss fell. A candidate *learns* when
its final loss is at most ``learn_ratio`` of its loss before training. The answer is the learning
candidate with the smallest embedding (ties: the lower final loss).

The original network is searched on its published grid with Optuna's GridSampler; ours with the
default (TPE) sampler. Candidates over the parameter budget, or whose pooling does not fit the
grid, are rejected with the reason (pruned trials with a ``rejected`` attribute). The study lives
in any database Optuna supports (SQLite by default), so several processes or machines can share
it and an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import optuna
import torch

from wxembed.archive import Archive
from wxembed.errors import ArchiveError, ModelError
from wxembed.model import build_model
from wxembed.model.common import count_parameters, normalise_raw
from wxembed.model.losses import logcosh

log = logging.getLogger(__name__)

SEED_GRID: dict[str, list[int]] = {
    "num_layers": [2, 3, 4, 5, 6],
    "pool_size": [2, 4, 6],
    "num_filters": [4, 5],
    "num_dense": [0, 50, 256],
}
"""The original search grid."""


@dataclass(frozen=True)
class TuneConfig:
    """An overfit-batch search."""

    archive: str
    """Archive whose first ``n_images`` stored hours are the batch to overfit."""
    storage: str = "sqlite:///tune.db"
    """Optuna storage URL; the same URL and study name resume or share a study."""
    study_name: str = "wxembed-tune"
    """Name of the study inside the storage."""
    arch: str = "seed"
    """Network searched: "seed" (grid sampler over SEED_GRID) or "fast" (TPE sampler)."""
    n_images: int = 4
    """Hours in the batch to overfit."""
    steps: int = 100
    """Adam steps per candidate."""
    lr: float = 1e-3
    """Adam learning rate."""
    n_trials: int | None = None
    """Trials to run in this call (None: the whole grid for "seed", 20 for "fast")."""
    max_params: int = 1_000_000
    """Reject candidates with more parameters than this."""
    learn_ratio: float = 0.25
    """A candidate learns when final loss <= learn_ratio x its loss before training."""
    search_space: dict = field(default_factory=dict)
    """Override the grid (seed) or the ranges (fast), e.g. {"num_layers": [2, 3]}."""
    seed: int = 0
    """Seed of the sampler and of each candidate's initial weights."""


def _batch(archive: Archive, n: int) -> torch.Tensor:

    times = archive.stored_times()
    if len(times) == 0:
        raise ArchiveError(f"{archive.path}: no stored hours to tune on")
    raw = archive.read_raw(times[:n])  # (n, ny, nx) uint8
    return normalise_raw(torch.from_numpy(raw)[:, None])  # (n, 1, ny, nx) in [0, 1]


def _suggest(trial, config: TuneConfig) -> dict:
    if config.arch == "seed":
        space = {**SEED_GRID, **config.search_space}
        return {name: trial.suggest_categorical(name, values) for name, values in space.items()}
    space = {
        "embedding_dim": (4, 256),
        "patch": [4, 8],
        "code_channels": [8, 16, 32],
        **config.search_space,
    }
    hp = {}
    for name, values in space.items():
        if isinstance(values, tuple):
            hp[name] = trial.suggest_int(name, values[0], values[1], log=True)
        else:
            hp[name] = trial.suggest_categorical(name, values)
    return hp


def overfit(
    model: torch.nn.Module, batch: torch.Tensor, steps: int, lr: float
) -> tuple[float, float]:
    """Train ``model`` on ``batch`` for ``steps`` Adam steps; return (loss before, loss after)."""

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        before = float(logcosh(model(batch), batch))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = logcosh(model(batch), batch)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(logcosh(model(batch), batch))
    return before, after


def _objective(config: TuneConfig, batch: torch.Tensor, in_shape: tuple[int, int]):

    def objective(trial: optuna.Trial) -> float:
        hp = _suggest(trial, config)
        try:
            torch.manual_seed(config.seed)
            model = build_model(config.arch, in_shape, **hp)
        except ModelError as exc:
            trial.set_user_attr("rejected", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        n_params = count_parameters(model)
        trial.set_user_attr("parameters", n_params)
        trial.set_user_attr("embedding_dim", int(model.embedding_dim))
        if n_params > config.max_params:
            reason = f"{n_params:,} parameters, over the budget of {config.max_params:,}"
            trial.set_user_attr("rejected", reason)
            raise optuna.TrialPruned(reason)
        before, after = overfit(model, batch, config.steps, config.lr)
        trial.set_user_attr("loss_before", before)
        trial.set_user_attr("learns", bool(after <= config.learn_ratio * before))
        log.info(
            "trial %d %s: %d params, embedding %d, loss %.5f -> %.5f",
            trial.number,
            hp,
            n_params,
            model.embedding_dim,
            before,
            after,
        )
        return after

    return objective


def tune(config: TuneConfig, *, progress: bool = True) -> dict:
    """Run (or resume) the search; return the study's summary and the smallest candidate that
    learns."""

    archive = Archive(config.archive)
    batch = _batch(archive, config.n_images)
    if config.arch == "seed":
        space = {**SEED_GRID, **config.search_space}
        sampler = optuna.samplers.GridSampler(space, seed=config.seed)
        n_trials = config.n_trials or math.prod(len(v) for v in space.values())
    else:
        sampler = optuna.samplers.TPESampler(seed=config.seed)
        n_trials = config.n_trials or 20
    study = optuna.create_study(
        study_name=config.study_name,
        storage=config.storage,
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )
    study.set_user_attr("arch", config.arch)
    if config.arch == "seed":
        done = {
            tuple(t.params.get(k) for k in space) for t in study.trials if t.state.is_finished()
        }
        n_trials = max(0, min(n_trials, math.prod(len(v) for v in space.values()) - len(done)))
    if n_trials:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(
            _objective(config, batch, archive.grid.shape),
            n_trials=n_trials,
            show_progress_bar=progress,
            catch=(),
        )
    return summarise(study)


def summarise(study) -> dict:

    trials = []
    for t in study.trials:
        trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "final_loss": t.value,
                **{
                    k: t.user_attrs.get(k)
                    for k in ("embedding_dim", "parameters", "loss_before", "learns", "rejected")
                },
            }
        )
    learning = [t for t in trials if t["state"] == "COMPLETE" and t["learns"]]
    best = min(learning, key=lambda t: (t["embedding_dim"], t["final_loss"])) if learning else None
    counts = {
        s.name.lower(): sum(t["state"] == s.name for t in trials) for s in optuna.trial.TrialState
    }
    return {
        "study": study.study_name,
        "trials": trials,
        "counts": {k: v for k, v in counts.items() if v},
        "smallest_learning": best,
        "lowest_loss": min(
            (t for t in trials if t["state"] == "COMPLETE"),
            key=lambda t: t["final_loss"],
            default=None,
        ),
    }


__all__ = ["SEED_GRID", "TuneConfig", "overfit", "summarise", "tune"]
