"""The camera's Bayer mosaic: packing and augmentation (numpy), and RAW-domain model use."""
