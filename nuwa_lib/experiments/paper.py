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

# Table 1: T2I on MSCOCO (256²); FID-k (DALL-E's blurred FID), IS, CLIPSIM (GODIVA).
# None where the paper prints "-". Our rows stand in for the NÜWA rows (``ours``).
TABLE1_COLUMNS = ("FID-0", "FID-1", "FID-2", "FID-4", "FID-8", "IS", "CLIPSIM")
TABLE1 = [
    {"model": "AttnGAN", "setting": "", "FID-0": 35.2, "FID-1": 44.0, "FID-2": 72.0, "FID-4": 108.0, "FID-8": 100.0, "IS": 23.3, "CLIPSIM": 0.2772},
    {"model": "DM-GAN", "setting": "", "FID-0": 26.0, "FID-1": 39.0, "FID-2": 73.0, "FID-4": 119.0, "FID-8": 112.3, "IS": 32.2, "CLIPSIM": 0.2838},
    {"model": "DF-GAN", "setting": "", "FID-0": 26.0, "FID-1": 33.8, "FID-2": 55.9, "FID-4": 91.0, "FID-8": 97.0, "IS": 18.7, "CLIPSIM": 0.2928},
    {"model": "DALL-E", "setting": "", "FID-0": 27.5, "FID-1": 28.0, "FID-2": 45.5, "FID-4": 83.5, "FID-8": 85.0, "IS": 17.9, "CLIPSIM": None},
    {"model": "CogView", "setting": "", "FID-0": 27.1, "FID-1": 19.4, "FID-2": 13.9, "FID-4": 19.4, "FID-8": 23.6, "IS": 18.2, "CLIPSIM": 0.3325},
    {"model": "XMC-GAN", "setting": "", "FID-0": 9.3, "FID-1": None, "FID-2": None, "FID-4": None, "FID-8": None, "IS": 30.5, "CLIPSIM": None},
    {"model": "NÜWA (scratch)", "setting": "full attention", "ours": "scratch_full", "FID-0": 17.1, "FID-1": 16.5, "FID-2": 16.3, "FID-4": 18.5, "FID-8": 20.9, "IS": 22.7, "CLIPSIM": 0.3257},
    {"model": "NÜWA (scratch)", "setting": "axial attention", "ours": "scratch_axial", "FID-0": 18.7, "FID-1": 18.4, "FID-2": 19.2, "FID-4": 20.3, "FID-8": 21.3, "IS": 22.8, "CLIPSIM": 0.3253},
    {"model": "NÜWA (scratch)", "setting": "3D nearby attention", "ours": "scratch_nearby", "FID-0": 16.9, "FID-1": 15.6, "FID-2": 16.5, "FID-4": 18.9, "FID-8": 20.2, "IS": 23.1, "CLIPSIM": 0.3276},
    {"model": "NÜWA (finetune)", "setting": "pretrained on CC", "ours": "finetune_cc", "FID-0": 14.2, "FID-1": 15.2, "FID-2": 16.9, "FID-4": 20.5, "FID-8": 24.7, "IS": 25.8, "CLIPSIM": 0.3424},
    {"model": "NÜWA (finetune)", "setting": "pretrained on CC, Moments and VATEX", "ours": "finetune_multitask", "FID-0": 12.9, "FID-1": 13.8, "FID-2": 15.7, "FID-4": 19.3, "FID-8": 24.0, "IS": 27.2, "CLIPSIM": 0.3429},
    {"model": "NÜWA (zero-shot)", "setting": "pretrained on CC, Moments and VATEX", "ours": "zeroshot_multitask", "FID-0": 22.6, "FID-1": 18.6, "FID-2": 17.2, "FID-4": 17.4, "FID-8": 24.8, "IS": 24.5, "CLIPSIM": 0.3331},
]

