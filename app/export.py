"""Export trained networks to ONNX, the model file that apps, phones and browsers load.

    python app/export.py --weights weights/resnet.pth --out resnet.onnx
    python app/export.py --weights weights/resnet.pth weights/vgg.pth --out pair.onnx    an ensemble, one graph
    python app/export.py --weights weights/resnet.pth --out bundle/     the bundle: the face finder too

A bundle is what an app needs to answer as this project answers, with no PyTorch: the classifier
(classifier.onnx, as below), MTCNN's three networks (pnet.onnx, rnet.onnx, onet.onnx, the face finder that ships
its own weights) and bundle.json, which names the files and holds the finder's settings and the crop's
(faces.py). The runtime package (runtime/, fer2013_emotions) runs it; bundle.json is written last, so a
folder with one is complete.

The graph takes what an app has at hand: grey 48x48 faces as float32 pixel values 0-255, shape [N, 1, 48, 48]
(input "pixels"), and returns the seven class probabilities [N, 7] (output "probabilities", averaged over the
networks of an ensemble, each calibrated, and the average too). The report's normalisation and the softmax are
inside the graph; the class names, the input and the weights it came from are in the file's metadata. After
writing it, the file is run in onnxruntime on faces (the --data split's, synthetic ones without data) and
compared with PyTorch, and both are timed per face.

The shipped weights are fp16 values: the file stores them as fp16 and casts them to fp32 as it loads, half the
size for the same numbers (hence the exporter's unfolded graph: folding BatchNorm into the convolutions would
make fp32 weights that fp16 cannot hold; onnxruntime folds them itself when it loads the file).

Needs the optional extras: pip install -r requirements-export.txt
"""
import json
import logging
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the clone's root
import cli  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402
import weights  # noqa: E402
from app import faces, mtcnn  # noqa: E402

INPUT, OUTPUT = "pixels", "probabilities"
BUNDLE = "bundle.json"
FINDER = ("pnet", "rnet", "onet")


class Probabilities(nn.Module):
    """Pixels 0-255 -> class probabilities, averaged over the networks and calibrated as model.predict_proba
    does: the whole path from a face to an answer, so an app needs no preprocessing of its own beyond cutting
    and resizing the face."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nets  # a model.Ensemble: its temperature is the average's

    def forward(self, pixels):
        x = data.normalize(pixels / 255)
        probs = torch.stack([(net(x) / net.temperature).softmax(1) for net in self.nets]).mean(0)
        return model.sharpen(probs, self.nets.temperature)


def metadata(paths):
    return {"classes": ",".join(data.CLASSES),
            "input": f"{INPUT}: float32 [N, 1, 48, 48], grey pixel values 0-255 of a face cut to its box",
            "output": f"{OUTPUT}: float32 [N, 7], the classes in the order of 'classes'",
            "preprocessing": f"inside the graph: x / 255, then (x - {data.MEAN}) / {data.STD}",
            "weights": ", ".join(os.path.basename(w) for w in paths)}


def export(nets, paths, path):
    """Writes the classifier's ONNX file (atomically) and returns the PyTorch module it was made from."""
    module = Probabilities(nets).eval()
    example = torch.full((2, 1, data.SIZE, data.SIZE), 128.0)
    write_onnx(module, (example,), [INPUT], [OUTPUT], ({0: torch.export.Dim("faces")},), path, metadata(paths))
    return module


def write_onnx(module, example, inputs, outputs, dynamic, path, props):
    """One self-contained ONNX file, written atomically, its fp16-valued weights stored as fp16."""
    import onnx

    def write(tmp):
        # the exporter's notes on torchvision operators this graph does not use, and its own deprecations
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.onnx.export(module, example, tmp, dynamo=True, input_names=inputs, output_names=outputs,
                                  dynamic_shapes=dynamic, verbose=False, optimize=False)
            graph = onnx.load(tmp)  # with its weights, which the exporter may have put in TMP.data beside it
            store_half(graph)
            onnx.helper.set_model_props(graph, props)
            onnx.checker.check_model(graph)
            onnx.save(graph, tmp)  # one file: the weights inside it
        finally:
            if os.path.exists(tmp + ".data"):
                os.remove(tmp + ".data")

    cli.atomic_write(path, write)


