"""For choosing a network for an app: every shipped weights file's parameters, file sizes, milliseconds per
face in onnxruntime and in PyTorch on this CPU, and PublicTest accuracy of its exported ONNX file, as a
markdown table (docs/export.md holds the measured one).

    python tools/app_table.py --data ../shared/fer2013/fer2013_dev.csv.gz

Each file is exported by app/export.py (run as a script, into a temporary folder) and checked there: the
accuracy is the ONNX file's on the PublicTest faces, one face at a time is timed in both runtimes (the best of
three passes over 64 faces, fp32). Needs requirements-export.txt. Minutes: close other work first, since the
timings are this machine's at this moment.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the clone's root
import cli  # noqa: E402
import model  # noqa: E402
import weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURED = re.compile(r"one face at a time: ([\d.]+) ms \(onnxruntime\) vs ([\d.]+) ms.*?accuracy on the [\d,]+ "
                      r"faces of ([^:]+): ([\d.]+)%", re.S)


def main(argv=None):
    p = cli.parser("app_table.py", __doc__)
    p.add_argument("--data", required=True, help="the data set whose PublicTest (val) split scores each file")
    p.add_argument("--weights", nargs="+", help="the files (default: every weights/*.pth and weights/seeds/*.pth)")
    args = p.parse_args(argv)
    paths = args.weights or sorted(glob.glob(os.path.join(ROOT, "weights", "*.pth"))) + \
        sorted(glob.glob(os.path.join(ROOT, "weights", "seeds", "*.pth")))
    print("| file | network | parameters | .pth | .onnx | ms per face, onnxruntime | ms per face, PyTorch | "
          "accuracy, split |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for path in paths:
            net, name = weights.load(path)
            out = os.path.join(folder, "m.onnx")
            r = subprocess.run([sys.executable, os.path.join(ROOT, "app", "export.py"), "--weights", path, "--out",
                                out, "--data", args.data], capture_output=True, text=True)
            found = MEASURED.search(r.stdout)
            if r.returncode or not found:
                raise cli.UserError(f"app/export.py --weights {path}: {(r.stderr or r.stdout).strip()[-300:]}")
            ort_ms, torch_ms, split, accuracy = found.groups()
            print(f"| `{os.path.relpath(path, ROOT)}` | {name} | {model.count_parameters(net):,} | "
                  f"{os.path.getsize(path) / 2 ** 20:.1f} MB | {os.path.getsize(out) / 2 ** 20:.1f} MB | {ort_ms} | "
                  f"{torch_ms} | {accuracy}%, {split} |", flush=True)


if __name__ == "__main__":
    cli.run(main, "app_table.py")
