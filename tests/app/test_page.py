"""page/, the static page: the bundle's face finder and classifier run in the browser tab (onnxruntime-web), served
by any static file server. In headless Chromium: a photo's faces, a crowd's under the work bound, and PublicTest faces
get the PyTorch path's answers (boxes equal, probabilities within 1e-5), a dropped photo and the fake camera are answered on the page, and off a
secure context the camera message says why. Skips where Chromium, playwright or the page's npm packages are not
installed (`npm ci --prefix page`)."""
import base64
import functools
import http.server
import os
import re
import shutil
import threading

from PIL import Image
from conftest import ROOT, TOLERANCE, assert_same, crowd_photo, group_photo
import numpy as np
import pytest
import torch

from app import faces, mtcnn
import model
import weights

PAGE = os.path.join(ROOT, "page")
BUNDLE = os.path.join(ROOT, "runtime", "fer2013_emotions", "bundle")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP fer.test 127.0.0.1"]


def missing():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (.ci/run installs it: pip install playwright==1.65.2)"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "headless Chromium is not installed (.ci/run installs it: apt-get install chromium)"
    if not os.path.isdir(os.path.join(PAGE, "node_modules", "onnxruntime-web")):
        return "the page's JavaScript packages are not installed: npm ci --prefix page"
    return None


pytestmark = [pytest.mark.skipif(missing() is not None, reason=missing() or ""),
              pytest.mark.skipif(mtcnn.weights_folder() is None, reason="MTCNN's weights (facenet-pytorch) are not "
                                 "installed: the PyTorch path's finder is then another")]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """The clone served as static files on loopback, as `python -m http.server` serves it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=ROOT))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pytorch():
    return weights.load_nets([os.path.join(ROOT, "weights", "resnet.pth")], "cpu"), mtcnn.MTCNNDetector()


def open_page(p, url, camera=None):
    args = ARGS + (["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    f"--use-file-for-fake-video-capture={camera}"] if camera else [])
    browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                headless=True, args=args)
    tab = browser.new_page()
    errors = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(url)
    tab.wait_for_function("window.FER", timeout=120000)
    return browser, tab, errors


ANSWER = """async (png) => {
  const blob = await (await fetch('data:image/png;base64,' + png)).blob();
  const picture = await createImageBitmap(blob, { colorSpaceConversion: 'none' });
  return (await FER.recognizer.emotions(FER.pixels(picture, picture.width, picture.height), picture.width,
                                        picture.height)).faces;
}"""


def test_photos_and_publictest_faces_get_the_pytorch_paths_answers(site, pytorch, tmp_path, fer2013):
    from playwright.sync_api import sync_playwright
    nets, detector = pytorch
    photo, crowd = group_photo(), crowd_photo()
    Image.fromarray(photo).save(tmp_path / "group.png")
    Image.fromarray(crowd).save(tmp_path / "crowd.png")
    crops = fer2013["val"][0][:256]
    with sync_playwright() as p:
        browser, tab, errors = open_page(p, site)
        got = tab.evaluate(ANSWER, base64.b64encode((tmp_path / "group.png").read_bytes()).decode())
        assert tab.evaluate("FER.recognizer.finder.candidates") == mtcnn.CANDIDATES
        tab.evaluate("FER.recognizer.finder.candidates = 30")  # the work bound, where it binds: the same 30 kept
        bounded = tab.evaluate(ANSWER, base64.b64encode((tmp_path / "crowd.png").read_bytes()).decode())
        probs = tab.evaluate("async (faces) => FER.recognizer.classify(faces.map((f) => Uint8Array.from(f)))",
                             crops.reshape(len(crops), -1).tolist())
        browser.close()
    assert errors == []
    assert len(got) == 3 and got[2]["crop"]["angle"] != 0
    assert_same(got, faces.emotions(photo, nets, detector=detector))
    assert_same(bounded, faces.emotions(crowd, nets, detector=mtcnn.MTCNNDetector(candidates=30)))
    assert np.abs(np.array(probs) - model.predict_proba(nets, crops, "cpu").numpy()).max() <= TOLERANCE


def test_the_camera_and_a_dropped_photo_are_answered_in_the_page(site, tmp_path):
    from playwright.sync_api import sync_playwright
    from tools.page_speed import y4m
    photo = group_photo()
    Image.fromarray(photo).save(tmp_path / "group.png")
    frame = np.full((480, 640), 110, np.uint8)  # the portrait in a 640x480 camera frame
    portrait = np.asarray(Image.open(os.path.join(ROOT, "weights", "faces_example.jpg")).convert("L"))
    frame[40:440, 150:491] = portrait
    y4m(tmp_path / "camera.y4m", frame)
    with sync_playwright() as p:
        browser, tab, errors = open_page(p, site, tmp_path / "camera.y4m")
        tab.wait_for_function("pageStats.frames >= 10 && pageStats.faces === 1", timeout=120000)
        assert tab.locator("#live li").count() == 1
        tab.set_input_files("#file", str(tmp_path / "group.png"))
        tab.wait_for_function("window.lastPhoto", timeout=120000)
        assert tab.locator("#photo-faces li").count() == 3
        assert tab.inner_text("#photo-note") == "group.png: 3 faces"
        tab.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "image/png", "buffer": b"hello"}])
        tab.wait_for_function("document.getElementById('photo-note').classList.contains('error')")
        assert "notes.txt: not a picture" in tab.inner_text("#photo-note")
        browser.close()
    assert errors == []


def test_off_a_secure_context_the_camera_message_says_why_and_photos_still_work(site, tmp_path):
    """Opened by a name other than localhost over plain http, a browser offers no camera: the page says so."""
    from playwright.sync_api import sync_playwright
    Image.fromarray(group_photo()).save(tmp_path / "group.png")
    with sync_playwright() as p:
        browser, tab, errors = open_page(p, site.replace("127.0.0.1", "fer.test"))
        assert tab.evaluate("window.isSecureContext") is False
        assert "needs a secure page" in tab.inner_text("#status") and "refused" not in tab.inner_text("#status")
        tab.set_input_files("#file", str(tmp_path / "group.png"))
        tab.wait_for_function("window.lastPhoto", timeout=120000)
        browser.close()
    assert errors == []


def test_the_page_names_and_colours_the_classes_as_every_picture_does():
    html = open(os.path.join(PAGE, "index.html")).read()
    assert re.search(r"const COLOURS = (\[.*?\]);", html).group(1) == str(list(faces.PALETTE)).replace("'", '"')
    js = open(os.path.join(PAGE, "fer.js")).read()
    assert re.search(r"export const CLASSES = (\[.*?\]);", js).group(1) == str(list(faces.data.CLASSES)).replace("'", '"')
