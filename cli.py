"""How every script talks to its user: flags whose mistakes are one line, the errors a user can cause, the
device, and output files written whole or not at all. Exit codes: 2 a bad flag; 1 bad data, weights, an output
that cannot be written, or Ctrl-C. A bug is not a UserError, so it still shows its traceback.
"""
import argparse
import errno
import json
import os
import re
import shutil
import signal
import sys

import torch


class UserError(Exception):
    """Something the user gave cannot be used; the message names it and says why, in one line."""


class FlagError(UserError):
    """A flag's value does not fit (a split the data lacks, a GPU that is not there): exit 2, as argparse's."""


class DataError(UserError):
    """Data that cannot be used: the message names the file (and row)."""


class OutputError(UserError):
    """An output that cannot be written: the message names it."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):  # the docstring as written, each flag's default shown
    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return text + " (default: %(default)s)"


def parser(prog, doc, usage=None):
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter, allow_abbrev=False,
                                usage=usage)

    def error(msg):  # "--wd must be >= 0, got -1", not argparse's "argument --wd: must be ..."
        p.exit(2, f"{prog}: error: " + re.sub(r"^argument (\S+): must be", r"\1 must be", msg) + "\n")
    p.error = error
    return p


def ranged(kind, ok, what):
    """An argparse type: `kind` (int or float), refused unless ok(value) as "--FLAG must be WHAT, got V"."""
    def parse(text):
        value = kind(text)
        if not ok(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _positive(v): return 0 < v < float("inf")
def _non_negative(v): return 0 <= v < float("inf")
def _probability(v): return 0 <= v <= 1
def _fraction(v): return 0 <= v < 1


positive_int = ranged(int, _positive, "a positive integer")
non_negative_int = ranged(int, _non_negative, ">= 0")
positive = ranged(float, _positive, "a positive number")
non_negative = ranged(float, _non_negative, ">= 0")
probability = ranged(float, _probability, "a probability in [0, 1]")
fraction = ranged(float, _fraction, "in [0, 1)")


def add_device_flag(p):
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: a CUDA GPU if there is one")


def pick_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise FlagError("--device cuda, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def fast_amp(device):
    """The precision that speeds `device` up: bf16 where it is native (a recent GPU, a CPU with AVX512-BF16 or
    AMX), fp16 on an older GPU, fp32 ("off") on other CPUs, where bf16 is emulated and slower."""
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "off"


# ------------------------------------------------------------------------------------------------------------
# Output files: written to a temporary name beside the target, flushed to the disk, then renamed over it, so a
# full disk or a crash leaves the previous good file, never a truncated one.

def atomic_write(path, content):
    """`content`: str, bytes, or a function write(tmp_path) such as fig.savefig or torch.save."""
    path, tmp = str(path), temporary_name(path)
    try:
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
        if isinstance(e, RuntimeError) and "writ" not in str(e) and "pos" not in str(e):
            raise
        full = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 2 ** 20
        why = getattr(e, "strerror", None) or (os.strerror(errno.ENOSPC) if full else str(e).splitlines()[0][:100])
        raise OutputError(f"{path}: cannot write it ({why})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def temporary_name(path):
    """x.tmp<pid>.csv.gz beside x.csv.gz: writers that choose the format by the name still do."""
    folder, name = os.path.split(str(path))
    stem, dot, extensions = name.partition(".") if not name.startswith(".") else (name, "", "")
    return os.path.join(folder, f"{stem}.tmp{os.getpid()}{dot}{extensions}")


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def check_writable(path, folder=False, inputs=()):
    """Before long work: `path` (a file, or with folder=True a folder) can be written and is none of `inputs`
    nor inside an input folder. Missing parent folders are made; a real file is tried (os.access says yes to
    root everywhere)."""
    path = str(path)
    for given in map(str, inputs):
        if os.path.exists(path) and os.path.exists(given) and os.path.samefile(path, given):
            raise OutputError(f"{path}: is also an input ({given}); choose another output name")
        if os.path.isdir(given) and inside(path, given):
            raise OutputError(f"{path}: is inside the data folder {given}, where what is written would be read as "
                              f"faces next time; write it elsewhere")
    if not folder and os.path.isdir(path):
        raise OutputError(f"{path}: is a folder; give a file name")
    target = existing = os.path.abspath(path if folder else os.path.dirname(os.path.abspath(path)))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"{path}: {existing} is a file, not a folder")
    try:
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, f".write-test{os.getpid()}"), "w") as f:
            f.write("x")
        os.remove(f.name)
    except OSError as e:
        raise OutputError(f"{path}: cannot write {'into it' if folder else 'it'} "
                          f"({e.strerror or errno.errorcode.get(e.errno, e)})") from None


def same_place(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


# ------------------------------------------------------------------------------------------------------------

def out_of_memory(e):
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)


def run(main, prog):
    """Calls main(); a UserError, Ctrl-C, SIGTERM (what `kill` or a scheduler sends) or running out of memory
    ends in one line and a non-zero exit."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        sys.exit(main())
    except FlagError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        sys.exit(f"{prog}: {e}")
    except KeyboardInterrupt:
        sys.exit(f"\n{prog}: interrupted")
    except (RuntimeError, MemoryError) as e:
        if not out_of_memory(e):
            raise
        sys.exit(f"{prog}: out of memory ({str(e).splitlines()[0][:120]}); try a smaller --bs or input")
    except BrokenPipeError:  # `evaluate.py | head` closed the pipe: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
