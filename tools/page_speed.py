"""How fast the pages answer a camera, as a person sees it: headless Chromium with a fake camera playing a face,
frames/s and the time from grabbing a frame to its box drawn, for the server's page (serve.py on loopback, the
--weights networks) and the static page (page/, served as files, the bundle in runtime/ in the tab); then
camera.py on the same face as a video file, in the same run, for comparison.

    python tools/page_speed.py --weights weights/resnet.pth --seconds 20

Needs Chromium and playwright (what .ci/run installs for the page's test), OpenCV, and for the static page
its packages (npm ci --prefix page).
"""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402
from synthetic_faces import synthetic_faces  # noqa: E402
from app import faces, serve  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scene(data_path):
    """A 640x480 grey picture with one face enlarged in it: a PublicTest face the face finder finds where the data
    is here, else a synthetic one (which the Haar cascade may not find)."""
    from PIL import Image
    face = synthetic_faces(7, seed=3)[0][3]
    if os.path.exists(data_path):
        finder = faces.best_detector()
        for candidate in data.load(data_path)["val"][0][:200].numpy():
            big = np.full((480, 640), 110, np.uint8)
            big[120:312, 200:392] = np.asarray(Image.fromarray(candidate).resize((192, 192)))
            if len(finder(big[::2, ::2].copy())) == 1:
                face = candidate
                break
    picture = np.full((480, 640), 110, np.uint8)
    picture[120:312, 200:392] = np.asarray(Image.fromarray(face).resize((192, 192)))
    return picture


def y4m(path, picture, frames=30):
    """A grey video Chromium's fake camera plays in a loop: YUV 4:2:0, the picture as Y, no colour."""
    h, w = picture.shape
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        grey = np.full((h // 2) * (w // 2) * 2, 128, np.uint8).tobytes()
        for _ in range(frames):
            f.write(b"FRAME\n" + picture.tobytes() + grey)


def page(url, video, seconds):
    """(frames/s, median ms, 90th percentile ms) of the page's camera over `seconds`, after 5 s of warm-up."""
    from playwright.sync_api import sync_playwright
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={video}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                    headless=True, args=args)
        tab = browser.new_page()
        tab.goto(url)
        tab.wait_for_function("window.pageStats && pageStats.frames > 0", timeout=120000)
        time.sleep(5)
        before = tab.evaluate("[pageStats.frames, pageStats.latencies.length]")
        t0 = time.perf_counter()
        time.sleep(seconds)
        after = tab.evaluate("[pageStats.frames, pageStats.latencies.slice(%d), pageStats.faces, pageStats.finder || []]"
                             % before[1])
        elapsed = time.perf_counter() - t0
        browser.close()
    latencies = np.array(after[1])
    finder = f"; faces searched for in {np.median(after[3]):.0f} ms a half-size frame (median)" if after[3] else ""
    return (after[0] - before[0]) / elapsed, float(np.median(latencies)), float(np.percentile(latencies, 90)), after[2], \
        finder


def camera_py(weights, picture, folder, seconds):
    """camera.py's own frames/s on a video of the same picture, as it prints it."""
    import cv2
    path = os.path.join(folder, "clip.avi")
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, picture.shape[::-1])
    for _ in range(int(30 * seconds)):
        out.write(cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR))
    out.release()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "app", "camera.py"), "--weights", *weights, "--source", path,
                        "--csv", os.path.join(folder, "e.csv")], capture_output=True, text=True)
    line = next((s for s in r.stdout.splitlines() if "frames/s" in s), r.stderr.strip()[-200:])
    return line


def report(name, fps, median, p90, found, finder):
    print(f"{name}: {fps:.1f} frames/s with {found} face(s) found, {median:.0f} ms from grabbing a frame to its box "
          f"drawn (90% within {p90:.0f} ms){finder}")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main(argv=None):
    p = cli.parser("page_speed.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s) the page answers with")
    p.add_argument("--seconds", type=cli.positive, default=20, help="how long to measure, after 5 s of warm-up")
    p.add_argument("--data", default="data/fer2013.csv", help="where a real face to show comes from (else synthetic)")
    args = p.parse_args(argv)
    faces.opencv()  # one line, not a traceback, where OpenCV is missing
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise cli.UserError("needs playwright and Chromium (what .ci/run installs): pip install playwright==1.65.2; "
                            "apt-get install chromium") from None
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        raise cli.UserError("needs Chromium: apt-get install chromium")
    server = serve.make_server(args.weights, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    picture = scene(args.data)
    with tempfile.TemporaryDirectory() as folder:
        y4m(os.path.join(folder, "camera.y4m"), picture)
        camera = os.path.join(folder, "camera.y4m")
        report("the server's page", *page(f"http://127.0.0.1:{server.server_address[1]}", camera, args.seconds))
        server.shutdown()
        server.server_close()
        if os.path.isdir(os.path.join(ROOT, "page", "node_modules")):
            files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=ROOT))
            threading.Thread(target=files.serve_forever, daemon=True).start()
            report("the static page (the bundle in the tab)",
                   *page(f"http://127.0.0.1:{files.server_address[1]}/page/", camera, args.seconds))
            files.shutdown()
            files.server_close()
        else:
            print("the static page: not measured, its packages are not installed (npm ci --prefix page)")
        print(f"camera.py on the same face: {camera_py(args.weights, picture, folder, args.seconds)}")


if __name__ == "__main__":
    cli.run(main, "page_speed.py")
