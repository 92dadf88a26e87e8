"""The visual tokenizers (notebook 02, Sec. 3.1, Eqs. 1-5, Table 4) and the token sets built with them.

* :mod:`~nuwa_lib.tokenizers.vqgan`: configs, encoder / decoder networks, encode and decode;
* :mod:`~nuwa_lib.tokenizers.quantizer`: the codebook (EMA vector quantiser, Eq. 2);
* :mod:`~nuwa_lib.tokenizers.losses`: the discriminator and the perceptual loss (Eqs. 4-5);
* :mod:`~nuwa_lib.tokenizers.vq_train`: training and the tokenizer cache;
* :mod:`~nuwa_lib.tokenizers.vq_eval`: reconstructions judged on held-out pictures;
* :mod:`~nuwa_lib.tokenizers.token_sets`: the text and visual tokenizers of a profile, and the
  world encoded with them (cached token sets);
* :mod:`~nuwa_lib.tokenizers.real_tokens`: the same for the real datasets.
"""
