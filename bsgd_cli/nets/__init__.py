"""Network architectures. Each handles its own size needs (pads internally and crops back)."""

from .blind_spot import BlindSpotNet
from .unet import UNet

ARCHITECTURES = {"blind_spot": BlindSpotNet, "unet": UNet}

__all__ = ["ARCHITECTURES", "BlindSpotNet", "UNet"]
