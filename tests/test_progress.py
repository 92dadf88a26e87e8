"""Progress bars go to the pipeline's file when it watches, to a terminal otherwise, and
never into a notebook's outputs or a CI log."""
import logging
import os

from nuwa_lib import pipeline
from nuwa_lib.utils import progress


def test_bars_follow_the_progress_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setenv("CI", "1")
    assert progress.enabled(True) and not progress.enabled(False) and progress.for_workers()
    for _ in progress.bar(range(3), desc="judge classifier", mininterval=0):
        pass
    (mine,) = progress.files(path)                            # <file>.<this process's pid>
    assert mine.name == f"progress.log.{os.getpid()}" and "judge classifier" in mine.read_text()
    assert capsys.readouterr().err == ""
    assert progress.running(path).startswith("judge classifier: 100%")


def test_without_the_file_bars_stay_quiet_off_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setenv("CI", "1")
    assert not progress.enabled(True) and not progress.for_workers()
    for _ in progress.bar(range(3), desc="x"):
        pass
    assert capsys.readouterr().err == ""


def test_latest_reads_the_last_update_and_a_cleared_bar_as_nothing(tmp_path):
    path = tmp_path / "p.log"
    assert progress.latest(path) == ""                       # no file yet
    path.write_text("\ra:  10%\ra:  20%\r")
    assert progress.latest(path) == "a:  20%"
    path.write_text("\ra:  10%\ra:  20%\r        \r")        # leave=False clears the line
    assert progress.latest(path) == ""
    path.write_text("\rb: " + "x" * 100)
    assert len(progress.latest(path, 20)) == 20 and progress.latest(path, 20).endswith("…")


class _Bar:
    def __init__(self):
        self.shown = []

    def set_postfix_str(self, s):
        self.shown.append(s)


def test_running_shows_one_bar_per_process_and_drops_cleared_ones(tmp_path):
    path = tmp_path / "p.log"
    assert progress.running(path) == ""
    (tmp_path / "p.log.11").write_text("\rvqgan vqgan_f4:  40%| 4/10")
    (tmp_path / "p.log.12").write_text("\rvqvae vqvae_f4:  20%| 2/10\r          \r")  # done
    (tmp_path / "p.log.13").write_text("\rvqgan vqgan_f2:  10%| 1/10")
    os.utime(tmp_path / "p.log.11", ns=(1, 1))                    # the older update
    assert progress.running(path) == "vqgan vqgan_f2:  10%| 1/10 | vqgan vqgan_f4:  40%| 4/10"
    assert len(progress.running(path, 30)) == 30


def test_the_pipeline_bar_names_the_cell_and_the_running_training(tmp_path):
    path = tmp_path / "p.log"
    (tmp_path / "p.log.7").write_text("\rNÜWA T2I+V2V+T2V:  40%| 12/30")
    bar = _Bar()
    with pipeline._Watch(bar, "04_pretraining", 17, str(path)):
        logging.getLogger("papermill").info("Executing Cell 5---------")
        logging.getLogger("papermill").warning("a cell's stderr, not shown")
    assert bar.shown[0] == "04_pretraining · cell 5/17 · NÜWA T2I+V2V+T2V:  40%| 12/30"
    assert not logging.getLogger("papermill").handlers        # the handler is removed again
