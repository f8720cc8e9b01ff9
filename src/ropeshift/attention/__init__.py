"""Attention implementations: the fp64 oracle, the tiled torch path, LSE merging, and the HF attention function."""
