// The runtime package (runtime/fer2013_emotions) in the browser: the bundle's MTCNN finds the faces, each is cut as
// FER2013 cut its faces, the classifier answers; onnxruntime-web runs the networks. The same steps in the same
// arithmetic as the Python runtime (float32 where it computes in float32, Pillow's integer resampling for the
// crop), so that boxes are equal and probabilities agree within 1e-5 (tests/app/test_page.py checks it).
// An ES module with no DOM in it: index.html draws, this answers.

export const CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const f32 = Math.fround;

// Python's round(x) (half to even) and round(x, digits) (the nearest decimal; ties to even).
export function roundEven(x) {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}
export function roundTo(x, digits) {
  const text = Math.abs(x).toFixed(30), dot = text.indexOf(".");
  const tie = text[dot + digits + 1] === "5" && /^0*$/.test(text.slice(dot + digits + 2));
  if (!tie) return Number(x.toFixed(digits));
  const scaled = Number(text.slice(0, dot) + text.slice(dot + 1, dot + digits + 1));  // truncated, as an integer
  return Math.sign(x) * (scaled % 2 === 0 ? scaled : scaled + 1) / 10 ** digits;
}

// RGBA bytes -> grey as Pillow's convert("L"): (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16.
export function greyOf(rgba, width, height) {
  const grey = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < grey.length; i++, j += 4) {
    grey[i] = (rgba[j] * 19595 + rgba[j + 1] * 38470 + rgba[j + 2] * 7471 + 0x8000) >>> 16;
  }
  return grey;
}

// ---- MTCNN ----------------------------------------------------------------------------------------------------

// float32 [h, w] -> [height, width], PyTorch's "area" bins (adaptive average pooling), rows then columns.
function areaResize(image, h, w, height, width) {
  const rows = new Float32Array(height * w);
  for (let i = 0; i < height; i++) {
    const start = Math.floor((i * h) / height), end = Math.ceil(((i + 1) * h) / height);
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let y = start; y < end; y++) sum += image[y * w + x];
      rows[i * w + x] = sum / (end - start);
    }
  }
  const out = new Float32Array(height * width);
  for (let j = 0; j < width; j++) {
    const start = Math.floor((j * w) / width), end = Math.ceil(((j + 1) * w) / width);
    for (let y = 0; y < height; y++) {
      let sum = 0;
      for (let x = start; x < end; x++) sum += rows[y * w + x];
      out[y * width + j] = sum / (end - start);
    }
  }
  return out;
}

// Greedy non-maximum suppression of boxes [[x1, y1, x2, y2], ...]: indices kept, best first.
function nms(boxes, scores, threshold, byMin = false) {
  const area = boxes.map((b) => Math.max(b[2] - b[0], 0) * Math.max(b[3] - b[1], 0));
  let order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a]);  // stable: ties keep their order
  const keep = [];
  while (order.length) {
    const i = order[0], b = boxes[i];
    keep.push(i);
    order = order.slice(1).filter((k) => {
      const c = boxes[k];
      const inter = Math.max(Math.min(b[2], c[2]) - Math.max(b[0], c[0]), 0) *
                    Math.max(Math.min(b[3], c[3]) - Math.max(b[1], c[1]), 0);
      return inter / (byMin ? Math.min(area[i], area[k]) : area[i] + area[k] - inter) <= threshold;
    });
  }
  return keep;
}

// Indices of the n highest scores (all where there are fewer), in their own order: the work bound.
function best(scores, n) {
  if (scores.length <= n) return scores.map((s, i) => i);
  return scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a] || a - b).slice(0, n).sort((a, b) => a - b);
}

