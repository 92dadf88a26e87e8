"""Training (notebook 04, Sec. 3.4 and 4.1).

* :mod:`~nuwa_lib.training.schedule`: :class:`TrainConfig`, the lr schedule, the task sampler;
* :mod:`~nuwa_lib.training.task_data`: a task's training examples (token sets as batches);
* :mod:`~nuwa_lib.training.trainer`: the training loop;
* :mod:`~nuwa_lib.training.distributed`: ``torchrun`` set-up;
* :mod:`~nuwa_lib.training.runs`: cached runs (:func:`get_pretrained`, :func:`get_many`);
* :mod:`~nuwa_lib.training.cli`: ``python -m nuwa_lib.training.cli``.
"""
