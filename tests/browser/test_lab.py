"""The interactive experience in a real browser (issue #10).

nbval cannot see widgets: their output lives in widget state, not in cell outputs. So this
test starts JupyterLab from the venv on a free loopback port (no token, temporary Jupyter
config/data/runtime dirs, results into a temporary folder), drives headless Chromium through
Playwright's Python package (the system Chromium, never a Playwright browser download) and

* opens the notebook list and checks every notebook of ``nuwa_lib.pipeline.notebook_order()``
  is there, in that order;
* opens notebook 03_3dna, runs all its cells, moves the 3DNA explorer's query with the keyboard
  and types a new extent, and checks that the picture changes (other pixels, more or fewer
  attended-token pixels as the count goes up or down) and that the counts the widget prints
  are the ones ``nuwa_lib.viz.attended_counts`` gives for the new setting;
* opens notebook 04_pretraining, runs all its cells, types a caption with a word the world does
  not use into the "watch it draw" panel (a message names it, no traceback), then draws a
  held-out caption and steps the slider back one token: the summary follows the step and one
  more cell of the picture turns grey;
* leaves screenshots in the git-ignored ``build/browser/``.

Run by ``make test-browser`` (and by ``make test`` when a ``chromium`` is on PATH). Set
``NUWA_CHROMIUM`` to use another Chromium binary.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa_lib import viz
from nuwa_lib.pipeline import notebook_order
from nuwa_lib.utils.profiles import load_profile

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "browser"            # git-ignored (build/)
NOTEBOOK = "03_3dna"
CHROMIUM = os.environ.get("NUWA_CHROMIUM") or shutil.which("chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM, reason="no Chromium on PATH (Debian: apt-get install chromium; or set NUWA_CHROMIUM)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
expect = sync_api.expect
PlaywrightTimeout = sync_api.TimeoutError

# Generous but bounded: the machine is slow and shared.
SERVER_START_S = 180      # JupyterLab answering /api/status
PAGE_S = 120              # the Lab UI loaded, a notebook opened, the kernel idle
START_S = 60              # Run All Cells shows a queued or finished cell
RUN_ALL_S = 600           # every cell of 03_3dna under its default profile (about 15 s alone)
WIDGET_S = 90             # the explorer redrawn after a control change

# JupyterLab user settings for the test session (a temporary settings dir):
# no autosave (the run must not write outputs into notebooks/), every cell in the DOM
# (no windowing), no news or update checks (no network).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 40) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


def _http(url: str, method: str = "GET", timeout: float = 5):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Lab:
    """A JupyterLab server of the venv on 127.0.0.1, rooted at the repository."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        self.results = tmp / "results"
        dirs = {name: tmp / name for name in ("config", "data", "runtime", "ipython", "mpl")}
        settings = dirs["config"] / "lab" / "user-settings"
        for plugin, values in LAB_SETTINGS.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        self.env = dict(
            os.environ,
            JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]),
            MPLCONFIGDIR=str(dirs["mpl"]), JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["config"] / "lab" / "workspaces"),
            NUWA_RESULTS_DIR=str(self.results),   # the kernel inherits it: results/ stays untouched
        )
        self.env.pop("JUPYTER_TOKEN", None)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={ROOT}",
               "--IdentityProvider.token=", "--ServerApp.disable_check_xsrf=True",
               # opening a notebook writes a checkpoint: keep it out of the working tree
               f"--FileCheckpoints.checkpoint_dir={self.tmp / 'checkpoints'}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{_log_tail(self.log)}")
            try:
                if _http(f"{self.url}/api/status")[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_S} s:\n{_log_tail(self.log)}")

    def stop(self) -> None:
        """Shut the server down with its kernels; escalate to signals if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            _http(f"{self.url}/api/shutdown", method="POST")
            self.proc.wait(timeout=30)
            return
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
            pass
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    SHOTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path_factory.mktemp("chromium-home")   # Chromium writes ~/.config, ~/.cache
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, env=env,
                                     args=["--disable-dev-shm-usage", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            pg = context.new_page()
            pg.set_default_timeout(PAGE_S * 1000)
            yield pg
        finally:
            browser.close()


def _open(page, lab: Lab, path: str) -> None:
    page.goto(f"{lab.url}/lab/tree/{path}", wait_until="domcontentloaded")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=PAGE_S * 1000)


# ---------------------------------------------------------------------------
# the notebook list

def test_lab_lists_every_notebook_in_pipeline_order(lab, page):
    expected = [f"{nb}.ipynb" for nb in notebook_order()]
    assert NOTEBOOK in notebook_order()
    _open(page, lab, "notebooks")
    items = page.locator(".jp-FileBrowser .jp-DirListing-item .jp-DirListing-itemText")
    expect(items.filter(has_text=expected[-1])).to_be_visible(timeout=PAGE_S * 1000)
    listed = [name.strip() for name in items.all_inner_texts()]
    assert [n for n in listed if re.fullmatch(r"\d\d_.+\.ipynb", n)] == expected, listed
    page.screenshot(path=SHOTS / "notebook_list.png")


# ---------------------------------------------------------------------------
# notebook 03 and its 3DNA explorer

PROMPT = re.compile(r"\[\s*(\d+|\*)?\s*\]")
# the notebook on show (a notebook opened earlier in the session stays in a hidden tab)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
NB = f"{PANEL} .jp-Notebook"


def _prompts(page) -> list[str]:
    """The execution prompt of every code cell: a number, '*' (queued/running) or ''."""
    texts = page.locator(f"{NB} .jp-CodeCell .jp-InputPrompt").all_inner_texts()
    return [(m.group(1) or "") if (m := PROMPT.search(t)) else "" for t in texts]


def _show(page, notebook: str) -> None:
    """Bring the notebook's tab to the front. JupyterLab restores the tabs of earlier tests
    (notebook 03 when 04 is opened) and may activate one of them after the new one opened."""
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=f"{notebook}.ipynb")
    expect(tab).to_have_count(1, timeout=PAGE_S * 1000)
    tab.click()
    expect(tab).to_have_class(re.compile(r"lm-mod-current"), timeout=PAGE_S * 1000)


def _start_run_all(page, notebook: str) -> bool:
    """Make the notebook the active widget, then Run > Run All Cells once the menu item is
    enabled; True when a cell prompt shows that something was queued or ran. (JupyterLab
    disables the item while another widget is current, and a click then does nothing.)"""
    _show(page, notebook)
    try:
        page.locator(f"{NB} .jp-CodeCell .jp-InputArea-editor").first.click(timeout=START_S * 1000)
    except PlaywrightTimeout:                           # hidden again meanwhile: try again
        return False
    page.keyboard.press("Escape")                       # command mode, the cell selected
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    item = page.locator(".lm-Menu .lm-Menu-item", has=label)
    expect(item).not_to_have_class(re.compile(r"lm-mod-disabled"), timeout=PAGE_S * 1000)
    item.click()
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if any(_prompts(page)):
            return True
        time.sleep(0.5)
    return False


def _run_all_cells(page, notebook: str = NOTEBOOK) -> None:
    n_cells = page.locator(f"{NB} .jp-CodeCell").count()
    assert n_cells > 0
    # the kernel has started and is idle: cells sent earlier could be dropped on a slow machine
    idle = page.locator(f'{PANEL} .jp-Notebook-ExecutionIndicator[data-status="idle"]')
    try:
        expect(idle).to_have_count(1, timeout=PAGE_S * 1000)
    except AssertionError:
        page.screenshot(path=SHOTS / "kernel_not_idle.png")
        raise AssertionError(f"the kernel of {notebook} was not idle within {PAGE_S} s; dialogs "
                             f"{page.locator('.jp-Dialog').all_inner_texts()}") from None
    for attempt in range(3):
        if _start_run_all(page, notebook):
            break
        page.keyboard.press("Escape")                   # close the menu if it is still open
    else:
        page.screenshot(path=SHOTS / "run_all_failed.png")
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        pytest.fail(f"Run All Cells did not start any cell of {notebook} in 3 tries "
                    f"({START_S} s each); prompts {_prompts(page)}; dialogs {dialogs}")
    deadline = time.monotonic() + RUN_ALL_S
    while time.monotonic() < deadline:
        prompts = _prompts(page)
        if "*" not in prompts:
            break
        time.sleep(1)
    else:
        pytest.fail(f"running all cells of {notebook} took over {RUN_ALL_S} s; prompts {_prompts(page)}")
    if not all(p.isdigit() for p in prompts):
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        pytest.fail(f"{notebook} stopped before its last cell (prompts {prompts}):\n"
                    + "\n".join(errors.all_inner_texts())[-3000:])


def _png(img) -> bytes:
    src = img.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,"), src[:80]
    return base64.b64decode(src.split(",", 1)[1])


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _count(rgb: np.ndarray, colour) -> int:
    return int((rgb == np.asarray(colour, np.uint8)).all(-1).sum())


SUMMARY = re.compile(r"query \((\d+), (\d+), (\d+)\) attends to (\d+) of (\d+) tokens "
                     r"\(full (\d+), block (\d+), axial (\d+)\)")


class Explorer:
    """The explorer's widget as a reader sees it in the page."""

    def __init__(self, page):
        slider = page.locator(".widget-slider")
        self.cell = page.locator(f"{NB} .jp-CodeCell").filter(has=slider.filter(has_text="query t"))
        expect(self.cell).to_have_count(1)
        self.summary = self.cell.locator(".widget-output .widget-html")
        self.picture = self.cell.locator(".widget-output img")

    def slider(self, description: str):
        label = self.cell.page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(description)}$"))
        return self.cell.locator(".widget-slider").filter(has=label)

    def state(self) -> tuple[str, bytes]:
        expect(self.summary).to_have_count(1, timeout=WIDGET_S * 1000)
        expect(self.picture).to_have_count(1, timeout=WIDGET_S * 1000)
        return self.summary.inner_text(), _png(self.picture)

    def wait_for(self, shape, query, extent) -> tuple[str, bytes]:
        """Wait until the widget shows ``query`` (its counts as attended_counts predicts)."""
        counts = viz.attended_counts(shape, query, extent=extent, block_size=(2, 2, 2), causal=True)
        wanted = (f"query ({query[0]}, {query[1]}, {query[2]}) attends to {counts['nearby']} of "
                  f"{int(np.prod(shape))} tokens (full {counts['full']}, block {counts['block']}, "
                  f"axial {counts['axial']})")
        expect(self.summary).to_contain_text(wanted, timeout=WIDGET_S * 1000)
        text, png = self.state()
        m = SUMMARY.search(text)
        assert m, text
        assert [int(g) for g in m.groups()] == [*query, counts["nearby"], int(np.prod(shape)),
                                                 counts["full"], counts["block"], counts["axial"]]
        return text, png