def store_half(graph):
    """Each fp32 weight whose values are all fp16 values, stored as fp16 and cast back to fp32 as the file loads."""
    from onnx import TensorProto, helper, numpy_helper
    casts = []
    for tensor in graph.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 1 and \
                np.array_equal(values.astype(np.float16).astype(np.float32), values):
            name = tensor.name
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float16), f"{name}.fp16"))
            casts.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)


def export_finder(folder):
    """MTCNN's three networks (mtcnn.py, with facenet-pytorch's weights) as pnet/rnet/onet.onnx in `folder`, and
    the settings that go with them. P-Net takes any picture size; R-Net and O-Net any number of crops."""
    detector = mtcnn.MTCNNDetector()
    Dim = torch.export.Dim
    shapes = {"pnet": ((1, 3, 60, 80), {2: Dim("height", min=12, max=8192), 3: Dim("width", min=12, max=8192)}),
              "rnet": ((2, 3, 24, 24), {0: Dim("crops")}), "onet": ((2, 3, 48, 48), {0: Dim("crops")})}
    for name, net in zip(FINDER, detector.nets):
        shape, dynamic = shapes[name]
        outputs = ["boxes", "face"] + ["landmarks"] * (name == "onet")
        write_onnx(net, (torch.zeros(shape),), ["image"], outputs, (dynamic,), os.path.join(folder, f"{name}.onnx"),
                   {"source": "MTCNN (Zhang et al. 2016); weights from facenet-pytorch (MIT licence)"})
    from importlib import metadata as packages
    licence = packages.distribution("facenet-pytorch").read_text("LICENSE.md")  # MIT: its notice goes with them
    cli.atomic_write(os.path.join(folder, "LICENSE-MTCNN.md"), licence or "facenet-pytorch: MIT licence, "
                     "https://github.com/timesler/facenet-pytorch/blob/master/LICENSE.md\n")
    return {"files": {name: f"{name}.onnx" for name in FINDER}, "min_size": faces.MIN_SIZE,
            "thresholds": list(detector.thresholds), "factor": detector.factor, "candidates": detector.candidates,
            "input": "grey as R = G = B, (x - 127.5) / 128; P-Net over a pyramid, R-Net 24x24 and O-Net 48x48 crops"}


def write_bundle(nets, paths, folder):
    """The classifier, the face finder and bundle.json (last: a folder with one is complete)."""
    for name in (BUNDLE, "classifier.onnx", "LICENSE-MTCNN.md", *[f"{n}.onnx" for n in FINDER]):
        cli.check_writable(os.path.join(folder, name), inputs=paths)
    if os.path.exists(os.path.join(folder, BUNDLE)):
        os.remove(os.path.join(folder, BUNDLE))  # incomplete until it is written again
    finder = export_finder(folder)
    module = export(nets, paths, os.path.join(folder, "classifier.onnx"))
    cli.write_json(os.path.join(folder, BUNDLE), {
        "format": 1, "classes": list(data.CLASSES), "weights": [os.path.basename(str(p)) for p in paths],
        "classifier": {"file": "classifier.onnx", **metadata(paths),
                       "temperatures": [n.temperature for n in nets], "average_temperature": nets.temperature},
        "finder": finder,
        "crop": {"size": data.SIZE, "margin": faces.MARGIN, "level_past_degrees": faces.LEVEL_PAST,
                 "whole_up_to": faces.SMALL,
                 "how": "the square around the box, grey (Pillow's luminance), turned by the eyes' angle where it "
                        "passes level_past_degrees (bilinear), resized to size x size by area averaging (box)"}})
    return module


