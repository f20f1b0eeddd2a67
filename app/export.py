"""Export trained networks to ONNX, the model file that apps, phones and browsers load.

    python app/export.py --weights weights/resnet.pth --out resnet.onnx
    python app/export.py --weights weights/resnet.pth weights/vgg.pth --out pair.onnx    an ensemble, one graph

The graph takes what an app has at hand: grey 48x48 faces as float32 pixel values 0-255, shape [N, 1, 48, 48]
(input "pixels"), and returns the seven class probabilities [N, 7] (output "probabilities", averaged over the
networks of an ensemble). The report's normalisation and the softmax are inside the graph; the class names, the
input and the weights it came from are in the file's metadata. After writing it, the file is run in
onnxruntime on faces (the --data split's, synthetic ones without data) and compared with PyTorch, and both
are timed per face.

Needs the optional extras: pip install -r requirements-export.txt
"""
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
import weights  # noqa: E402

INPUT, OUTPUT = "pixels", "probabilities"


class Probabilities(nn.Module):
    """Pixels 0-255 -> class probabilities, averaged over the networks: the whole path from a face to an
    answer, so an app needs no preprocessing of its own beyond cutting and resizing the face."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, pixels):
        x = data.normalize(pixels / 255)
        return torch.stack([(net(x) / getattr(net, "temperature", 1.0)).softmax(1) for net in self.nets]).mean(0)


def metadata(paths):
    return {"classes": ",".join(data.CLASSES),
            "input": f"{INPUT}: float32 [N, 1, 48, 48], grey pixel values 0-255 of a face cut to its box",
            "output": f"{OUTPUT}: float32 [N, 7], the classes in the order of 'classes'",
            "preprocessing": f"inside the graph: x / 255, then (x - {data.MEAN}) / {data.STD}",
            "weights": ", ".join(os.path.basename(w) for w in paths)}


def export(nets, paths, path):
    """Writes the ONNX file (atomically) and returns the PyTorch module it was made from."""
    import onnx
    module = Probabilities(nets).eval()
    example = torch.full((2, 1, data.SIZE, data.SIZE), 128.0)

    def write(tmp):
        # the exporter's notes on torchvision operators this graph does not use, and its own deprecations
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(module, (example,), tmp, dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_shapes=({0: torch.export.Dim("faces")},), verbose=False)
        graph = onnx.load(tmp)  # with its weights, which the exporter may have put in TMP.data beside it
        onnx.helper.set_model_props(graph, metadata(paths))
        onnx.save(graph, tmp)  # one file: the weights inside it
        if os.path.exists(tmp + ".data"):
            os.remove(tmp + ".data")

    cli.atomic_write(path, write)
    return module


def per_face_ms(run, faces, repeats=3):
    """The best of `repeats` times to classify the faces one at a time, in ms per face."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for face in faces:
            run(face[None])
        best = min(best, (time.perf_counter() - t0) / len(faces))
    return 1000 * best


def check(module, path, images):
    """onnxruntime against PyTorch on the same faces: the largest probability difference, the share of faces
    given the same class, and each one's time per face (one face at a time, as a live app asks)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    pixels = images[:, None].float()
    with torch.no_grad():
        theirs = module(pixels).numpy()
    ours = session.run(None, {INPUT: pixels.numpy()})[0]
    sample = pixels[:64]
    with torch.no_grad():
        torch_ms = per_face_ms(module, sample)
    onnx_ms = per_face_ms(lambda x: session.run(None, {INPUT: x.numpy()}), sample)
    return {"faces": len(images), "max_abs_diff": float(np.abs(ours - theirs).max()),
            "same_class": float((ours.argmax(1) == theirs.argmax(1)).mean()),
            "pytorch_ms_per_face": torch_ms, "onnxruntime_ms_per_face": onnx_ms}


def make_parser():
    p = cli.parser("export.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--data", help="faces to check the file on: a data set as evaluate.py's --data, scored split "
                   "(default: 512 random faces)")
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    if not args.out.lower().endswith(".onnx"):
        p.error(f"--out {args.out}: name an .onnx file")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise cli.UserError(f"needs {e.name}, an optional extra: pip install -r requirements-export.txt") \
            from None
    cli.check_writable(args.out, inputs=[*args.weights, *[args.data] * bool(args.data)])
    nets = [weights.load(w)[0] for w in args.weights]  # fp32 on the CPU: the file runs anywhere
    if args.data:  # read before anything is written
        splits = data.load(args.data, whole=True)
        split, images, _ = data.choose_split(splits, None, args.data)
        faces = f"faces of {splits.title(split)}"
    else:
        images, faces = torch.randint(0, 256, (512, data.SIZE, data.SIZE), dtype=torch.uint8), "random faces"
    module = export(nets, args.weights, args.out)
    m = check(module, args.out, images[:512])
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MB): {len(nets)} network(s), input "
          f"{INPUT} [N, 1, 48, 48] pixels 0-255, output {OUTPUT} [N, 7] ({', '.join(data.CLASSES)})")
    print(f"onnxruntime vs PyTorch on {m['faces']} {faces}: largest probability "
          f"difference {m['max_abs_diff']:.1e}, same class for {100 * m['same_class']:.1f}%; one face at a "
          f"time: {m['onnxruntime_ms_per_face']:.2f} ms (onnxruntime) vs {m['pytorch_ms_per_face']:.2f} ms "
          f"(PyTorch, fp32)")


if __name__ == "__main__":
    cli.run(main, "export.py")