def test_3dna_explorer_reacts_to_its_controls(lab, page):
    source = ROOT / "notebooks" / f"{NOTEBOOK}.ipynb"
    before = source.read_bytes()
    _open(page, lab, f"notebooks/{NOTEBOOK}.ipynb")
    expect(page.locator(f"{NB} .jp-CodeCell").first).to_be_visible(timeout=PAGE_S * 1000)
    # the notebook's kernel ("Python (nuwa)", the venv's) is up before anything runs
    expect(page.locator(f"{PANEL} .jp-NotebookPanel-toolbar")).to_contain_text("Python (nuwa)",
                                                                      timeout=PAGE_S * 1000)
    t0 = time.monotonic()
    _run_all_cells(page)
    print(f"\n{NOTEBOOK}: all cells ran in {time.monotonic() - t0:.1f} s in the browser")

    s, h, w = load_profile("mini")["three_dna"]["explorer_grid"]   # the notebook's default PROFILE
    shape, extent = (s, h, w), (1, 1, 1)
    query = (s // 2, h // 2, w // 2)
    ex = Explorer(page)
    ex.cell.scroll_into_view_if_needed()
    text0, png0 = ex.wait_for(shape, query, extent)
    rgb0 = _pixels(png0)
    assert _count(rgb0, viz.TARGET_RGB) > 0 and _count(rgb0, viz.ATTENDED_RGB) > 0

    # 1. move the query one frame back with the keyboard on the "query t" slider
    assert query[0] >= 1
    handle = ex.slider("query t").locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")
    query1 = (query[0] - 1, *query[1:])
    text1, png1 = ex.wait_for(shape, query1, extent)
    _assert_picture_follows(png0, png1, text0, text1)

    # 2. widen the window: type a new extent into the "extent e_h" readout
    readout = ex.slider("extent e_h").locator(".widget-readout")
    readout.click()
    readout.fill("3")
    readout.press("Enter")
    extent2 = (extent[0], 3, extent[2])
    text2, png2 = ex.wait_for(shape, query1, extent2)
    _assert_picture_follows(png1, png2, text1, text2)

    widget = ex.cell.locator(".jp-OutputArea-output").first
    widget.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "03_3dna_explorer.png")
    widget.screenshot(path=SHOTS / "03_3dna_explorer_widget.png")

    # the run wrote its results into the temporary folder, not into notebooks/ or results/
    assert (lab.results / "mini" / "tables" / "attention_pairs.csv").exists()
    assert source.read_bytes() == before, f"{source} was modified by the browser session"