def per_face_ms(run, crops, repeats=3):
    """The best of `repeats` times to classify the crops one at a time, in ms per face."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for face in crops:
            run(face[None])
        best = min(best, (time.perf_counter() - t0) / len(crops))
    return 1000 * best


def check(module, path, images, labels=None):
    """onnxruntime against PyTorch on the same faces (512 at most): the largest probability difference, the share
    of faces given the same class, and each one's time per face (one face at a time, as a live app asks); with
    `labels`, the file's accuracy on every face."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    accuracy = None if labels is None else float(np.mean(np.concatenate([
        session.run(None, {INPUT: images[i:i + 256, None].float().numpy()})[0].argmax(1)
        for i in range(0, len(images), 256)]) == labels.numpy()))
    pixels = images[:512, None].float()
    with torch.no_grad():
        theirs = module(pixels).numpy()
    ours = session.run(None, {INPUT: pixels.numpy()})[0]
    sample = pixels[:64]
    with torch.no_grad():
        torch_ms = per_face_ms(module, sample)
    onnx_ms = per_face_ms(lambda x: session.run(None, {INPUT: x.numpy()}), sample)
    return {"faces": len(pixels), "max_abs_diff": float(np.abs(ours - theirs).max()),
            "same_class": float((ours.argmax(1) == theirs.argmax(1)).mean()),
            "pytorch_ms_per_face": torch_ms, "onnxruntime_ms_per_face": onnx_ms, "accuracy": accuracy}


def make_parser():
    p = cli.parser("export.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--out", required=True, help="the .onnx file to write, or a folder for the bundle")
    p.add_argument("--data", help="faces to check the file on: a data set as evaluate.py's --data, scored split "
                   "(default: 512 random faces)")
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    bundle = not args.out.lower().endswith(".onnx")
    if bundle and (os.path.splitext(args.out.rstrip("/"))[1] or os.path.isfile(args.out)):
        p.error(f"--out {args.out}: name an .onnx file, or a folder for the bundle")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise cli.UserError(f"needs {e.name}, an optional extra: pip install -r requirements-export.txt") \
            from None
    if bundle and mtcnn.weights_folder() is None:
        raise cli.UserError(f"the bundle's face finder is MTCNN, and its weights are not installed: {mtcnn.INSTALL}")
    cli.check_writable(args.out, folder=bundle, inputs=[*args.weights, *[args.data] * bool(args.data)])
    nets = weights.load_nets(args.weights, "cpu").to(memory_format=torch.contiguous_format)  # fp32: runs anywhere
    if args.data:  # read before anything is written
        splits = data.load(args.data, whole=True)
        split, images, labels = data.choose_split(splits, None, args.data)
        described = f"faces of {splits.title(split)}"
    else:
        images, described = torch.randint(0, 256, (512, data.SIZE, data.SIZE), dtype=torch.uint8), "random faces"
        labels = None
    if bundle:
        module = write_bundle(nets, args.weights, args.out)
        classifier = os.path.join(args.out, "classifier.onnx")
        size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
        print(f"wrote the bundle {args.out} ({size / 2 ** 20:.1f} MB): {BUNDLE}, classifier.onnx "
              f"({len(nets)} network(s)) and MTCNN's {', '.join(f'{n}.onnx' for n in FINDER)}")
    else:
        module, classifier = export(nets, args.weights, args.out), args.out
        print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MB): {len(nets)} network(s), input "
              f"{INPUT} [N, 1, 48, 48] pixels 0-255, output {OUTPUT} [N, 7] ({', '.join(data.CLASSES)})")
    m = check(module, classifier, images, labels)
    print(f"onnxruntime vs PyTorch on {m['faces']} {described}: largest probability "
          f"difference {m['max_abs_diff']:.1e}, same class for {100 * m['same_class']:.1f}%; one face at a "
          f"time: {m['onnxruntime_ms_per_face']:.2f} ms (onnxruntime) vs {m['pytorch_ms_per_face']:.2f} ms "
          f"(PyTorch, fp32)")
    if m["accuracy"] is not None:
        print(f"the file's accuracy on the {len(images):,} {described}: {100 * m['accuracy']:.2f}%")


if __name__ == "__main__":
    cli.run(main, "export.py")
