"""The data layer (notebook 00): the Shapes World, the paper's eight tasks as data, the BPE text
tokenizer, and the readers of the paper's real datasets on disk.

* :mod:`~nuwa_lib.data.world`: scenes, rendering, captions, counterfactuals (DESIGN §4);
* :mod:`~nuwa_lib.data.splits`: the world's roles (the datasets it stands in for) and splits;
* :mod:`~nuwa_lib.data.tasks`: the eight tasks (Sec. 4.3-4.4) as data;
* :mod:`~nuwa_lib.data.text`: the BPE text tokenizer (Sec. 3.1);
* :mod:`~nuwa_lib.data.media`, :mod:`~nuwa_lib.data.readers`, :mod:`~nuwa_lib.data.catalog`:
  real files, the readers of the real datasets, and a profile's ``data:`` section.
"""
