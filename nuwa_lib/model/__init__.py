"""The NUWA model (Sec. 3.2-3.3, Eqs. 6-15).

* :mod:`~nuwa_lib.model.config`: :class:`NuwaConfig` and the :class:`Condition` a model reads;
* :mod:`~nuwa_lib.model.layers`: attention, encoder and decoder layers, positions, the decoding cache;
* :mod:`~nuwa_lib.model.nuwa`: :class:`Nuwa` itself and its parameter counts.
"""
