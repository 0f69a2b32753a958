"""Training, read top to bottom: seed everything, batch windows, one epoch of updates, one
pass of validation, early stopping that restores the best weights, a NaN-loss guard and an
optional wall-clock budget.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from lstm.errors import TrainingError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings; stored in the model metadata."""

    epochs: int = 200
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: str = "mae"  # mae | mse | huber  (MAE in log space estimates the median)
    patience: int = 8  # epochs without validation improvement before stopping
    min_delta: float = 1e-4
    lr_patience: int = 3  # halve the learning rate after this many flat epochs
    grad_clip: float = 1.0
    # wall-clock budget of the whole fit: early stopping, interval calibration and the refit
    # (`fit_forecaster`); `train` alone applies it to its own loop
    max_seconds: float | None = None
    early_stop_share: float = 0.5  # of the budget, for early stopping when a refit follows
    max_windows_per_epoch: int | None = 200_000  # sample this many training windows per epoch
    max_val_windows: int | None = 100_000
    # After early stopping, train a fresh network on train + validation (the most recent
    # data) with the chosen epochs and learning rates, plus a few at half the last rate,
    # and average the weights of the last epochs (SWA). When the budget left cannot hold
    # the whole schedule, each epoch samples fewer windows (or the refit is skipped).
    refit_on_validation: bool = True
    refit_extra_epochs: int = 3
    refit_average_last: int = 5
    series_weighting: bool = True  # weight windows by 1 / the series' naive log-MAE (~MASE)
    seed: int = 0
    num_threads: int | None = None  # torch intra-op threads (None: all cores)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stop_reason: str = ""
    seconds: float = 0.0
    steps: int = 0


def set_seed(seed: int) -> None:
    """Same seed, same data -> same weights (on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(num_threads: int | None) -> None:
    n = num_threads or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def make_loss(name: str) -> nn.Module:
    """Element-wise loss (reduction='none'); `batch_loss` applies weights and the mean."""
    losses = {
        "mae": nn.L1Loss(reduction="none"),
        "mse": nn.MSELoss(reduction="none"),
        "huber": nn.HuberLoss(reduction="none", delta=0.5),
    }
    if name not in losses:
        raise ValueError(f"loss {name!r} unknown; choose one of {sorted(losses)}")
    return losses[name]


Batch = tuple[torch.Tensor, ...]  # (x, y), (x, fut, y) or (x, fut, y, weight)


def batch_loss(model: nn.Module, batch: Batch, criterion: nn.Module) -> tuple[torch.Tensor, int]:
    """Mean (optionally weighted) loss of one batch and its size."""
    if len(batch) == 4:
        x, fut, y, w = batch
        pred = model(x, fut)
    elif len(batch) == 3:
        (x, fut, y), w = batch, None
        pred = model(x, fut)
    else:
        (x, y), w = batch, None
        pred = model(x)
    elem = criterion(pred.reshape(y.shape), y)
    if w is not None:
        elem = elem * w.reshape(w.shape + (1,) * (elem.ndim - w.ndim))
    return elem.mean(), len(y)


def train_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    grad_clip: float | None = 1.0,
    deadline: float | None = None,
) -> tuple[float, int]:
    """One pass of updates; returns (mean loss, steps). Raises on a non-finite loss."""
    model.train()
    total, count, steps = 0.0, 0, 0
    for batch in loader:
        loss, n = batch_loss(model, batch, criterion)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"training loss became {loss.item()} at step {steps}: check the input for "
                "NaN/Inf values or lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += loss.item() * n
        count += n
        steps += 1
        if deadline is not None and time.monotonic() > deadline:
            break
    return (total / count if count else math.nan), steps


@torch.no_grad()
def validate_epoch(model: nn.Module, loader: Iterable[Batch], criterion: nn.Module) -> float:
    """Mean validation loss (eval mode: no dropout)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        loss, n = batch_loss(model, batch, criterion)
        total += loss.item() * n
        count += n
    return total / count if count else math.nan


