"""The coordinate network (Fourier-feature MLP or SIREN) and the training-time read-out head.

A *backbone* maps a location's inputs (:mod:`brainzarr.inr.inputs`) to ``n_features``
numbers; every gene reads them out linearly (``expression_g(x) = f(x) . e_g + b_g``), so one
forward pass per location serves all genes and rendering is a matrix product.
"""

from __future__ import annotations

import math

from .._torch import require_torch
from ..exceptions import InputError
from .inputs import MNI_HALF_WIDTH

torch = require_torch("inr")
nn = torch.nn

__all__ = [
    "FourierBackbone",
    "SirenBackbone",
    "EnsembleBackbone",
    "ReadoutHead",
    "INRNetwork",
    "make_backbone",
    "BACKBONES",
]

BACKBONES = ("fourier", "siren")


class FourierBackbone(nn.Module):
    """Random Fourier features of the coordinates, then an MLP (GELU).

    ``sin`` and ``cos`` of ``n_fourier`` random projections of x, y, z whose frequencies are
    drawn from N(0, 1 / length_scale_mm^2) per mm (a Gaussian-kernel prior of that length
    scale); the raw inputs (coordinates, tissue) are passed alongside.
    """

    def __init__(
        self,
        n_inputs: int,
        *,
        n_features: int = 32,
        width: int = 256,
        depth: int = 2,
        n_fourier: int = 128,
        length_scale_mm: float = 24.0,
        random_state: int = 0,
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(int(random_state))
        # frequencies act on scaled coordinates: x_mm = x_scaled * MNI_HALF_WIDTH
        freqs = torch.randn(3, n_fourier, generator=gen) * (MNI_HALF_WIDTH / float(length_scale_mm))
        self.register_buffer("frequencies", freqs)
        layers, n_in = [], 2 * n_fourier + n_inputs
        for _ in range(depth):
            layers += [nn.Linear(n_in, width), nn.GELU()]
            n_in = width
        layers.append(nn.Linear(n_in, n_features))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, :3] @ self.frequencies
        return self.mlp(torch.cat([torch.sin(proj), torch.cos(proj), x], dim=1))


class _SineLayer(nn.Module):
    def __init__(self, n_in, n_out, omega, first):
        super().__init__()
        self.omega = float(omega)
        self.linear = nn.Linear(n_in, n_out)
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / self.omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x):
        return torch.sin(self.omega * self.linear(x))


class SirenBackbone(nn.Module):
    """SIREN (Sitzmann et al. 2020): sine layers with their initialisation, then a linear layer.

    ``omega`` scales the first layer (the reference INR study used 30 on coordinates in [-1, 1]);
    hidden layers use the standard omega 30 with the matching initialisation.
    """

    def __init__(self, n_inputs: int, *, n_features: int = 32, width: int = 256, depth: int = 2, omega: float = 30.0):
        super().__init__()
        layers = [_SineLayer(n_inputs, width, omega, first=True)]
        layers += [_SineLayer(width, width, 30.0, first=False) for _ in range(depth - 1)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class EnsembleBackbone(nn.Module):
    """Several backbones side by side: their features concatenated.

    Each member is trained on its own (another seed); reading the concatenated features out
    with every member's read-out divided by the number of members averages the members'
    predictions, so an ensemble renders like a single model (one matrix product per block).
    """

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(x) for member in self.members], dim=1)


class ReadoutHead(nn.Module):
    """Linear read-out of ``n_outputs`` targets from the features, with per-donor offsets."""

    def __init__(self, n_features: int, n_outputs: int, n_donors: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, n_outputs) / math.sqrt(n_features) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_outputs))
        self.donor = nn.Parameter(torch.zeros(n_donors, n_outputs)) if n_donors else None

    def forward(self, features: torch.Tensor, donor: torch.Tensor | None = None) -> torch.Tensor:
        out = features @ self.weight + self.bias
        if self.donor is not None and donor is not None:
            out = out + self.donor[donor]
        return out


class INRNetwork(nn.Module):
    """Backbone + head, as trained."""

    def __init__(self, backbone: nn.Module, head: ReadoutHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x, donor=None):
        return self.head(self.backbone(x), donor)


def make_backbone(
    kind: str,
    n_inputs: int,
    *,
    n_features: int,
    width: int,
    depth: int,
    n_fourier: int,
    length_scale_mm: float,
    omega: float,
    random_state: int,
) -> nn.Module:
    """The coordinate network ``kind`` (one of :data:`BACKBONES`): inputs -> ``n_features`` features."""
    if kind == "fourier":
        return FourierBackbone(
            n_inputs,
            n_features=n_features,
            width=width,
            depth=depth,
            n_fourier=n_fourier,
            length_scale_mm=length_scale_mm,
            random_state=random_state,
        )
    if kind == "siren":
        return SirenBackbone(n_inputs, n_features=n_features, width=width, depth=depth, omega=omega)
    raise InputError(f"unknown backbone {kind!r}; choose from {', '.join(BACKBONES)}")
