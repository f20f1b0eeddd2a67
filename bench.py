"""Speed of the report's network and of our training loop, on synthetic tensors of FER2013's size.

    python bench.py [--device cpu|cuda] [--bs 256] [--json PATH]

model_images_per_s  forward + backward + Adam step on one fixed batch already on the device, in the training
                    precision: the ceiling for the loop
train_images_per_s  train.py's real loop (sampler, gather, augmentation, step) over a 28,709-image epoch
eval_images_per_s   train.py's batched evaluation
amp_speedup         model step in mixed precision / in fp32
loop_over_model     train / model: 1.0 means the loop costs nothing beyond the network
host_*_ms           work outside the step, per epoch: the epoch order, curves.png with 350 epochs,
                    checkpoint.pth
"""
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import checkpoint
import cli
import files
import model
import run_folder
import train

TRAIN_N, VAL_N = 28709, 3589  # FER2013's Training and PublicTest sizes


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_step_rate(device, bs, amp_dtype, steps):
    torch.manual_seed(0)
    net = model.build("resnet").to(device, memory_format=torch.channels_last).train()
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


def loop_rates(device, bs, amp):
    args = train.make_parser().parse_args(["--data", "synthetic", "--bs", str(bs), "--amp", amp,
                                           "--device", device.type])
    g = torch.Generator().manual_seed(0)
    splits = {"train": (torch.randint(0, 256, (TRAIN_N, 48, 48), dtype=torch.uint8, generator=g),
                        torch.randint(0, 7, (TRAIN_N,), generator=g)),
              "val": (torch.randint(0, 256, (VAL_N, 48, 48), dtype=torch.uint8, generator=g),
                      torch.randint(0, 7, (VAL_N,), generator=g))}
    trainer = train.Trainer(args, splits, device)
    if device.type == "cuda":  # a CPU epoch is long enough to hide its warm-up; a GPU epoch is not
        trainer.train_epoch("warm-up")
    sync(device)
    t = time.perf_counter()
    trainer.train_epoch("bench epoch")
    sync(device)
    train_rate = (TRAIN_N // bs) * bs / (time.perf_counter() - t)
    train.validate(trainer.net, *splits["val"], device, trainer.autocast())  # warm-up
    t = time.perf_counter()
    train.validate(trainer.net, *splits["val"], device, trainer.autocast())
    eval_rate = VAL_N / (time.perf_counter() - t)
    return train_rate, eval_rate, trainer


def host_costs(trainer):
    """Milliseconds (median of 3) of the per-epoch host work of train.py, on this machine's disk."""
    def ms(f):
        f()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return round(1000 * statistics.median(times), 1)
    history = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.5, "lr": 1e-4,
                "seconds": 1.0} for e in range(1, 351)]
    with tempfile.TemporaryDirectory() as out:
        return {"host_order_ms": ms(trainer.epoch_order),
                "host_curves_ms": ms(lambda: run_folder.plot_curves(out, history)),
                "host_checkpoint_ms": ms(lambda: checkpoint.save(os.path.join(out, "checkpoint.pth"), trainer,
                                                                 350, history, 1.0, "bench", "bench"))}


def make_parser():
    p = cli.parser("bench.py", __doc__)
    cli.add_device_flag(p)
    p.add_argument("--bs", type=cli.positive_int, default=256, help="batch size")
    p.add_argument("--amp", choices=["bf16", "fp16"], default="bf16", help="the mixed precision measured")
    p.add_argument("--steps", type=cli.positive_int, default=None, help="timed model steps (default 30 CPU, 200 CUDA)")
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    device = cli.pick_device(args.device)
    if args.json:
        files.check_writable(args.json)  # before minutes of measuring, not after
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (200 if device.type == "cuda" else 30)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    model_rate = model_step_rate(device, args.bs, amp_dtype, steps)
    fp32_rate = model_step_rate(device, args.bs, None, steps)
    train_rate, eval_rate, trainer = loop_rates(device, args.bs, args.amp)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model_images_per_s": round(model_rate, 1), "train_images_per_s": round(train_rate, 1),
        "eval_images_per_s": round(eval_rate, 1), "amp_speedup": round(model_rate / fp32_rate, 3),
    }
    result.update(host_costs(trainer))
    derived = {"bs / amp": f"{args.bs} / {args.amp}", "loop_over_model": round(train_rate / model_rate, 3),
               "epoch_seconds": round((TRAIN_N // args.bs) * args.bs / train_rate + VAL_N / eval_rate, 2)}
    width = max(map(len, {**result, **derived}))
    for k, v in {**result, **derived}.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        files.write_json(args.json, result)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    cli.run(main, "bench.py")
