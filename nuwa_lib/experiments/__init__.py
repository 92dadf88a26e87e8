"""The paper's experiments (notebooks 02 and 05-15).

* :mod:`~nuwa_lib.experiments.image_tasks`: Table 1 and the image tasks' scores (S2I, I2I, TI2I);
* :mod:`~nuwa_lib.experiments.video_tasks`: Tables 2, 3, 5, 6 and TV2V side by side with the paper;
* :mod:`~nuwa_lib.experiments.table4`: Table 4 (the tokenizers);
* :mod:`~nuwa_lib.experiments.claims`: the one rule every claim is decided by, the rows of the
  side-by-side tables and the cells the notebooks print;
* :mod:`~nuwa_lib.experiments.paper`: the paper's own numbers;
* :mod:`~nuwa_lib.experiments.study`: the compute study (notebook 14), its arms run;
  :mod:`~nuwa_lib.experiments.study_reading`: its curves read (best arm, targets, findings);
* :mod:`~nuwa_lib.experiments.summary`: notebook 15's gathering of every table and verdict;
* :mod:`~nuwa_lib.experiments.prose`: the check that the notebooks' prose quotes the record.
"""
