"""Speed of the report's network and of train.py's loop on FER2013-sized random faces.

    python tools/bench.py [--device cpu|cuda] [--bs 256] [--amp bf16|fp16] [--json PATH]

model_images_per_s  forward + backward + Adam step on one fixed batch already on the device, in the
                    training precision: the ceiling for the loop
amp_speedup         that step in mixed precision / in fp32
eval_images_per_s   batched prediction (model.predict_proba), fp32
epoch_seconds       one epoch of `python train.py` (28,709 faces, sampler, gather, augmentation, step, then
                    validation on 3,589 and the run's files), from its history.csv
loop_over_model     28,709 / epoch_seconds / model_images_per_s: 1.0 means the loop costs nothing beyond the network
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402
import model  # noqa: E402
from synthetic_faces import write_csv  # noqa: E402

TRAIN_N, VAL_N = 28709, 3589  # FER2013's Training and PublicTest sizes


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_step_rate(device, bs, amp_dtype, steps):
    torch.manual_seed(0)
    net = model.ResNet().to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(bs, 1, 48, 48, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (bs,), device=device)

    def step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):  # warm-up: allocator, cuDNN autotuning, oneDNN primitive caches
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * bs / (time.perf_counter() - t)


def eval_rate(device):
    net = model.ResNet().to(device, memory_format=torch.channels_last).eval()
    net.trained = {"interpolation": "nearest"}
    faces = torch.randint(0, 256, (VAL_N, 48, 48), dtype=torch.uint8)
    model.predict_proba([net], faces[:512], device)  # warm-up
    t = time.perf_counter()
    model.predict_proba([net], faces, device)
    return VAL_N / (time.perf_counter() - t)


def epoch_seconds(device, bs, amp):
    """One epoch of train.py as a user runs it, on random faces of FER2013's sizes."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "faces.csv")
        write_csv(csv, rng.integers(0, 256, (TRAIN_N + VAL_N, 48, 48), dtype=np.uint8),
                  rng.integers(0, 7, TRAIN_N + VAL_N), ["Training"] * TRAIN_N + ["PublicTest"] * VAL_N)
        subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--data", csv, "--epochs", "1", "--bs", str(bs),
                        "--amp", amp, "--device", device.type, "--out", os.path.join(tmp, "run")],
                       check=True, stdout=subprocess.DEVNULL)
        return float(pd.read_csv(os.path.join(tmp, "run", "history.csv"))["seconds"].iloc[-1])


def make_parser():
    p = cli.parser("bench.py", __doc__)
    cli.add_device_flag(p)
    p.add_argument("--bs", type=cli.positive_int, default=256, help="batch size")
    p.add_argument("--amp", choices=["bf16", "fp16"], default="bf16", help="the mixed precision measured")
    p.add_argument("--steps", type=cli.positive_int, default=None, help="timed model steps (default 30 CPU, 200 CUDA)")
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    return p


def main(argv=None):
    args = make_parser().parse_args(argv)
    device = cli.pick_device(args.device)
    if args.json:
        cli.check_writable(args.json)  # before minutes of measuring, not after
    steps = args.steps or (200 if device.type == "cuda" else 30)
    model_rate = model_step_rate(device, args.bs, {"bf16": torch.bfloat16, "fp16": torch.float16}[args.amp], steps)
    fp32_rate = model_step_rate(device, args.bs, None, steps)
    seconds = epoch_seconds(device, args.bs, args.amp)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "bs": args.bs, "amp": args.amp,
              "model_images_per_s": round(model_rate, 1), "amp_speedup": round(model_rate / fp32_rate, 3),
              "eval_images_per_s": round(eval_rate(device), 1), "epoch_seconds": round(seconds, 2),
              "loop_over_model": round(TRAIN_N / seconds / model_rate, 3)}
    for k, v in result.items():
        print(f"{k:<20}  {v}")
    if args.json:
        cli.write_json(args.json, result)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    cli.run(main, "bench.py")
