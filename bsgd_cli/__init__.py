"""bsgd: batch photo denoising with Blind-Spot Guided Diffusion, trained on noisy photos alone."""

__version__ = "0.1.0"
