"""The runtime that denoises arrays: device and precision, the model, denoise_array, the Wiener step, tiling."""
