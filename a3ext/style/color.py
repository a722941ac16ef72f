"""Colour helpers of colour-preserving style transfer (Gatys et al. 2016, "Preserving
Color in Neural Artistic Style Transfer"): RGB <-> YIQ, a backbone's normalised space
<-> pixel intensities, and the grey luminance image a luminance-only transfer runs on.

May import: torch only (a backbone is passed in; its ``pixel_mean`` / ``pixel_std``
are read).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rgb_to_yiq", "yiq_to_rgb"]


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]], dtype=torch.float64)


def rgb_to_yiq(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB intensities in [0, 1] -> YIQ (luminance Y, chroma I and Q)."""
    m = _RGB_TO_YIQ.to(rgb.device, rgb.dtype)
    return torch.einsum("ij,njhw->nihw", m, rgb)


def yiq_to_rgb(yiq: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_yiq` (exact matrix inverse; no clamping)."""
    m = torch.linalg.inv(_RGB_TO_YIQ).to(yiq.device, yiq.dtype)
    return torch.einsum("ij,njhw->nihw", m, yiq)


def _to_pixels(x: Tensor, cnn) -> Tensor:
    return x * cnn.pixel_std.to(x.dtype) + cnn.pixel_mean.to(x.dtype)


def _from_pixels(p: Tensor, cnn) -> Tensor:
    return (p - cnn.pixel_mean.to(p.dtype)) / cnn.pixel_std.to(p.dtype)


def _luminance_image(x: Tensor, cnn, match: Tensor | None = None) -> Tensor:
    """The luminance of normalised image ``x`` as a grey 3-channel normalised image; with
    ``match`` (another normalised image), the luminance is shifted and scaled to the mean
    and standard deviation of ``match``'s luminance (Gatys et al.'s luminance matching)."""
    y = rgb_to_yiq(_to_pixels(x, cnn))[:, :1]
    if match is not None:
        ym = rgb_to_yiq(_to_pixels(match, cnn))[:, :1]
        y = (y - y.mean()) / y.std().clamp_min(1e-8) * ym.std() + ym.mean()
    return _from_pixels(y.clamp(0.0, 1.0).expand(-1, 3, -1, -1).contiguous(), cnn)

