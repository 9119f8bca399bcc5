"""A student with affine norms (``UNet(norm="affine")``, or ``"mixed"``: affine at full resolution) run
with its scales and shifts folded into the convolutions: the same function, without those layers'
passes over the activations. A GroupNorm (the coarser levels of ``"mixed"``) stays a layer.

Each :class:`~.unet.ChannelAffine` is a fixed per-channel ``a * x + b``, so it merges into a linear layer
beside it:

* a block's second norm into the block's first convolution (``a * conv(x) + b`` is a convolution);
* a block's first norm into whatever made the block's input when nothing else reads that tensor: the
  stem, a downsampling convolution, or the block before (its second convolution and its skip). The
  block's own skip then reads the scaled tensor ``a * x + b`` and undoes it: a 1x1 skip convolution takes
  ``1 / a`` into its weights, an identity skip becomes ``x / a`` in the residual sum (one ``addcmul``
  instead of an add) with ``-b / a`` in the second convolution's bias. Where some ``|a|`` is below
  :data:`MIN_SCALE` the norm is not folded (it stays a pass), so nothing is divided by a tiny number;
* the output norm into the last block.

The encoder's features that the decoder concatenates are also read by the next downsampling
convolution, so the decoder block's first norm stays a pass on those channels only.

On a CPU with oneDNN, a block's first convolution and the SiLU after it run as one oneDNN call, and its
second convolution adds the skip convolution's output as it writes (``mkldnn._convolution_pointwise``,
the fused kernels torch's own compiler uses): two passes over the activations fewer per block.
Outputs equal the unfolded network's up to float rounding (tests/test_folded_student.py).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import crop_to, pad_to_multiple
from .unet import ChannelAffine, ResBlock, UNet, run_encoder

MIN_SCALE = 1e-3
FUSE = True  # the oneDNN fused calls where they apply (a switch for timing them: docs/PROFILE.md)


@dataclass(frozen=True)
class Affine:
    """``scale * x + shift`` per channel; float32 vectors of one length."""

    scale: torch.Tensor
    shift: torch.Tensor

    @classmethod
    def of(cls, norm: ChannelAffine) -> Affine:
        return cls(norm.weight.detach().float(), norm.bias.detach().float())

    def part(self, channels: slice) -> Affine:
        return Affine(self.scale[channels], self.shift[channels])

    def divisible(self) -> bool:
        return bool((self.scale.abs() >= MIN_SCALE).all())

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype)[:, None, None], x, self.scale.to(x.dtype)[:, None, None])


def _conv_then(conv: nn.Conv2d, after: Affine | None, *, shift: bool = True) -> nn.Conv2d:
    """A copy of ``conv`` whose output is ``after`` applied to the original's (its scale only, without
    ``shift``)."""
    folded = copy.deepcopy(conv)
    if after is None:
        return folded
    folded.weight.mul_(after.scale[:, None, None, None])
    assert folded.bias is not None
    folded.bias.mul_(after.scale)
    if shift:
        folded.bias.add_(after.shift)
    return folded


def _conv_undoing(conv: nn.Conv2d, stored: Affine) -> nn.Conv2d:
    """A copy of the 1x1 convolution ``conv`` that reads ``stored.scale * x + stored.shift`` and gives
    what ``conv`` gives on ``x``."""
    folded = copy.deepcopy(conv)
    assert folded.kernel_size == (1, 1) and folded.bias is not None
    folded.bias.sub_(folded.weight[:, :, 0, 0] @ (stored.shift / stored.scale))
    folded.weight.div_(stored.scale[None, :, None, None])
    return folded


@functools.cache
def _fused_calls() -> bool:
    """Whether this torch has oneDNN and its fused convolution calls (a private op torch's compiler uses)."""
    try:
        return torch.backends.mkldnn.is_available() and callable(torch.ops.mkldnn._convolution_pointwise.binary)
    except (AttributeError, RuntimeError):
        return False


def _fusable(x: torch.Tensor) -> bool:
    return FUSE and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and _fused_calls()


class _FusedConv:
    """A 3x3 convolution run by oneDNN with a SiLU or a sum fused in; its weights cast once per dtype."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.conv = conv
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)  # type: ignore[arg-type]
        self.weights: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    def _weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if dtype not in self.weights:
            weight = self.conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
            self.weights[dtype] = (weight, self.conv.bias.detach().to(dtype))  # type: ignore[union-attr]
        return self.weights[dtype]

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        """``silu(conv(x))``."""
        weight, bias = self._weights(x.dtype)
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *self.geometry, "swish", [], "")

    def plus(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``conv(x) + other``."""
        weight, bias = self._weights(x.dtype)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other.to(x.dtype), weight, bias, *self.geometry, "add", None, None, [], None
        )


