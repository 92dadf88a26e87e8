"""The judges and the metrics (notebook 01): networks trained on the world that stand in for
Inception, CLIP and the video network, and the paper's metrics computed with them.

* :mod:`~nuwa_lib.evaluation.judge_nets`: the judges' configs and networks;
* :mod:`~nuwa_lib.evaluation.judges`: their data, training and cache (:func:`get_judges`);
* :mod:`~nuwa_lib.evaluation.judge_checks`: the checks that the judges judge;
* :mod:`~nuwa_lib.evaluation.metrics`: FID, IS, KID, CLIPSIM, Acc, FID-vid, FVD, SSIM;
* :mod:`~nuwa_lib.evaluation.segmentation`: PA, FWIoU, mIoU on class maps.
"""
