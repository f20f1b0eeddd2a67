"""Every face in your photos: its box and top-3 emotions, the photos marked, and what the network looked at.

    python app/photos.py --weights weights/resnet.pth --images me.jpg group.png
    python app/photos.py --weights weights/resnet.pth --images me.jpg --out marked/ --json faces.json
    python app/photos.py --weights weights/resnet.pth --images me.jpg --gradcam me_gradcam.png

Faces are found by MTCNN where it is installed, else OpenCV's Haar cascade (requirements-faces.txt), and cut
as FER2013 cut its faces (faces.py). A picture of 96 px or less, or any picture where no face finder is
installed, is classified whole, with a line saying so; a picture in which no face is found has no answer. A
folder given as --images means its pictures.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the clone's root
import cli  # noqa: E402
import data  # noqa: E402
import gradcam  # noqa: E402
import readers  # noqa: E402
import weights  # noqa: E402
from app import faces  # noqa: E402

MARKED = "_faces.png"  # --out writes photo.jpg's faces as photo_faces.png


def unique_names(paths, suffix):
    """Output names for pictures written into one folder: `<stem><suffix>`; `<name.ext><suffix>` where two share
    a stem (1.jpg and 1.png), and a counter on top where they share a name (a/1.jpg and b/1.jpg)."""
    stems = [os.path.splitext(os.path.basename(str(p)))[0] for p in paths]
    names = [(os.path.basename(str(p)) if stems.count(s) > 1 else s) for p, s in zip(paths, stems)]
    out, taken = [], set(n for n in names if names.count(n) == 1)
    for name in names:
        k, candidate = 1, name
        while names.count(name) > 1 and (candidate == name or candidate in taken):  # a counter no other name has
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate)
        out.append(candidate + suffix)
    return out


def top3(probs):
    top = probs.topk(3)
    return ", ".join(f"{data.CLASSES[i]} {100 * v:.1f}%" for v, i in zip(top.values, top.indices))


def answer(nets, args, device):
    """A line per picture classified whole, else a line per face with its box; the marked photos and the
    JSON where asked. Returns the faces cut, with a title and the probabilities shown each, for Grad-CAM,
    and the pictures that could not be read."""
    from PIL import Image
    found, unread, crops, titles, shown = [], [], [], [], []
    names = unique_names(args.images, MARKED) if args.out else []
    said = False
    for k, (path, grey, boxes, how, angles, finder) in enumerate(faces.find_in_files(args.images)):
        if finder and not said:
            print(f"faces found by {finder}")
            said = True
        if grey is None:  # go on with the others; said again at the end
            print(f"skipped {how}")
            unread.append(how)
            found.append({"file": str(path), "error": how})
            continue
        probs = torch.from_numpy(faces.classify(grey, boxes, nets, device, args.tta, angles=angles))
        if how == "faces":
            print(f"{path}: {len(boxes)} face{'s' * (len(boxes) > 1)}")
            for n, (box, pr) in enumerate(zip(boxes, probs), 1):
                print(f"  face {n} at x={box[0]} y={box[1]} w={box[2]} h={box[3]}: {top3(pr)}")
        elif how == "no face found":
            print(f"{path}: no face found")
        else:
            print(f"{path} (classified whole: {how}): {top3(probs[0])}")
        found.append({"file": str(path), "whole": how not in ("faces", "no face found"), "note": how,
                      "faces": [faces.answer(box, pr.numpy(), angle=a) for box, pr, a in zip(boxes, probs, angles)]})
        crops += list(faces.cut(grey, boxes, angles))
        shown += list(probs.numpy())
        short = os.path.basename(path)[:18]
        titles += [f"{short} #{n}" if how == "faces" else short for n in range(1, len(boxes) + 1)]
        if args.out:
            texts = [f"{data.CLASSES[int(pr.argmax())]} {100 * float(pr.max()):.0f}%" for pr in probs]
            marked = faces.label_faces(faces.read_rgb(path), boxes, texts)
            name = os.path.join(args.out, names[k])
            cli.atomic_write(name, lambda t: Image.fromarray(marked).save(t))
            print(f"  wrote {name}")
    if args.json:
        cli.write_json(args.json, {"images": found})
        print(f"wrote {args.json}")
    return crops, titles, shown, unread


def make_parser():
    p = cli.parser("photos.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--images", nargs="+", required=True, metavar="IMAGE", help="the photos")
    p.add_argument("--tta", action="store_true", help="average over ten views of each face, as evaluate.py's")
    p.add_argument("--out", help="a folder for each photo with its faces marked (default: nothing written)")
    p.add_argument("--json", metavar="PATH", help="each face's box, emotion and probabilities")
    p.add_argument("--gradcam", metavar="FIGURE", help="draw each face's Grad-CAM (one --weights file) here")
    p.add_argument("--layer", help="with --gradcam: the module to explain (default: the last residual block)")
    p.add_argument("--class", dest="cls", type=gradcam.parse_class,
                   help="with --gradcam: explain this class instead of the predicted")
    cli.add_device_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    without = [f for f in ("layer", "cls") if getattr(args, f) is not None and not args.gradcam]
    if without:
        p.error(f"--{without[0].replace('cls', 'class')} shapes the Grad-CAM figure: add --gradcam FIGURE")
    if args.gradcam and len(args.weights) > 1:
        p.error("--gradcam explains one network: give one --weights file")
    if args.gradcam and os.path.splitext(args.gradcam)[1].lower() not in gradcam.IMAGE_FORMATS:
        p.error(f"--gradcam {args.gradcam}: name an image file ({', '.join(gradcam.IMAGE_FORMATS)})")
    args.images = [x for i in args.images for x in ([os.path.join(i, f) for f in readers.visible(i) if f.lower().endswith(
        readers.IMAGE_EXTS)] if os.path.isdir(i) else [i])]  # a folder means its pictures
    if args.out and any(o and cli.same_place(o, args.out) for o in (args.json, args.gradcam)):
        p.error(f"--out {args.out}: is also a file to write (--json or --gradcam); choose another name")
    device = cli.pick_device(args.device)
    inputs = [*args.weights, *args.images]
    for output in (args.json, args.gradcam):  # every output checked before the work
        if output:
            cli.check_writable(output, inputs=inputs)
    if args.out:
        cli.check_writable(args.out, folder=True, inputs=inputs)
        for name in unique_names(args.images, MARKED):  # no photo replaced by another's marked copy
            cli.check_writable(os.path.join(args.out, name), inputs=args.images)
            for flag, output in (("--json", args.json), ("--gradcam", args.gradcam)):
                if output and cli.same_place(output, os.path.join(args.out, name)):
                    p.error(f"{flag} {output}: is also where --out marks a photo; choose another name")
    if args.json and args.gradcam and cli.same_place(args.json, args.gradcam):
        p.error(f"--json {args.json}: is also --gradcam's figure; choose another name")
    nets = weights.load_nets(args.weights, device)
    if args.gradcam:
        layer = gradcam.layer_to_explain(p, nets[0], args.layer, args.weights[0])

    crops, titles, shown, unread = answer(nets, args, device)
    if args.gradcam:
        if crops:
            gradcam.explain(p, nets[0], torch.from_numpy(np.stack(crops)), titles, layer, args.cls, args.gradcam,
                            device, probs=np.stack(shown))
        else:
            print(f"no face to explain: {args.gradcam} not written")
    if unread:
        raise cli.DataError(f"{len(unread)} of {len(args.images)} pictures could not be read, the rest were "
                             f"answered: {unread[0]}{' ...' if len(unread) > 1 else ''}")


if __name__ == "__main__":
    cli.run(main, "photos.py")