// The networks' corrections (fractions of the side), then, for the next network, a square around the centre.
function refine(box, reg, square = true) {
  const w = f32(box[2] - box[0]), h = f32(box[3] - box[1]);
  const b = [f32(box[0] + f32(reg[0] * w)), f32(box[1] + f32(reg[1] * h)),
             f32(box[2] + f32(reg[2] * w)), f32(box[3] + f32(reg[3] * h))];
  if (!square) return b;
  const cx = f32(f32(b[0] + b[2]) / 2), cy = f32(f32(b[1] + b[3]) / 2);
  const half = f32(Math.max(f32(b[2] - b[0]), f32(b[3] - b[1])) / 2);
  return [f32(cx - half), f32(cy - half), f32(cx + half), f32(cy + half)];
}

// Each box's part of the image (clipped), resized to size x size by area, grey as R = G = B: [K, 3, size, size].
function cut(image, h, w, boxes, size) {
  const plane = size * size, out = new Float32Array(boxes.length * 3 * plane);
  boxes.forEach((box, k) => {
    let [x1, y1, x2, y2] = box.map(Math.trunc);
    x1 = Math.min(Math.max(x1, 0), w - 1); y1 = Math.min(Math.max(y1, 0), h - 1);
    x2 = Math.max(Math.min(x2, w), x1 + 1); y2 = Math.max(Math.min(y2, h), y1 + 1);
    const part = new Float32Array((y2 - y1) * (x2 - x1));
    for (let y = y1; y < y2; y++) part.set(image.subarray(y * w + x1, y * w + x2), (y - y1) * (x2 - x1));
    const small = areaResize(part, y2 - y1, x2 - x1, size, size);
    for (let c = 0; c < 3; c++) out.set(small, (k * 3 + c) * plane);
  });
  return out;
}

export class MTCNN {
  // sessions: onnxruntime-web sessions of P-Net, R-Net, O-Net; settings: the bundle's "finder".
  constructor(ort, sessions, settings) {
    [this.pnet, this.rnet, this.onet] = sessions;
    Object.assign(this, { ort, minSize: settings.min_size, thresholds: settings.thresholds, factor: settings.factor,
                          candidates: settings.candidates });
  }

