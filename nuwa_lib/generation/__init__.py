"""Generation: sampling with a decoding cache (:mod:`~nuwa_lib.generation.sampling`) and
best-of-n generation judged by the world CLIP (:mod:`~nuwa_lib.generation.generate`).
"""