class FoldedBlock(nn.Module):
    """A :class:`~.unet.ResBlock` with its norms folded.

    folded_in: the block's input already holds its first norm's output (folded into what made it);
    after: the affine to fold into the block's output (the next layer's norm), or None.
    """

    def __init__(self, block: ResBlock, folded_in: bool, after: Affine | None) -> None:
        super().__init__()
        norm1, norm2 = _affine(block.norm1), _affine(block.norm2)
        self.pre: Affine | nn.Module | None = None if folded_in else norm1 or copy.deepcopy(block.norm1)
        stored = norm1 if folded_in else None
        self.conv1 = _conv_then(block.conv1, norm2)
        self.norm2 = None if norm2 is not None else copy.deepcopy(block.norm2)  # a GroupNorm stays a layer
        self.conv2 = _conv_then(block.conv2, after)
        self.skip: nn.Conv2d | None = None
        self.skip_scale: torch.Tensor | None = None
        self._fused = (_FusedConv(self.conv1), _FusedConv(self.conv2))
        if isinstance(block.skip, nn.Conv2d):
            skip = block.skip if stored is None else _conv_undoing(block.skip, stored)
            self.skip = _conv_then(skip, after, shift=False)
            return
        scale = torch.ones(block.conv2.out_channels) if after is None else after.scale
        if stored is not None:  # after(conv2 + x) with x = (stored - shift) / scale
            self.conv2.bias.sub_(scale * stored.shift / stored.scale)  # type: ignore[union-attr]
            scale = scale / stored.scale
        if not bool((scale == 1).all()):
            self.skip_scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = None if self.skip is None else self.skip(x)  # first: x (a fresh tensor) is then free
        if self.pre is not None:
            h = F.silu(self.pre.apply(x) if isinstance(self.pre, Affine) else self.pre(x), inplace=True)
        else:
            h = F.silu(x, inplace=skip is not None)  # an identity skip still needs x
        fused = _fusable(h)
        if self.norm2 is not None:
            h = F.silu(self.norm2(self.conv1(h)), inplace=True)
        else:
            h = self._fused[0].silu(h) if fused else F.silu(self.conv1(h), inplace=True)
        if skip is not None:
            return self._fused[1].plus(h, skip) if fused else self.conv2(h).add_(skip)
        h = self.conv2(h)
        if self.skip_scale is not None:
            return h.addcmul_(x, self.skip_scale.to(x.dtype)[:, None, None])
        return h.add_(x)


def _affine(norm: nn.Module) -> Affine | None:
    """A :class:`~.unet.ChannelAffine` as an :class:`Affine`; None for a GroupNorm."""
    return Affine.of(norm) if isinstance(norm, ChannelAffine) else None


def _first_norm(block: nn.Module) -> Affine | None:
    """The block's first norm when it may be folded into what makes the block's input, else None."""
    assert isinstance(block, ResBlock)
    norm = _affine(block.norm1)
    return norm if norm is not None and norm.divisible() else None


class FoldedUNet(nn.Module):
    """Inference-only copy of a time-free ``UNet(norm="affine")`` or ``"mixed"``: same outputs, fewer passes
    (a GroupNorm stays a layer)."""

    def __init__(self, unet: UNet) -> None:
        super().__init__()
        assert unet.time is None, "only the time-free student is folded"
        self.size_multiple = unet.size_multiple
        down: list[list[nn.Module]] = [list(blocks) for blocks in unet.down]  # type: ignore[call-overload]
        up: list[list[nn.Module]] = [list(blocks) for blocks in unet.up]  # type: ignore[call-overload]
        self.stem = _conv_then(unet.stem, _first_norm(down[0][0]))
        self.downsample = nn.ModuleList(
            _conv_then(conv, _first_norm(down[level + 1][0])) for level, conv in enumerate(unet.downsample)  # type: ignore[arg-type]
        )
        final = _affine(unet.out_norm)
        self.out_norm = None if final is not None else copy.deepcopy(unet.out_norm)
        self.down = nn.ModuleList()
        for level, blocks in enumerate(down):
            bottom = level == len(down) - 1
            last = (_decoder_input(up[0][0], blocks[-1]) if up else final) if bottom else None
            self.down.append(_fold_level(blocks, folded_in=_first_norm(blocks[0]) is not None, last=last))
        self.up = nn.ModuleList()
        self.skip_norms: list[Affine | None] = []  # the decoder block's first norm on the encoder's channels
        for index, blocks in enumerate(up):
            first = _first_norm(blocks[0])
            previous = (up[index - 1] if index else down[-1])[-1]
            width = previous.conv2.out_channels  # type: ignore[union-attr]
            self.skip_norms.append(None if first is None else first.part(slice(width, None)))
            last = _decoder_input(up[index + 1][0], blocks[-1]) if index + 1 < len(up) else final
            self.up.append(_fold_level(blocks, folded_in=first is not None, last=last))
        self.out = copy.deepcopy(unet.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(x, self.size_multiple, "reflect")
        h, skips = run_encoder(self.stem(padded), self.down, self.downsample, lambda block, h: block(h))
        for blocks, norm in zip(self.up, self.skip_norms, strict=True):
            h = F.interpolate(h, scale_factor=2, mode="nearest")  # commutes with a per-channel affine
            skip = skips.pop()
            h = torch.cat([h, skip if norm is None else norm.apply(skip)], dim=1)
            for block in blocks:  # type: ignore[attr-defined]
                h = block(h)
        if self.out_norm is not None:
            h = self.out_norm(h)
        return crop_to(self.out(F.silu(h, inplace=True)), size)


def _decoder_input(consumer: nn.Module, producer: nn.Module) -> Affine | None:
    """The share of ``consumer``'s first norm on the channels ``producer`` gives it (the upsampled
    ones, first in the concatenation), when that norm is folded."""
    norm = _first_norm(consumer)
    width = producer.conv2.out_channels  # type: ignore[union-attr]
    return None if norm is None else norm.part(slice(0, width))


def _fold_level(blocks: list[nn.Module], *, folded_in: bool, last: Affine | None) -> nn.ModuleList:
    """One level's blocks: each folds the next one's first norm into its output; the last folds ``last``."""
    folded = []
    for index, block in enumerate(blocks):
        after = _first_norm(blocks[index + 1]) if index + 1 < len(blocks) else last
        folded.append(FoldedBlock(block, folded_in, after))  # type: ignore[arg-type]
        folded_in = after is not None
    return nn.ModuleList(folded)
