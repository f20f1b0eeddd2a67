// The camera's face finder, in a worker so that finding (a few hundred ms) never holds up the frames: it takes a
// grey frame at half size and returns its faces at full size; the page classifies every frame at the faces last found.
import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";
import { loadBundle, MTCNN } from "./fer.js";

ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;
ort.env.wasm.numThreads = 1;
let finder = null;

onmessage = async ({ data }) => {
  try {
    if (data.bundle) {
      const { bundle, sessions } = await loadBundle(ort, data.bundle, ["pnet", "rnet", "onet"]);
      // half-size frames: the smallest face searched for halves too, as camera.py's tracking does
      finder = new MTCNN(ort, [sessions.pnet, sessions.rnet, sessions.onet],
                         { ...bundle.finder, min_size: bundle.finder.min_size / 2 });
      postMessage({ ready: true });
    } else {
      const t0 = performance.now(), faces = await finder.find(data.grey, data.w, data.h);
      postMessage({ ms: performance.now() - t0, faces: faces.map(({ box, eyes }) => ({ box: box.map((v) => 2 * v),
                                                           eyes: eyes.map(([x, y]) => [2 * x, 2 * y]) })) });
    }
  } catch (e) {
    postMessage({ error: String(e.message || e) });
  }
};
