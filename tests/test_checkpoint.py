"""Model files: round trip, metadata, and refusal of anything that is not a bsgd safetensors file."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from bsgd_cli.checkpoint import load_model, read_metadata, save_model
from bsgd_cli.config import PRESETS, ModelConfig, SamplerConfig, from_dict, to_dict
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.errors import ConfigError, ModelFileError


def test_round_trip_rebuilds_identical_model(tmp_path) -> None:
    torch.manual_seed(4)
    model = BsgdModel(PRESETS["tiny"])
    sampler = SamplerConfig(guidance=0.7, steps=6, mask="complementary")
    path = tmp_path / "m.safetensors"
    save_model(path, model, sampler=sampler, info={"data": "unit test"})
    loaded = load_model(path)
    assert loaded.model.config == model.config
    assert loaded.sampler == sampler
    assert loaded.info == {"data": "unit test"}
    assert len(loaded.sha256) == 64
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name])
    assert not list(tmp_path.glob(".*partial"))


def test_config_dict_round_trip_and_unknown_fields() -> None:
    for config in PRESETS.values():
        assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(config)))) == config
    with pytest.raises(ConfigError, match="newer"):
        from_dict(ModelConfig, {**to_dict(PRESETS["tiny"]), "future_field": 1})


def test_pickle_file_is_refused_and_never_executed(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": Payload()}))
    with pytest.raises(ModelFileError):
        load_model(path)
    torch_path = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1)}, torch_path)
    with pytest.raises(ModelFileError):
        load_model(torch_path)
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(path, BsgdModel(PRESETS["tiny"]))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(cut)


def test_wrong_shapes_are_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_model(path, BsgdModel(PRESETS["tiny"]))
    metadata = read_metadata(path)
    wrong = BsgdModel(PRESETS["small"]).state_dict()
    bad = tmp_path / "bad.safetensors"
    header_meta = {
        "format": "bsgd-model", "format_version": "1", "config": json.dumps(metadata["config"]),
        "sampler": "{}", "info": "{}",
    }
    save_file({k: v.contiguous() for k, v in wrong.items()}, str(bad), metadata=header_meta)
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(bad)


def test_newer_format_version_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "future.safetensors"
    save_file(
        {"x": torch.zeros(1)}, str(path), metadata={"format": "bsgd-model", "format_version": "99", "config": "{}"}
    )
    with pytest.raises(ModelFileError, match="upgrade bsgd"):
        load_model(path)


def test_safetensors_without_bsgd_metadata_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ModelFileError, match="not a bsgd model"):
        load_model(path)


def test_absurd_header_length_is_refused(tmp_path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(ModelFileError):
        load_model(path)


def test_missing_model_names_the_fix(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="bsgd models"):
        load_model(tmp_path / "nope.safetensors")