def train(
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch],
    config: TrainConfig | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Fit `model` with Adam, stop early on the validation loss, restore the best weights.

    Stops at `deadline` (time.monotonic()), default: `max_seconds` from now."""
    cfg = config or TrainConfig()
    set_threads(cfg.num_threads)
    criterion = make_loss(cfg.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=cfg.lr_patience
    )
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    start = time.monotonic()
    if deadline is None and cfg.max_seconds:
        deadline = start + cfg.max_seconds
    bad_epochs = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.monotonic()
        lr_used = optimizer.param_groups[0]["lr"]
        train_loss, steps = train_epoch(
            model, train_loader, optimizer, criterion, cfg.grad_clip, deadline
        )
        t_train = time.monotonic() - t0
        val_loss = validate_epoch(model, val_loader, criterion)
        if not math.isfinite(val_loss):
            raise TrainingError(f"validation loss is {val_loss} at epoch {epoch}")
        scheduler.step(val_loss)
        result.steps += steps
        improved = val_loss < result.best_val_loss - cfg.min_delta
        if improved:
            result.best_val_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr_used,
            "steps": steps,
            "train_seconds": t_train,
            "seconds": time.monotonic() - t0,
        }
        result.history.append(row)
        log.info(
            "epoch %3d  train %.4f  val %.4f%s  lr %.1e  %.1fs",
            epoch,
            train_loss,
            val_loss,
            " *" if improved else "",
            row["lr"],
            row["seconds"],
        )
        if bad_epochs >= cfg.patience:
            result.stop_reason = f"early stop: no improvement for {cfg.patience} epochs"
            break
        if deadline is not None and time.monotonic() > deadline:
            result.stop_reason = f"wall-clock budget reached ({time.monotonic() - start:.0f}s)"
            break
    else:
        result.stop_reason = f"reached {cfg.epochs} epochs"
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.monotonic() - start
    log.info(
        "training done: %s; best epoch %d (val %.4f), %.1fs, %d steps",
        result.stop_reason,
        result.best_epoch,
        result.best_val_loss,
        result.seconds,
        result.steps,
    )
    return result


def train_schedule(
    model: nn.Module,
    train_loader: Iterable[Batch],
    lrs: list[float],
    config: TrainConfig | None = None,
    average_last: int = 0,
    deadline: float | None = None,
) -> list[dict]:
    """Train for len(lrs) epochs with the given learning rate per epoch and no validation:
    replays a finished run's schedule on more data (train + validation). With
    `average_last` = k, the weights after each of the last k epochs are averaged (SWA).
    Stops at `deadline` (time.monotonic()) if it comes first."""
    cfg = config or TrainConfig()
    averaged: dict[str, torch.Tensor] | None = None
    n_avg = 0
    criterion = make_loss(cfg.loss)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lrs[0] if lrs else cfg.lr, weight_decay=cfg.weight_decay
    )
    history = []
    for epoch, lr in enumerate(lrs, 1):
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.monotonic()
        loss, steps = train_epoch(
            model, train_loader, optimizer, criterion, cfg.grad_clip, deadline
        )
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "lr": lr,
                "steps": steps,
                "seconds": time.monotonic() - t0,
            }
        )
        if average_last and epoch > len(lrs) - average_last:
            state = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
            if averaged is None:
                averaged = state
            else:
                for k in averaged:
                    averaged[k] += (state[k] - averaged[k]) / (n_avg + 1)
            n_avg += 1
        log.info(
            "refit epoch %3d  train %.4f  lr %.1e  %.1fs", epoch, loss, lr, history[-1]["seconds"]
        )
        if deadline is not None and time.monotonic() > deadline:
            log.warning(
                "refit stopped by the wall-clock budget after %d of %d epochs", epoch, len(lrs)
            )
            break
    if averaged is not None and n_avg > 1:
        model.load_state_dict(averaged)
    model.eval()
    return history


class BatchIterator:
    """Re-iterable batches of tensors drawn from an index range, shuffled per epoch.

    `make_batch(idx)` turns an index array into a batch tuple; this keeps the windows lazy
    (gathered and encoded per batch), so memory does not grow with the data.
    """

    def __init__(
        self,
        n: int,
        make_batch,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        max_items: int | None = None,
    ) -> None:
        self.n, self.make_batch, self.batch_size = n, make_batch, batch_size
        self.shuffle, self.max_items = shuffle, max_items
        self.rng = np.random.default_rng(seed)
        self._fixed = None
        if not shuffle and max_items is not None and n > max_items:
            self._fixed = np.sort(self.rng.choice(n, size=max_items, replace=False))

    def __iter__(self) -> Iterator[Batch]:
        if self.shuffle:
            order = self.rng.permutation(self.n)
            if self.max_items is not None:
                order = order[: self.max_items]
        else:
            order = self._fixed if self._fixed is not None else np.arange(self.n)
        for i in range(0, len(order), self.batch_size):
            yield self.make_batch(order[i : i + self.batch_size])

    def __len__(self) -> int:
        n = min(self.n, self.max_items) if self.max_items else self.n
        return math.ceil(n / self.batch_size)
