"""The network: an LSTM encoder and a direct multi-horizon decoder.

The encoder reads the scaled input window; a linear adapter turns its last hidden state into
one context vector per horizon step; a small MLP, shared across steps, maps each step's
context plus that step's known-future features (seasonal lags, calendar) to the forecast.
The layout follows neuralforecast's LSTM (encoder, context adapter, MLP decoder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn


@dataclass
class LSTMConfig:
    """Everything that fixes the network's shape; stored in the model metadata."""

    input_size: int = 5
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    horizon: int = 12  # H outputs, one per step
    future_size: int = 0  # known-future features per target step
    context_size: int = 16
    decoder_hidden: int = 64
    naive_skip: bool = True  # add the last observed (scaled) value to every step's output

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LSTMConfig:
        known = {f.name for f in fields(cls)}
        # artifacts written before naive_skip existed had no skip connection
        d = {"naive_skip": False, **d}
        return cls(**{k: v for k, v in d.items() if k in known})


class LSTMModel(nn.Module):
    """LSTMModel(config) or, as in the seed, LSTMModel(input_size, hidden_size, num_layers, ...)."""

    def __init__(
        self,
        config: LSTMConfig | int | None = None,
        hidden_size: int | None = None,
        num_layers: int | None = None,
        output_size: int | None = None,
        dropout: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        if not isinstance(config, LSTMConfig):
            seed_args = {
                "input_size": config,
                "hidden_size": hidden_size,
                "num_layers": num_layers,
                "horizon": output_size,
                "dropout": dropout,
                **kwargs,
            }
            config = LSTMConfig(**{k: v for k, v in seed_args.items() if v is not None})
        self.config = config
        c = config
        self.lstm = nn.LSTM(
            input_size=c.input_size,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.context = nn.Linear(c.hidden_size, c.context_size * c.horizon)
        self.decoder = nn.Sequential(
            nn.Linear(c.context_size + c.future_size, c.decoder_hidden),
            nn.ReLU(),
            nn.Linear(c.decoder_hidden, 1),
        )

    # the seed's attribute names
    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def output_size(self) -> int:
        return self.config.horizon

    def forward(self, x: torch.Tensor, fut: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, W, F_in], fut [B, H, F_fut] -> forecasts [B, H] in scaled units."""
        c = self.config
        b = x.shape[0]
        h, _ = self.lstm(x)  # [B, W, hidden]
        ctx = self.context(h[:, -1])  # [B, H * context]
        ctx = ctx.view(b, c.horizon, c.context_size)  # [B, H, context]
        if c.future_size:
            if fut is None:
                raise ValueError(
                    f"this model needs future features [B, {c.horizon}, {c.future_size}]"
                )
            ctx = torch.cat([ctx, fut], dim=-1)  # [B, H, context + F_fut]
        out = self.decoder(ctx).squeeze(-1)  # [B, H]
        if c.naive_skip:
            out = out + x[:, -1, :1]  # [B, H] + [B, 1]: learn the change from the last value
        return out
