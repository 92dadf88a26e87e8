"""The paper's reported numbers, as data, for the side-by-side tables.

Each table is a list of rows copied from the paper (``paper/NUWA-paper.md``); notebooks
put our measurements next to them. The paper's numbers come from ImageNet-, COCO- and
Kinetics-scale models scored with Inception, CLIP and I3D; ours come from the Shapes World
scored by its judges (``metrics.py``), so compare *rows within a column*, never our value
with theirs.
"""
from __future__ import annotations

# Table 4, upper part: "Effectiveness of different VQ-VAE (VQ-GAN) settings".
# R -> D: input resolution to token grid; rate F = sqrt(R) / sqrt(D).
TABLE4_IMAGES = [
    {"model": "VQ-VAE", "data": "ImageNet", "R": 256, "D": 16, "F": 16, "SSIM": 0.7026, "FID": 13.3},
    {"model": "VQ-GAN", "data": "ImageNet", "R": 256, "D": 16, "F": 16, "SSIM": 0.7105, "FID": 6.04},
    {"model": "VQ-GAN", "data": "ImageNet", "R": 256, "D": 32, "F": 8, "SSIM": 0.8285, "FID": 2.03},
    {"model": "VQ-GAN", "data": "ImageNet", "R": 336, "D": 21, "F": 16, "SSIM": 0.7213, "FID": 4.79},
    {"model": "VQ-GAN", "data": "OpenImages", "R": 336, "D": 21, "F": 16, "SSIM": 0.7527, "FID": 4.31},
]

# Table 4, lower part: VQ-GAN-Seg ("V.G-Seg") on sketches, PA and FWIoU in percent.
TABLE4_SKETCHES = [
    {"model": "VQ-GAN-Seg", "data": "COCO-Stuff", "R": 336, "D": 21, "F": 16, "PA": 96.82, "FWIoU": 93.91},
    {"model": "VQ-GAN-Seg", "data": "VSPW", "R": 336, "D": 21, "F": 16, "PA": 95.36, "FWIoU": 91.82},
]


def label(r, d, f) -> str:
    """The R -> D (rate) label used in our tables: "256² → 16² (F16)"."""
    return f"{r}² → {d}² (F{f})"
