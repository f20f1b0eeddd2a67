"""Output files: written whole or not at all, checked before the work, never over an input.

Every file the project writes goes through `atomic_write`: the content goes to a temporary name beside the
target, is closed and flushed to the disk, and only then renamed over the target. A full disk, a read-only
folder or a crash mid-write therefore leaves the previous good file (or none), never a truncated one under
the real name.
"""
import errno
import json
import os
import shutil

import cli


class OutputError(cli.UserError):
    """An output the user named cannot be written; the message names it and says why, in one line."""


def atomic_write(path, content):
    """Writes `content` (str, bytes, or a function write(tmp_path) such as fig.savefig or torch.save) to
    `path`. The temporary file keeps the extension, so savefig and Pillow pick the right format from the
    name."""
    path = str(path)
    tmp = temporary_name(path)
    try:
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        with open(tmp, "rb+") as f:  # what the writer buffered reaches the disk here, or fails here
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write it ({reason(e, path)})") from None
    except RuntimeError as e:  # torch.save reports a failed write as RuntimeError ("unexpected pos ...")
        if "writ" not in str(e) and "pos" not in str(e):
            raise  # not a write failure: a bug, shown with its traceback
        raise OutputError(f"{path}: cannot write it ({reason(e, path)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def temporary_name(path):
    """Where `path` is written before the rename: beside it, with its extensions kept (x.tmp123.csv.gz), so
    writers that choose the format or compression by the name (savefig, pandas, OpenCV) still do."""
    folder, name = os.path.split(str(path))
    stem, dot, extensions = name.partition(".") if not name.startswith(".") else (name, "", "")
    return os.path.join(folder, f"{stem}.tmp{os.getpid()}{dot}{extensions}")


def reason(e, path):
    """The cause of a failed write, in a few words."""
    folder = os.path.dirname(os.path.abspath(path))
    if getattr(e, "strerror", None):
        return e.strerror
    if os.path.isdir(folder) and shutil.disk_usage(folder).free < 2 ** 20:  # torch.save's error says less
        return os.strerror(errno.ENOSPC)
    return str(e).splitlines()[0][:100]


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def check_writable(path, folder=False, inputs=()):
    """Before any long work: `path` (a file to write, or with folder=True a folder to write into) can be
    written, and is none of `inputs` (no output ever replaces a file it was made from). Missing parent
    folders are made. Tries a real file rather than os.access, which says yes to root everywhere."""
    path = str(path)
    for given in map(str, inputs):
        if os.path.exists(path) and os.path.exists(given) and os.path.samefile(path, given):
            raise OutputError(f"{path}: is also an input ({given}); choose another output name")
        if os.path.isdir(given) and inside(path, given):
            raise OutputError(f"{path}: is inside the data folder {given}, where what is written would be "
                              f"read as faces next time; write it elsewhere")
    target = os.path.abspath(path if folder else os.path.dirname(os.path.abspath(path)))
    if not folder and os.path.isdir(path):
        raise OutputError(f"{path}: is a folder; give a file name")
    existing = target
    while not os.path.exists(existing):  # the nearest part of the path that exists must be a folder
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"{path}: {existing} is a file, not a folder")
    try:
        os.makedirs(target, exist_ok=True)
        probe = os.path.join(target, f".write-test{os.getpid()}")
        with open(probe, "w") as f:
            f.write("x")
        os.remove(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write {'into it' if folder else 'it'} "
                          f"({e.strerror or errno.errorcode.get(e.errno, e)})") from None


def same_place(a, b):
    """Whether two paths (which need not exist yet) name one file."""
    return os.path.realpath(a) == os.path.realpath(b)


def inside(path, folder):
    """Whether `path` (which need not exist yet) lies within `folder`, however either is spelt."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def unique_names(paths, suffix):
    """Output names for inputs written into one folder: `<stem><suffix>`; `<name.ext><suffix>` where two
    inputs share a stem (1.jpg and 1.png), and a counter on top where they share a name (a/1.jpg and
    b/1.jpg), so no output replaces another."""
    stems = [os.path.splitext(os.path.basename(str(p)))[0] for p in paths]
    names = [(os.path.basename(str(p)) if stems.count(s) > 1 else s) for p, s in zip(paths, stems)]
    out, seen = [], {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name + (f"_{seen[name]}" if names.count(name) > 1 else "") + suffix)
    return out
