"""Shared utilities: the lowest layer of ``nuwa_lib``, which imports nothing else of it.

* :mod:`~nuwa_lib.utils.paths`: the repository root, results and artifact folders;
* :mod:`~nuwa_lib.utils.seeding`: one seeding function;
* :mod:`~nuwa_lib.utils.provenance`: where a result came from (commit, versions, CPU, seed);
* :mod:`~nuwa_lib.utils.files`: atomic file writes (temp file + rename) and the JSON writer;
* :mod:`~nuwa_lib.utils.checkpoint`: the checkpoint format (a tagged ``torch.save`` dict);
* :mod:`~nuwa_lib.utils.cache`: the one artifact cache, "load if built, else build and save",
  keyed by a config hash;
* :mod:`~nuwa_lib.utils.pool`: the one worker pool (spawned processes, results in order);
* :mod:`~nuwa_lib.utils.progress`: the one progress helper (terminal or the pipeline's file);
* :mod:`~nuwa_lib.utils.tensors`: pictures as tensors, and eval mode for a block.
"""
