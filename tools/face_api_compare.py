"""Our classifier beside face-api.js's expression network (@vladmandic/face-api, the maintained fork, with its own
weights) in the same headless Chromium, both on wasm: accuracy and ms per face on the PublicTest faces, then each
page's whole pipeline on the same fake camera (a 640x480 frame with one PublicTest face): frames/s.

    npm ci --prefix page            # face-api and tfjs's wasm backend are the page's devDependencies
    python tools/face_api_compare.py --data ../shared/fer2013/fer2013_dev.csv.gz --seconds 20

face-api gets each 48x48 face as a canvas (it resizes to its own 112x112 input); its seven expressions are mapped to
FER2013's classes by name (disgusted -> disgust, fearful -> fear, surprised -> surprise). Ours is the runtime's
bundle, one face at a time as the page classifies. face-api's pipeline is its default one: detectAllFaces
(SsdMobilenetv1), then the expression net, frame after frame (its TinyFaceDetector found no face in this frame). The faces are written to a temporary folder the server reads, never to the
clone.
"""
import functools
import http.server
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402
from tools import page_speed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = os.path.join(ROOT, "page", "node_modules")
FACE_API = "/page/node_modules/@vladmandic/face-api"
SETUP = """async () => {
  const faceapi = await import('%(api)s/dist/face-api.esm.js');
  faceapi.tf.setWasmPaths('/page/node_modules/@tensorflow/tfjs-backend-wasm/dist/');
  await faceapi.tf.setBackend('wasm');
  await faceapi.tf.ready();
  await faceapi.nets.faceExpressionNet.loadFromUri('%(api)s/model/');
  await faceapi.nets.ssdMobilenetv1.loadFromUri('%(api)s/model/');
  window.faceapi = faceapi;
  return faceapi.tf.getBackend();
}""" % {"api": FACE_API}
CLASSIFY = """async (n) => {
  const faces = new Uint8Array(await (await fetch('/faces/faces.bin')).arrayBuffer());
  const canvas = document.createElement('canvas'), pen = canvas.getContext('2d');
  canvas.width = canvas.height = 48;
  const names = { angry: 'angry', disgusted: 'disgust', fearful: 'fear', happy: 'happy', sad: 'sad',
                  surprised: 'surprise', neutral: 'neutral' };
  const theirs = [], ours = [];
  let theirMs = 0, ourMs = 0;
  for (let k = 0; k < n; k++) {
    const face = faces.subarray(k * 2304, (k + 1) * 2304), rgba = pen.createImageData(48, 48);
    face.forEach((v, i) => { rgba.data.set([v, v, v, 255], 4 * i); });
    pen.putImageData(rgba, 0, 0);
    let t = performance.now();
    const e = await faceapi.nets.faceExpressionNet.predictExpressions(canvas);
    theirMs += performance.now() - t;
    const best = Object.keys(names).reduce((a, b) => (e[a] > e[b] ? a : b));
    theirs.push(names[best]);
    t = performance.now();
    const [p] = await FER.recognizer.classify([face]);
    ourMs += performance.now() - t;
    ours.push(p.indexOf(Math.max(...p)));
  }
  return { theirs, ours, theirMs: theirMs / n, ourMs: ourMs / n };
}"""
PIPELINE = """async (seconds) => {
  const video = document.createElement('video');
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  video.muted = true;
  await video.play();
  const options = new faceapi.SsdMobilenetv1Options();  // detectAllFaces' default
  for (let i = 0; i < 5; i++) await faceapi.detectAllFaces(video, options).withFaceExpressions();  // warm-up
  let frames = 0, found = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    found = (await faceapi.detectAllFaces(video, options).withFaceExpressions()).length;
    frames++;
  }
  return { fps: frames / ((performance.now() - t0) / 1000), found };
}"""


def serve(folder):
    """The clone, and `folder` as /faces/, on loopback."""
    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path):
            if path.startswith("/faces/"):
                return os.path.join(folder, os.path.basename(path.split("?")[0]))
            return super().translate_path(path)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=ROOT))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None):
    p = cli.parser("face_api_compare.py", __doc__)
    p.add_argument("--data", required=True, help="the data set whose PublicTest (val) faces both classify")
    p.add_argument("--faces", type=cli.positive_int, help="only the first N of them (default: all)")
    p.add_argument("--seconds", type=cli.positive, default=20, help="how long each page's camera is measured")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(MODULES, "@vladmandic", "face-api")):
        raise cli.UserError("face-api is not installed: npm ci --prefix page (it is a devDependency)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise cli.UserError("needs playwright and Chromium: pip install playwright==1.65.2; apt-get install chromium") \
            from None
    images, labels = data.load(args.data)["val"]
    images, labels = images[:args.faces].numpy(), labels[:args.faces].numpy()
    picture = page_speed.scene(args.data)
    with tempfile.TemporaryDirectory() as folder:
        images.tofile(os.path.join(folder, "faces.bin"))
        page_speed.y4m(os.path.join(folder, "camera.y4m"), picture)
        server = serve(folder)
        url = f"http://127.0.0.1:{server.server_address[1]}/page/"
        with open(os.path.join(folder, "blank.html"), "w") as f:
            f.write("<!doctype html><title>face-api</title>")
        with sync_playwright() as pw:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            tab = browser.new_page()  # no camera here: the page only classifies
            tab.goto(url)
            tab.wait_for_function("window.FER", timeout=120000)
            backend = tab.evaluate(SETUP)
            t0 = time.time()
            r = tab.evaluate(CLASSIFY, len(images))
            took = time.time() - t0
            browser.close()
            theirs = np.array([data.CLASSES.index(c) for c in r["theirs"]])
            print(f"{len(images):,} PublicTest faces, one at a time, in headless Chromium ({backend}; {took:.0f} s):")
            print(f"  face-api's expression net: {100 * np.mean(theirs == labels):.2f}%, {r['theirMs']:.2f} ms a face")
            print(f"  ours (the runtime's bundle): {100 * np.mean(np.array(r['ours']) == labels):.2f}%, "
                  f"{r['ourMs']:.2f} ms a face")
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
                      "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={folder}/camera.y4m"])
            tab = browser.new_page()
            tab.goto(url.replace("/page/", "/faces/blank.html"))
            tab.evaluate(SETUP)
            camera = tab.evaluate(PIPELINE, args.seconds)
            browser.close()
            print(f"face-api's pipeline (SsdMobilenetv1 + expressions) on the fake camera: {camera['fps']:.1f} "
                  f"frames/s, {camera['found']} face(s) found")
        fps, median, p90, found, finder = page_speed.page(url, os.path.join(folder, "camera.y4m"), args.seconds)
        print(f"our page on the same camera: {fps:.1f} frames/s, {found} face(s) found, {median:.0f} ms a frame{finder}")
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    cli.run(main, "face_api_compare.py")