  // grey Uint8Array [h * w] -> [{box: [x, y, w, h], eyes: [[x, y], [x, y]]}], left to right.
  async find(grey, w, h) {
    const { ort } = this;
    const image = Float32Array.from(grey, (v) => f32(f32(v - 127.5) / 128));
    let boxes = [], regs = [], scores = [];
    let scale = 12 / this.minSize;
    while (Math.min(h, w) * scale >= 12) {
      const hs = Math.trunc(h * scale + 1), ws = Math.trunc(w * scale + 1);
      const small = areaResize(image, h, w, hs, ws), input = new Float32Array(3 * hs * ws);
      for (let c = 0; c < 3; c++) input.set(small, c * hs * ws);
      const out = await this.pnet.run({ image: new ort.Tensor("float32", input, [1, 3, hs, ws]) });
      const prob = out.face.data, reg = out.boxes.data, [oh, ow] = out.face.dims.slice(1), plane = oh * ow;
      const found = [], foundRegs = [], foundScores = [], s = f32(scale);
      let passing = [];
      for (let i = 0; i < plane; i++) if (prob[i] >= this.thresholds[0]) passing.push(i);
      passing = best(passing.map((i) => prob[i]), this.candidates).map((k) => passing[k]);
      for (const i of passing) {
        const y = Math.floor(i / ow), x = i % ow;
        const cx = f32(x * 2), cy = f32(y * 2);  // P-Net's stride is 2
        found.push([Math.floor(f32(f32(cx + 1) / s)), Math.floor(f32(f32(cy + 1) / s)),
                    Math.floor(f32(f32(cx + 12) / s)), Math.floor(f32(f32(cy + 12) / s))]);
        foundRegs.push([0, 1, 2, 3].map((c) => reg[c * plane + i]));
        foundScores.push(prob[i]);
      }
      for (const k of nms(found, foundScores, 0.5)) {
        boxes.push(found[k]); regs.push(foundRegs[k]); scores.push(foundScores[k]);
      }
      scale *= this.factor;
    }
    const top = best(scores, this.candidates);  // before this suppression too: its cost grows as its input squared
    [boxes, regs, scores] = [boxes, regs, scores].map((list) => top.map((k) => list[k]));
    let keep = nms(boxes, scores, 0.7);
    boxes = keep.map((k) => refine(boxes[k], regs[k]));
    let points = [];
    for (const [net, size, threshold, last] of [[this.rnet, 24, this.thresholds[1], false],
                                                [this.onet, 48, this.thresholds[2], true]]) {
      if (!boxes.length) break;
      const out = await net.run({ image: new ort.Tensor("float32", cut(image, h, w, boxes, size),
                                                        [boxes.length, 3, size, size]) });
      const passed = [...out.face.data].map((p, k) => [p, k]).filter(([p]) => p > threshold);
      const reg = (k) => Array.from(out.boxes.data.subarray(k * 4, k * 4 + 4));
      const probs = passed.map(([p]) => p);
      if (last) {
        const marks = out.landmarks.data;
        points = passed.map(([, k]) => {
          const b = boxes[k], sw = f32(b[2] - b[0]), sh = f32(b[3] - b[1]), m = marks.subarray(k * 10, k * 10 + 10);
          return [[f32(b[0] + f32(sw * m[0])), f32(b[1] + f32(sh * m[5]))],
                  [f32(b[0] + f32(sw * m[1])), f32(b[1] + f32(sh * m[6]))]];
        });
        const corrected = passed.map(([, k]) => refine(boxes[k], reg(k), false));
        keep = nms(corrected, probs, 0.7, true);
        boxes = keep.map((k) => corrected[k]);
        points = keep.map((k) => points[k]);
      } else {
        const kept = passed.map(([, k]) => k);
        keep = nms(kept.map((k) => boxes[k]), probs, 0.7);
        boxes = keep.map((i) => refine(boxes[kept[i]], reg(kept[i])));
      }
    }
    const faces = boxes.map((b, i) => ({
      box: [roundEven(b[0]), roundEven(b[1]), roundEven(f32(b[2] - b[0])), roundEven(f32(b[3] - b[1]))],
      eyes: points[i],
    }));
    return faces.map((f, i) => [f, i]).sort((a, b) => a[0].box[0] - b[0].box[0] || a[1] - b[1]).map(([f]) => f);
  }
}

// ---- The crop, as Pillow makes it -------------------------------------------------------------------------------

// Pillow's resize with the BOX filter, 8-bit: 22-bit fixed-point weights, a horizontal pass, then a vertical one.
function boxCoefficients(inSize, outSize) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1), support = 0.5 * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = [];
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const t = (x + xmin - center + 0.5) * ss;
      w.push(t > -0.5 && t <= 0.5 ? 1 : 0);
      sum += w[x];
    }
    out.push([xmin, w.map((v) => Math.trunc(0.5 + (sum ? v / sum : v) * (1 << 22)))]);
  }
  return out;
}