# Table 2: T2V on Kinetics. Acc (label accuracy of the generated video), FID-img, FID-vid,
# CLIPSIM. Our rows stand in for the NÜWA rows (``ours``).
TABLE2_COLUMNS = ("Acc", "FID-img", "FID-vid", "CLIPSIM")
TABLE2 = [
    {"model": "T2V (64×64)", "Acc": 42.6, "FID-img": 82.13, "FID-vid": 14.65, "CLIPSIM": 0.2853},
    {"model": "SC (128×128)", "Acc": 74.7, "FID-img": 33.51, "FID-vid": 7.34, "CLIPSIM": 0.2915},
    {"model": "TFGAN (128×128)", "Acc": 76.2, "FID-img": 31.76, "FID-vid": 7.19, "CLIPSIM": 0.2961},
    {"model": "NÜWA (scratch)", "ours": "scratch", "Acc": 77.4, "FID-img": 29.32, "FID-vid": 7.08, "CLIPSIM": 0.3007},
    {"model": "NÜWA (finetune)", "ours": "finetune_multitask", "Acc": 77.9, "FID-img": 28.46, "FID-vid": 7.05, "CLIPSIM": 0.3012},
]

# Table 3: V2V (video prediction) on BAIR 64×64, FVD with "Cond." conditioning frames.
# "±" spreads are kept in ``FVD std``.
TABLE3_COLUMNS = ("FVD",)
TABLE3 = [
    {"model": "DVD-GAN-FP", "cond": 1, "FVD": 110.0},
    {"model": "Video Transformer (S)", "cond": 1, "FVD": 106.0, "FVD std": 3.0},
    {"model": "TriVD-GAN-FP", "cond": 1, "FVD": 103.0},
    {"model": "CCVS", "cond": 1, "FVD": 99.0, "FVD std": 2.0},
    {"model": "Video Transformer (L)", "cond": 1, "FVD": 94.0, "FVD std": 2.0},
    {"model": "NÜWA (scratch)", "cond": 1, "ours": "scratch", "FVD": 87.6},
    {"model": "NÜWA (finetune)", "cond": 1, "ours": "finetune_multitask", "FVD": 86.9},
]

# Table 5: T2V on MSR-VTT after pretraining on different task sets.
TABLE5_COLUMNS = ("FID-vid", "CLIPSIM")
TABLE5 = [
    {"model": "NÜWA-TV", "pretrained": "T2V", "ours": "T2V", "FID-vid": 52.98, "CLIPSIM": 0.2314},
    {"model": "NÜWA-TV-TI", "pretrained": "T2V+T2I", "ours": "T2V+T2I", "FID-vid": 53.92, "CLIPSIM": 0.2379},
    {"model": "NÜWA-TV-VV", "pretrained": "T2V+V2V", "ours": "T2V+V2V", "FID-vid": 51.81, "CLIPSIM": 0.2335},
    {"model": "NÜWA", "pretrained": "T2V+T2I+V2V", "ours": "T2V+T2I+V2V", "FID-vid": 47.68, "CLIPSIM": 0.2439},
]

# Table 6: S2V on VSPW with the encoder's and the decoder's attention varied.
TABLE6_COLUMNS = ("FID-vid", "Detected PA")
TABLE6 = [
    {"model": "NÜWA-FF", "encoder": "full", "decoder": "full", "ours": "full-full", "FID-vid": 35.21, "Detected PA": 0.5220},
    {"model": "NÜWA-NF", "encoder": "nearby", "decoder": "full", "ours": "nearby-full", "FID-vid": 33.63, "Detected PA": 0.5357},
    {"model": "NÜWA-FN", "encoder": "full", "decoder": "nearby", "ours": "full-nearby", "FID-vid": 32.06, "Detected PA": 0.5438},
    {"model": "NÜWA-AA", "encoder": "axial", "decoder": "axial", "ours": "axial-axial", "FID-vid": 29.18, "Detected PA": 0.5957},
    {"model": "NÜWA", "encoder": "nearby", "decoder": "nearby", "ours": "nearby-nearby", "FID-vid": 27.79, "Detected PA": 0.6085},
]
