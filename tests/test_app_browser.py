"""The web editor in a real browser: Debian's chromium, headless, driven by selenium through chromedriver.

Loads the page on the bundled model, picks an example target and reference, ticks one eye, runs the
partial swap and checks that the result appears and differs from the target only near that eye; then
paints a stroke of hair on the mask and runs a mask edit. Screenshots of each state are kept in
``test-artifacts/app/`` (or ``$SCADM_TEST_ARTIFACTS``).

Needs ``chromium`` and ``chromium-driver`` (Debian packages; ``.ci/run`` installs them) and the
``app`` and ``test`` extras. Without a browser the test is skipped, unless ``SCADM_REQUIRE_BROWSER=1``
(as in CI), where a missing browser is a failure.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("SCADM_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(os.environ.get("SCADM_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")) / "app"

try:
    import gradio  # noqa: F401
    import selenium  # noqa: F401
    missing = None if CHROMIUM and DRIVER else "no chromium / chromedriver (apt-get install chromium chromium-driver)"
except ImportError as exc:
    missing = f"{exc.name} is not installed (pip install 'scadm[app,test]')"
if missing and REQUIRED:
    raise RuntimeError(f"the browser test is required here but cannot run: {missing}")
pytestmark = pytest.mark.skipif(missing is not None, reason=missing or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import torch

    from scadm.app import Editor, build_page

    torch.set_num_threads(1)  # one thread is the fastest on a small, shared machine
    editor = Editor(device="cpu", examples=4)
    page = build_page(editor)
    page.queue(default_concurrency_limit=1)
    port = _free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    yield editor, f"http://127.0.0.1:{port}"
    page.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1500"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(fn, timeout=120.0, what="the page"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - the page is still rendering
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _click_label(driver, elem_id, text):
    from selenium.webdriver.common.by import By

    el = _wait(lambda: driver.find_element(By.XPATH, f"//*[@id='{elem_id}']//label[normalize-space(.)='{text}']"),
               what=f"{text!r} in #{elem_id}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    el.click()


def _shot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def _result(driver, base, previous=None):
    """The downloadable result PNG, once a new one appears."""
    from selenium.webdriver.common.by import By

    def link():
        a = driver.find_element(By.CSS_SELECTOR, "#result-file a")
        href = a.get_attribute("href")
        return href if href and href != previous else None

    href = _wait(link, what="the result")
    with urllib.request.urlopen(href) as r:
        return href, np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"))


def test_partial_swap_of_one_eye_then_a_painted_mask_edit(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    editor, url = server
    browser.get(url)
    _wait(lambda: browser.find_element(By.ID, "run"), what="the page to load")
    _shot(browser, "1-loaded.png")
    from selenium.webdriver.common.keys import Keys

    steps = browser.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
    steps.send_keys(Keys.CONTROL, "a")
    steps.send_keys("20", Keys.TAB)

    _click_label(browser, "target-example", "face 1")
    _click_label(browser, "reference-example", "face 2")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#reference-image img"), what="the reference image")
    _click_label(browser, "application", "partial swap")
    _click_label(browser, "parts", "hair")  # the page opens with hair ticked (so Run works at once): untick it
    _click_label(browser, "parts", "l_eye")
    browser.find_element(By.ID, "run").click()
    href, swapped = _result(browser, url)
    time.sleep(1)
    _shot(browser, "2-partial-swap-l_eye.png")

    target, target_mask = editor.example("face 1")
    ids = editor.mask_ids(target_mask, "mask")
    eye = ids == editor.label_set.names.index("l_eye")
    assert swapped.shape == target.shape
    changed = np.abs(swapped.astype(int) - target.astype(int)).max(-1) > 0
    assert changed.any(), "the partial swap changed nothing"
    ys, xs = np.nonzero(eye)
    near = np.zeros_like(eye)
    pad = max(4, target.shape[0] // 8)  # the documented paste-back margin around the edited part
    near[max(ys.min() - pad, 0):ys.max() + pad + 1, max(xs.min() - pad, 0):xs.max() + pad + 1] = True
    assert not changed[~near].any(), "the result differs from the target away from the eye"

    # paint a stroke of hair across the top of the mask, then run the mask edit
    _click_label(browser, "application", "edit with the painted mask")
    canvas = _wait(lambda: browser.find_element(By.CSS_SELECTOR, "#target-mask canvas"), what="the mask canvas")
    draw = browser.find_elements(By.CSS_SELECTOR, "#target-mask button[aria-label*='raw'], "
                                                  "#target-mask button[title*='raw']")
    if draw:
        draw[0].click()
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(browser).move_to_element_with_offset(canvas, -w // 3, -h // 3).click_and_hold() \
        .move_by_offset(w // 2, 0).move_by_offset(0, 4).move_by_offset(-w // 2, 0).release().perform()
    _shot(browser, "3-painted-hair.png")
    browser.find_element(By.ID, "run").click()
    _, edited = _result(browser, url, previous=href)
    time.sleep(1)
    _shot(browser, "4-mask-edit.png")
    mask_href = browser.find_element(By.CSS_SELECTOR, "#mask-file a").get_attribute("href")
    with urllib.request.urlopen(mask_href) as r:
        from scadm.data.layout import ids_from_rgb  # a download is in the official colours, not the page's

        new_mask = ids_from_rgb(np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB")), editor.label_set, "result")
    hair = editor.label_set.names.index("hair")
    assert (new_mask == hair).sum() > (ids == hair).sum(), "the painted hair did not reach the generation mask"
    assert edited.shape == target.shape


def test_a_bad_upload_and_a_photo_without_a_parser_say_so_on_the_page(server, browser, tmp_path):
    """A text file uploaded as the target photo: the CLI's one line on the page and the page still works;
    a real photo (scikit-image's astronaut) with the bundled model, which has no parser for photos: it is
    shown, and the page says why its mask was not parsed and where a parser comes from."""
    import importlib.util

    from selenium.webdriver.common.by import By

    editor, url = server
    browser.get(url)
    _wait(lambda: browser.find_element(By.ID, "run"), what="the page to load")
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    upload = _wait(lambda: browser.find_element(By.CSS_SELECTOR, "#target-file input[type=file]"), what="the upload")
    upload.send_keys(str(bad))
    _wait(lambda: "not an image file" in browser.page_source, what="the bad upload's message")
    assert "UnidentifiedImageError" not in browser.page_source and "Could not preprocess" not in browser.page_source
    _shot(browser, "5-bad-upload.png")
    spec = importlib.util.find_spec("skimage")
    photo = tmp_path / "astronaut.png"
    Image.open(Path(spec.origin).parent / "data" / "astronaut.png").convert("RGB").save(photo)
    browser.get(url)  # a fresh page: the same server keeps serving after the bad upload
    upload = _wait(lambda: browser.find_element(By.CSS_SELECTOR, "#target-file input[type=file]"), what="the upload")
    upload.send_keys(str(photo))
    _wait(lambda: "knows only scadm synthetic faces" in browser.page_source, what="the no-parser message")
    assert "79999_iter.pth" in browser.page_source
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#target-image img"), what="the uploaded photo")
    _shot(browser, "6-photo-without-parser.png")
