"""The affine-norm student: folded at inference to the same function, and started from a GroupNorm one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bsgd_cli.catalogue import describe
from bsgd_cli.checkpoint import load_model, save_model
from bsgd_cli.config import StudentConfig
from bsgd_cli.nets import folded as folded_module
from bsgd_cli.nets.folded import MIN_SCALE, FoldedUNet
from bsgd_cli.nets.unet import ChannelAffine, UNet
from bsgd_cli.training.affine_norm import affine_state


def _affine_net(mults: tuple[int, ...], blocks: int, seed: int = 0, norm: str = "affine") -> UNet:
    """A time-free affine-norm UNet with every weight (norms and the zero-initialised output too) random."""
    torch.manual_seed(seed)
    net = UNet(width=8, mults=mults, blocks_per_level=blocks, timed=False, norm=norm)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return net.eval()


def _unfolded(net: UNet, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # a gradient wanted: the plain path with the norms as layers
        return net(x).detach()


@pytest.mark.parametrize("norm", ["affine", "mixed"])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "plain"])
@pytest.mark.parametrize(("mults", "blocks"), [((1, 2, 2), 1), ((1, 2), 2), ((1,), 2), ((1, 2, 2, 2), 1)])
def test_the_folded_student_computes_the_same_function(
    mults: tuple[int, ...], blocks: int, fuse: bool, norm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32 here; bf16 as the CPU runs it gave the same PSNR on the tuning split (docs/LEARNING.md)."""
    monkeypatch.setattr(folded_module, "FUSE", fuse)
    net = _affine_net(mults, blocks, norm=norm)
    x = torch.rand(2, 3, 37, 45) * 2 - 1
    expected = _unfolded(net, x)
    with torch.no_grad():
        folded = net(x)
    assert isinstance(net.folded(), FoldedUNet)
    scale = float(expected.abs().max())
    assert float((folded - expected).abs().max()) < 1e-5 * scale


def test_a_norm_with_a_tiny_scale_stays_a_layer_and_the_result_still_matches() -> None:
    net = _affine_net((1, 2, 2), 1)
    with torch.no_grad():
        net.down[0][0].norm1.weight[0] = MIN_SCALE / 100  # type: ignore[index]
        net.up[0][0].norm1.weight[3] = -MIN_SCALE / 10  # type: ignore[index]
    folded = net.folded()
    assert folded.down[0][0].pre is not None and folded.skip_norms[0] is None  # type: ignore[index]
    assert folded.down[1][0].pre is None  # the others are still folded  # type: ignore[index]
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expected = _unfolded(net, x)
    with torch.no_grad():
        assert float((net(x) - expected).abs().max()) < 1e-5 * float(expected.abs().max())


def test_the_fold_is_made_again_when_a_weight_changes() -> None:
    net = _affine_net((1, 2), 1)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        net(x)
        first = net.folded()
        assert net.folded() is first  # kept while nothing changes
        net.load_state_dict(_affine_net((1, 2), 1, seed=1).state_dict())  # in place, as EMA and training do
        after = net(x)
    assert net.folded() is not first
    expected = _unfolded(net, x)
    assert float((after - expected).abs().max()) < 1e-5 * float(expected.abs().max())


@pytest.mark.parametrize("norm", ["affine", "mixed"])
def test_a_group_norm_student_calibrated_on_one_image_gives_its_output_on_that_image(norm: str) -> None:
    """Calibrated on a single image, the frozen statistics are that image's own: the affine student
    (folded, as inference runs it) reproduces the GroupNorm student there, and differs elsewhere."""
    torch.manual_seed(0)
    group = UNet(width=8, mults=(1, 2), blocks_per_level=1, timed=False).eval()
    with torch.no_grad():
        for parameter in group.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    image, other = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) - 0.8
    affine = UNet(width=8, mults=(1, 2), blocks_per_level=1, timed=False, norm=norm).eval()
    names = {name for name, module in affine.named_modules() if isinstance(module, ChannelAffine)}
    assert names and (norm == "affine") == (len(names) == 2 * 3 + 1)  # mixed: the full-resolution ones
    affine.load_state_dict(affine_state(group, [image], names))
    with torch.no_grad():
        assert torch.allclose(affine(image), group(image), atol=1e-4)
        assert not torch.allclose(affine(other), group(other), atol=1e-2)


def test_the_student_norm_is_saved_in_the_model_file(tmp_path: Path, tiny_model_file: Path) -> None:
    model = load_model(tiny_model_file).model
    model.add_student(StudentConfig(width=8, mults=(1, 1), norm="affine"))
    path = tmp_path / "affine.safetensors"
    save_model(path, model)
    loaded = load_model(path)
    assert loaded.model.config.student is not None and loaded.model.config.student.norm == "affine"
    assert describe(path)["branches"] == "blind-spot+diffusion+student (affine norms)"  # bsgd models
    assert load_model(tiny_model_file).model.config.student.norm == "group"  # type: ignore[union-attr]


def test_an_unknown_student_norm_is_refused() -> None:
    from bsgd_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="norm must be one of group, affine"):
        StudentConfig(norm="batch")  # type: ignore[arg-type]
