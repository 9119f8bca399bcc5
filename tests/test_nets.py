"""The blind spot is exact, the networks take any size, PD is invertible."""

from __future__ import annotations

import pytest
import torch

from bsgd_cli.config import PRESETS, BlindSpotConfig
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.nets import BlindSpotNet, UNet
from bsgd_cli.nets.common import pd_down, pd_up


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Give FiLM layers (zero-initialised) non-trivial weights so time conditioning really acts."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


@pytest.mark.slow
@pytest.mark.parametrize("stride", [1, 2, 5])
@pytest.mark.parametrize("t_value", [0.0, 0.3, 0.9])
def test_blind_spot_gradient_is_zero_at_centre(stride: int, t_value: float) -> None:
    torch.manual_seed(1)
    model = BsgdModel(PRESETS["tiny"]).double()
    _randomise(model.blind_spot_net, seed=int(stride * 10 + t_value * 10))
    size = 40 if stride != 1 else 24
    generator = torch.Generator().manual_seed(stride)
    z = torch.randn(1, 3, size, size + 4 * stride, dtype=torch.float64, generator=generator, requires_grad=True)
    t = torch.full((1,), t_value, dtype=torch.float64)
    out = model.blind_spot(z, t, stride)
    assert out.shape == z.shape
    positions = torch.randint(0, size, (6, 2), generator=generator)
    for y, x in positions.tolist():
        for channel in range(3):
            (grad,) = torch.autograd.grad(out[0, channel, y, x], z, retain_graph=True)
            assert torch.all(grad[0, :, y, x] == 0), f"output ({y},{x}) sees its own input pixel"
            # the blind spot is only the centre: neighbours do influence the output
            assert grad.abs().sum() > 0


def test_blind_spot_square_and_non_square_paths_agree() -> None:
    torch.manual_seed(0)
    net = BlindSpotNet(BlindSpotConfig(width=8, mults=(1, 1), head_width=8)).double()
    _randomise(net, 3)
    z = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    batched = net(z, t)
    looped = net(z, t, batch_rotations=False)
    assert torch.allclose(batched, looped, atol=1e-12)


@pytest.mark.parametrize("stride", [2, 5])
def test_pd_round_trip(stride: int) -> None:
    x = torch.randn(2, 3, 10 * stride, 6 * stride)
    sub = pd_down(x, stride)
    assert sub.shape == (2 * stride * stride, 3, 10, 6)
    assert torch.equal(pd_up(sub, stride), x)
    # a sub-image holds one phase of the grid
    assert torch.equal(sub[1], x[0, :, 0::stride, 1::stride])


@pytest.mark.parametrize("height,width", [(17, 23), (32, 32), (5, 9)])
def test_networks_take_any_size(height: int, width: int) -> None:
    model = BsgdModel(PRESETS["tiny"]).eval()
    z = torch.rand(1, 3, height, width) * 2 - 1
    t = torch.full((1,), 0.2)
    with torch.no_grad():
        assert model.blind_spot(z, t, 2).shape == z.shape
        assert model.diffusion_x0(z, t).shape == z.shape
        unet = UNet(width=8, mults=(1, 2), blocks_per_level=1, timed=False)
        assert unet(z).shape == z.shape


def test_time_conditioning_changes_output() -> None:
    model = BsgdModel(PRESETS["tiny"]).eval()
    _randomise(model, 5)
    z = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        a = model.blind_spot(z, torch.zeros(1), 1)
        b = model.blind_spot(z, torch.full((1,), 0.7), 1)
    assert not torch.allclose(a, b)