function clip8(v) {
  const r = Math.floor(v / (1 << 22));
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

export function resizeBox(src, w, h, size) {
  const horizontal = boxCoefficients(w, size), vertical = boxCoefficients(h, size);
  const mid = new Uint8Array(h * size), out = new Uint8Array(size * size);
  for (let y = 0; y < h; y++) {
    horizontal.forEach(([xmin, k], xx) => {
      let s = 1 << 21;
      for (let x = 0; x < k.length; x++) s += src[y * w + xmin + x] * k[x];
      mid[y * size + xx] = clip8(s);
    });
  }
  vertical.forEach(([ymin, k], yy) => {
    for (let xx = 0; xx < size; xx++) {
      let s = 1 << 21;
      for (let y = 0; y < k.length; y++) s += mid[(ymin + y) * size + xx] * k[y];
      out[yy * size + xx] = clip8(s);
    }
  });
  return out;
}

// Pillow's rotate(angle, resample=BILINEAR) of an 8-bit square: about its centre, black outside.
export function rotateBilinear(src, n, angle) {
  const a = -angle * Math.PI / 180, c = Math.cos(a), s = Math.sin(a);
  const m = [roundTo(c, 15), roundTo(s, 15), 0, roundTo(-s, 15), roundTo(c, 15), 0];
  const centre = n / 2;
  m[2] = m[0] * -centre + m[1] * -centre + centre;
  m[5] = m[3] * -centre + m[4] * -centre + centre;
  const out = new Uint8Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let xin = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2], yin = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
      if (xin < 0 || xin >= n || yin < 0 || yin >= n) continue;
      xin -= 0.5; yin -= 0.5;
      const x0 = Math.floor(xin), y0 = Math.floor(yin), dx = xin - x0, dy = yin - y0;
      const cx0 = Math.min(Math.max(x0, 0), n - 1), cx1 = Math.min(Math.max(x0 + 1, 0), n - 1);
      const row = Math.min(Math.max(y0, 0), n - 1) * n;
      const v1 = src[row + cx0] + (src[row + cx1] - src[row + cx0]) * dx;
      let v2 = v1;
      if (y0 + 1 >= 0 && y0 + 1 < n) {
        const next = (y0 + 1) * n;
        v2 = src[next + cx0] + (src[next + cx1] - src[next + cx0]) * dx;
      }
      out[y * n + x] = Math.trunc(v1 + (v2 - v1) * dy);
    }
  }
  return out;
}

// The square around box [x, y, w, h], widened by the margin, turned by angle (degrees), as a size x size face;
// outside the picture filled with the nearest edge pixels. Python: faces.crop / fer2013_emotions.crop.
export function crop(grey, w, h, box, settings, angle = 0) {
  const [x, y, bw, bh] = box, side = Math.max(bw, bh) * (1 + 2 * settings.margin);
  const cx = x + bw / 2, cy = y + bh / 2, reach = side * (angle ? 0.75 : 0.5);
  const left = roundEven(cx - reach), top = roundEven(cy - reach), n = Math.max(1, roundEven(2 * reach));
  let patch = new Uint8Array(n * n);
  for (let r = 0; r < n; r++) {
    const row = Math.min(Math.max(top + r, 0), h - 1) * w;
    for (let c = 0; c < n; c++) patch[r * n + c] = grey[row + Math.min(Math.max(left + c, 0), w - 1)];
  }
  let size = n;
  if (angle) {
    const turned = rotateBilinear(patch, n, angle), inner = (n - side) / 2;
    const x0 = roundEven(inner), x1 = roundEven(inner + side);
    size = x1 - x0;
    patch = new Uint8Array(size * size);
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) {
        const yy = x0 + r, xx = x0 + c;
        patch[r * size + c] = yy >= 0 && yy < n && xx >= 0 && xx < n ? turned[yy * n + xx] : 0;
      }
    }
  }
  return resizeBox(patch, size, size, settings.size);
}

// ---- The recognizer ----------------------------------------------------------------------------------------------

export function answer(box, probs, angle, margin) {
  const [x, y, w, h] = box, probabilities = {};
  CLASSES.forEach((c, i) => { probabilities[c] = roundTo(probs[i], 6); });
  const best = probs.indexOf(Math.max(...probs));
  return { box, emotion: CLASSES[best], probabilities,
           crop: { center: [roundTo(x + w / 2, 2), roundTo(y + h / 2, 2)],
                   side: roundTo(Math.max(w, h) * (1 + 2 * margin), 2), angle: roundTo(angle, 2) } };
}

