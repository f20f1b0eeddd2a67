"""How every script talks to its user: a flag parser whose -h shows the defaults and whose errors are one
line, flag values held to their ranges, the --device flag and the precision it runs at, and the `__main__`
guard that turns a mistake the user can fix into one line and a non-zero exit.

Exit codes: 2 a bad flag (argparse's); 1 bad data, weights, an output that cannot be written, or Ctrl-C. A bug
inside the code is not a UserError, so it still shows its traceback and gets reported.
"""
import argparse
import os
import re
import shlex
import signal
import sys
import time

import torch


class UserError(Exception):
    """Something the user gave (data, weights, an output path) cannot be used; the message names it and says
    why, in one line."""


class FlagError(UserError):
    """A flag's value does not fit what it was given (a split the data lacks, a GPU that is not there): a
    usage error, exit 2 like argparse's own."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each flag's default after its help (unless the help says it, or
    there is none to say: an off switch, an unset path)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def parser(prog, doc, recipes=False):
    """The script's flag parser. With recipes, `@FILE` on the command line stands for the flags in FILE
    (read_recipes), and the usage line says so."""
    usage = f"{prog} [@RECIPE ...] [flags]" if recipes else None
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter, allow_abbrev=False,
                                usage=usage)
    # one line, not the usage block + message; under torchrun, said once (by rank 0), not once per process
    speaks = int(os.environ.get("RANK", 0)) == 0

    def error(msg):
        msg = re.sub(r"^argument (\S+): must be", r"\1 must be", msg)  # a `checked` type's refusal
        if not speaks:  # the other ranks wait: torchrun stops rank 0 as soon as one of them exits
            time.sleep(2)
        p.exit(2, f"{prog}: error: {msg}\n" if speaks else None)
    p.error = error
    return p


def checked(kind, ok, what):
    """An argparse `type=`: the text read as `kind`, then refused unless ok(value), as "--FLAG must be WHAT,
    got VALUE". NaN fails every comparison, so "--wd nan" is refused like "--wd -1"."""
    def parse(text):
        value = kind(text)  # a ValueError here is argparse's "invalid int value"
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int = checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = checked(int, lambda v: v >= 0, ">= 0")
positive = checked(float, lambda v: 0 < v < float("inf"), "a positive number")
non_negative = checked(float, lambda v: 0 <= v < float("inf"), ">= 0")
probability = checked(float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def add_device_flag(p):
    """--device, the same in every script; pick_device turns it into a torch.device."""
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: a CUDA GPU where PyTorch sees one, else the CPU")


def pick_device(name):
    """--device auto|cpu|cuda -> a torch.device; auto takes a CUDA GPU where PyTorch sees one."""
    if name == "cuda" and not torch.cuda.is_available():
        raise FlagError("--device cuda, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def fast_amp(device):
    """The mixed precision that speeds `device` up: bf16 on a CUDA GPU that has it (fp16 on one that has
    not) and on a CPU with native bf16 (AVX512-BF16 or AMX), fp32 ("off") on other CPUs, where bf16 is
    emulated and slower than fp32 (docs/performance.md)."""
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "off"


def read_recipes(p, argv):
    """argv with each `@FILE` replaced by the flags written in FILE (a recipe: recipes/*.txt), read as a shell
    reads them; `#` starts a comment. Flags after it on the command line win, as any later flag does."""
    out = []
    for a in argv:
        if not str(a).startswith("@"):
            out.append(a)
            continue
        path = str(a)[1:]
        try:
            with open(path) as f:
                out += shlex.split(f.read(), comments=True)
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"{a}: cannot read this recipe file ({getattr(e, 'strerror', None) or type(e).__name__})")
        except ValueError as e:  # an unclosed quote
            p.error(f"{a}: not a recipe file ({e})")
    return out


def given_flags(argv):
    """The flags written on a command line (underscored, as argparse names them): what the user chose, as
    against a default."""
    argv = sys.argv[1:] if argv is None else argv
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}


def out_of_memory(e):
    """Whether an exception is the device running out of memory: torch.cuda.OutOfMemoryError, or the CPU
    allocator's RuntimeError ("DefaultCPUAllocator: can't allocate memory"), or Python's MemoryError."""
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or \
        "can't allocate memory" in str(e)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def run(main, prog):
    """Calls main(); a UserError or Ctrl-C ends in one line. SIGTERM (what `kill`, `timeout`, a job scheduler
    or a shutting-down machine sends) is handled as Ctrl-C is, so a stopped run says what it saved and
    leaves its folder resumable. Under torchrun only rank 0 says it."""
    speaks = int(os.environ.get("RANK", 0)) == 0
    signal.signal(signal.SIGTERM, interrupt)
    try:
        sys.exit(main())
    except FlagError as e:
        if speaks:
            print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        sys.exit(f"{prog}: {e}" if speaks else 1)
    except KeyboardInterrupt:
        sys.exit(f"\n{prog}: interrupted" if speaks else 130)
    except (RuntimeError, MemoryError) as e:
        if not out_of_memory(e):
            raise  # a bug: its traceback
        sys.exit(f"{prog}: out of memory ({str(e).splitlines()[0][:120]}); try a smaller batch "
                 f"(--bs where the script has it) or a smaller input" if speaks else 1)
    except BrokenPipeError:  # `evaluate.py ... | head` closed the pipe: stop quietly, as Unix tools do
        # Python's own flush at exit would fail on the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
