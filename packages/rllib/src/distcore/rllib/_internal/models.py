"""Torch building blocks for the default RLModules: MLP and CNN encoders from ``model_config``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from distcore.rllib._internal.spaces import flat_size, is_image_space

DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "fcnet_hiddens": [256, 256],
    "fcnet_activation": "tanh",
    "conv_filters": None,  # [[out_channels, kernel, stride], ...]; a default stack for images
    "conv_activation": "relu",
    "vf_share_layers": False,
    "free_log_std": False,
}

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "swish": nn.SiLU,
                "linear": nn.Identity}


class ModelConfigError(ValueError):
    """A model_config entry rllib cannot build a model from."""


def merged_model_config(model_config: dict[str, Any] | None) -> dict[str, Any]:
    config = dict(DEFAULT_MODEL_CONFIG)
    for key, value in (model_config or {}).items():
        config[key] = value
    if config["fcnet_activation"] not in _ACTIVATIONS:
        raise ModelConfigError(f"fcnet_activation {config['fcnet_activation']!r}: use one of {sorted(_ACTIVATIONS)}")
    if not all(isinstance(h, int) and h > 0 for h in config["fcnet_hiddens"]):
        raise ModelConfigError(f"fcnet_hiddens must be positive ints, got {config['fcnet_hiddens']!r}")
    return config


def mlp(in_size: int, hiddens: list[int], activation: str, out_size: int | None = None,
        out_gain: float = 1.0) -> nn.Sequential:
    """Linear layers with ``activation`` between them; an optional linear output layer."""
    layers: list[nn.Module] = []
    size = in_size
    for h in hiddens:
        linear = nn.Linear(size, h)
        nn.init.orthogonal_(linear.weight, gain=2 ** 0.5)
        nn.init.zeros_(linear.bias)
        layers += [linear, _ACTIVATIONS[activation]()]
        size = h
    if out_size is not None:
        head = nn.Linear(size, out_size)
        nn.init.orthogonal_(head.weight, gain=out_gain)
        nn.init.zeros_(head.bias)
        layers.append(head)
    return nn.Sequential(*layers)


class CNNEncoder(nn.Module):
    """Conv stack over [B, H, W, C] images -> flat features of ``out_size``."""

    def __init__(self, shape: tuple[int, ...], filters: list[list[int]] | None, activation: str) -> None:
        super().__init__()
        h, w, c = shape
        if filters is None:
            filters = [[16, 8, 4], [32, 4, 2]] if min(h, w) >= 36 else [[16, 3, 1], [32, 3, 1]]
        layers: list[nn.Module] = []
        channels = c
        for spec in filters:
            if len(spec) != 3:
                raise ModelConfigError(f"conv_filters entries are [out_channels, kernel, stride], got {spec!r}")
            out, kernel, stride = spec
            layers += [nn.Conv2d(channels, out, kernel, stride), _ACTIVATIONS[activation]()]
            channels = out
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.out_size = int(self.net(torch.zeros(1, c, h, w)).shape[-1])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.permute(0, 3, 1, 2))


def encoder_for(space: gym.Space, config: dict[str, Any]) -> tuple[nn.Module, int]:
    """An encoder for preprocessed observations of ``space`` and its output size."""
    if is_image_space(space):
        cnn = CNNEncoder(tuple(space.shape), config["conv_filters"], config["conv_activation"])
        return cnn, cnn.out_size
    return nn.Identity(), flat_size(space)