// A bundle folder of app/export.py, by URL: {bundle: its bundle.json, sessions: {name: session}} for the networks
// named ("classifier", "pnet", "rnet", "onet").
export async function loadBundle(ort, url, names = ["classifier", "pnet", "rnet", "onet"]) {
  const get = async (name) => {
    const res = await fetch(url + name);
    if (!res.ok) throw new Error(`${url}${name}: ${res.status} ${res.statusText}`);
    return res;
  };
  const bundle = await (await get("bundle.json")).json();
  if (bundle.format !== 1 || bundle.classes.join() !== CLASSES.join()) {
    throw new Error(`${url}: a bundle of another format or class order than this page reads`);
  }
  const file = (name) => (name === "classifier" ? bundle.classifier.file : bundle.finder.files[name]);
  const sessions = {};
  await Promise.all(names.map(async (name) => {
    const bytes = new Uint8Array(await (await get(file(name))).arrayBuffer());
    sessions[name] = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  }));
  return { bundle, sessions };
}

export class Recognizer {
  // const recognizer = await Recognizer.load(ort, "bundle/")
  static async load(ort, url) {
    const { bundle, sessions } = await loadBundle(ort, url);
    return new Recognizer(ort, bundle, ["classifier", "pnet", "rnet", "onet"].map((n) => sessions[n]));
  }

  constructor(ort, bundle, sessions) {
    Object.assign(this, { ort, bundle, classifier: sessions[0], crop: bundle.crop });
    this.finder = new MTCNN(ort, sessions.slice(1), bundle.finder);
  }

  // The seven probabilities of each uint8 48x48 face: [[p0..p6], ...].
  async classify(faces) {
    if (!faces.length) return [];
    const size = this.crop.size, pixels = new Float32Array(faces.length * size * size);
    faces.forEach((f, k) => pixels.set(f, k * size * size));
    const out = await this.classifier.run({ pixels: new this.ort.Tensor("float32", pixels, [faces.length, 1, size, size]) });
    return faces.map((f, k) => Array.from(out.probabilities.data.subarray(k * 7, k * 7 + 7)));
  }

  // grey Uint8Array [h * w] -> {faces: answers left to right, how: "faces" | "no face found" | "a face crop already"}.
  async emotions(grey, w, h) {
    let found, how;
    if (Math.max(w, h) <= this.crop.whole_up_to) {
      found = [{ box: [0, 0, w, h], angle: 0 }];
      how = "a face crop already";
    } else {
      found = (await this.finder.find(grey, w, h)).map((face) => levelled(face, this.crop));
      how = found.length ? "faces" : "no face found";
    }
    return { faces: await this.answers(grey, w, h, found), how };
  }

  // The answers for faces [{box, angle}] found in this picture (or, on a camera, in a recent frame).
  async answers(grey, w, h, found) {
    const probs = await this.classify(found.map(({ box, angle }) => crop(grey, w, h, box, this.crop, angle)));
    return found.map(({ box, angle }, k) => answer(box, probs[k], angle, this.crop.margin));
  }
}

// {box, eyes} -> {box, angle}: the angle that levels the eyes, to 0.01 degree, 0 under level_past_degrees.
export function levelled({ box, eyes }, settings) {
  const [[x0, y0], [x1, y1]] = eyes;
  const angle = roundTo(f32(f32(Math.atan2(f32(y1 - y0), f32(x1 - x0))) * f32(180 / Math.PI)), 2);
  return { box, angle: Math.abs(angle) < settings.level_past_degrees ? 0 : angle };
}

// A grey picture halved by averaging each 2x2 block (camera frames are searched for faces at half size).
export function halve(grey, w, h) {
  const hw = w >> 1, hh = h >> 1, out = new Uint8Array(hw * hh);
  for (let y = 0; y < hh; y++) {
    for (let x = 0; x < hw; x++) {
      const i = 2 * y * w + 2 * x;
      out[y * hw + x] = (grey[i] + grey[i + 1] + grey[i + w] + grey[i + w + 1] + 2) >> 2;
    }
  }
  return out;
}
