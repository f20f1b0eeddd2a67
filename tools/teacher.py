"""A teacher's class probabilities for every training and validation face, once, for train.py --teacher
(knowledge distillation, Hinton et al. 2015): the student learns from the labels and from these soft targets.

    python tools/teacher.py --weights weights/resnet.pth weights/vgg.pth --tta --data data/fer2013.csv \
        --out runs/teacher.pt
    python train.py --teacher runs/teacher.pt --teacher-weight 0.5 ...

Each face's probabilities are averaged over the networks and, with --tta, over the ten views (the mirror
among them, so a flipped training face keeps a fitting target). The file holds each split's fingerprint, so
train.py refuses it for other faces.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import cli  # noqa: E402
import data  # noqa: E402
import files  # noqa: E402
import inference  # noqa: E402


def main(argv=None):
    p = cli.parser("teacher.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="the teacher: model.pth file(s), an ensemble")
    p.add_argument("--data", required=True, help="the data the student trains on, as train.py's --data")
    p.add_argument("--out", required=True, help="the file to write (.pt)")
    p.add_argument("--tta", action="store_true", help="average each face's ten views (evaluate.py --tta)")
    cli.add_device_flag(p)
    args = p.parse_args(argv)
    if args.data != "synthetic" and not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file or folder")
    files.check_writable(args.out, inputs=[*args.weights, args.data])
    device = cli.pick_device(args.device)
    nets = inference.load_nets(args.weights, device)
    splits = data.load(args.data)
    out = inference.teacher_file(nets, splits, device, args.tta, [os.path.basename(w) for w in args.weights])
    for split in ("train", "val"):
        agree = (out[split]["probs"].argmax(1) == splits[split][1]).float().mean().item()
        print(f"{splits.title(split)}: {len(splits[split][1])} faces, the teacher agrees with {100 * agree:.2f}% "
              f"of labels")
    checkpoint.atomic_save(out, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main, "teacher.py")