def _attended(text: str) -> int:
    return int(SUMMARY.search(text).group(4))


def _assert_picture_follows(png_a: bytes, png_b: bytes, text_a: str, text_b: str) -> None:
    """The redrawn picture differs, and its attended (blue) area moves the way the count does."""
    assert png_a != png_b, "the explorer's picture did not change"
    a, b = _pixels(png_a), _pixels(png_b)
    assert a.shape != b.shape or (a != b).any()
    blue_a, blue_b = _count(a, viz.ATTENDED_RGB), _count(b, viz.ATTENDED_RGB)
    n_a, n_b = _attended(text_a), _attended(text_b)
    assert np.sign(blue_b - blue_a) == np.sign(n_b - n_a), (blue_a, blue_b, n_a, n_b)
    assert _count(b, viz.TARGET_RGB) > 0


# ---------------------------------------------------------------------------
# notebook 04 and its "watch it draw" panel

DRAW_NOTEBOOK = "04_pretraining"
TOKEN = re.compile(r"token (\d+) of (\d+) \(row (\d+), column (\d+)\)")


def test_watch_it_draw_panel_draws_token_by_token(lab, page):
    _open(page, lab, f"notebooks/{DRAW_NOTEBOOK}.ipynb")
    expect(page.locator(f"{NB} .jp-CodeCell").first).to_be_visible(timeout=PAGE_S * 1000)
    expect(page.locator(f"{PANEL} .jp-NotebookPanel-toolbar")).to_contain_text("Python (nuwa)",
                                                                      timeout=PAGE_S * 1000)
    _run_all_cells(page, DRAW_NOTEBOOK)
    draw = page.locator(".widget-button", has_text=re.compile(r"^Draw$"))
    cell = page.locator(f"{NB} .jp-CodeCell").filter(has=draw)
    expect(cell).to_have_count(1)
    cell.scroll_into_view_if_needed()
    caption = cell.locator(".widget-text input")
    message = cell.locator(".widget-html").first
    # a word the world never uses: a message, not a traceback
    caption.fill("a red unicorn on grass")
    caption.press("Enter")
    cell.locator(".widget-button", has_text=re.compile(r"^Draw$")).click()
    expect(message).to_contain_text("no word 'unicorn'", timeout=WIDGET_S * 1000)
    assert cell.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0
    # a held-out caption, drawn; the slider ends on the last token
    held_out = cell.locator(".widget-dropdown select")
    held_out.select_option(index=1)
    expect(caption).not_to_have_value("a red unicorn on grass", timeout=WIDGET_S * 1000)
    cell.locator(".widget-button", has_text=re.compile(r"^Draw$")).click()
    summary = cell.locator(".widget-output .jp-OutputArea-output pre").last
    picture = cell.locator(".widget-output img")
    expect(summary).to_contain_text("token 64 of 64 (row 7, column 7)", timeout=WIDGET_S * 1000)
    last = _pixels(_png(picture.first))
    # one token back: the summary follows and the last cell is grey again
    handle = cell.locator(".widget-slider .noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")
    expect(summary).to_contain_text("token 63 of 64 (row 7, column 6)", timeout=WIDGET_S * 1000)
    before = _pixels(_png(picture.first))
    assert before.shape != last.shape or (before != last).any()
    grey = (96, 96, 96)
    assert _count(before, grey) > _count(last, grey)
    cell.locator(".jp-OutputArea-output").first.screenshot(path=SHOTS / "04_watch_it_draw.png")
