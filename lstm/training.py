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
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: str = "mae"  # mae | mse | huber  (MAE in log space estimates the median)
    patience: int = 8  # epochs without validation improvement before stopping
    min_delta: float = 1e-4
    lr_patience: int = 3  # halve the learning rate after this many flat epochs
    grad_clip: float = 1.0
    max_seconds: float | None = None  # wall-clock budget for the whole fit
    max_windows_per_epoch: int | None = 200_000  # sample this many training windows per epoch
    max_val_windows: int | None = 100_000
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
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def set_threads(num_threads: int | None) -> None:
    n = num_threads or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def make_loss(name: str) -> nn.Module:
    losses = {"mae": nn.L1Loss(), "mse": nn.MSELoss(), "huber": nn.HuberLoss(delta=0.5)}
    if name not in losses:
        raise ValueError(f"loss {name!r} unknown; choose one of {sorted(losses)}")
    return losses[name]


Batch = tuple[torch.Tensor, ...]  # (x, y) or (x, fut, y)


def _forward(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if len(batch) == 3:
        x, fut, y = batch
        return model(x, fut), y
    x, y = batch
    return model(x), y


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
        pred, y = _forward(model, batch)
        loss = criterion(pred.reshape(y.shape), y)
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
        n = len(y)
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
        pred, y = _forward(model, batch)
        total += criterion(pred.reshape(y.shape), y).item() * len(y)
        count += len(y)
    return total / count if count else math.nan


def train(
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch],
    config: TrainConfig | None = None,
) -> TrainResult:
    """Fit `model` with Adam, stop early on the validation loss, restore the best weights."""
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
    deadline = start + cfg.max_seconds if cfg.max_seconds else None
    bad_epochs = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.monotonic()
        train_loss, steps = train_epoch(
            model, train_loader, optimizer, criterion, cfg.grad_clip, deadline
        )
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
            "lr": optimizer.param_groups[0]["lr"],
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
            result.stop_reason = f"wall-clock budget of {cfg.max_seconds:g}s reached"
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
