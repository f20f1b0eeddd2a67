"""Trained networks in use: batched prediction with TTA and ensembles, and a teacher's probabilities for
distillation. The weights files they come from are checkpoint.py's."""
import sys

import torch
import torch.nn.functional as F

import augment
import checkpoint
import cli
import data

# ------------------------------------------------------------------------------------------------------------
# Batched prediction, with TTA and ensembles

def load_nets(paths, device):
    """Weights files -> networks in eval mode, channels_last (the fast layout for these convolutions)."""
    return [checkpoint.load_weights(p, device)[0].to(memory_format=torch.channels_last) for p in paths]


def predict_proba(nets, images, device, tta=False, batch_size=512, autocast=False, progress=False):
    """Class probabilities [N, 7] in data.CLASSES order for uint8 images [N, 48, 48], averaged over the
    networks (an ensemble) and, with tta, over augment.tta_views' ten views, each network's resampled as it
    trained (its weights file says how; bilinear where it does not: the runs before the choice were). Batched on the device; one copy back per batch. `autocast`: bf16 on the
    CPU (AMX) or CUDA, about twice as fast, for live video. `progress`: a bar (TTA over a data set takes
    minutes on a CPU)."""
    from tqdm import tqdm
    device = torch.device(device)
    interpolations = [net.trained["interpolation"] for net in nets]
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for x in tqdm(data.batches(images, batch_size, device), total=-(-len(images) // batch_size),
                      leave=False, disable=not progress or None, desc="predicting", dynamic_ncols=True,
                      file=sys.stdout):
            views = {i: list(augment.tta_views(x, i)) if tta else [x] for i in set(interpolations)}
            probs = [F.softmax(net(v).float(), 1) for net, i in zip(nets, interpolations) for v in views[i]]
            out.append((sum(probs) / len(probs)).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(data.CLASSES))


# ------------------------------------------------------------------------------------------------------------
# A teacher's probabilities for distillation (tools/teacher.py writes them, train.py --teacher reads them):
# {"weights": [...], "tta": bool, "train": {"id": fingerprint, "probs": fp16 [N, 7]}, "val": {...}}

def teacher_file(nets, splits, device, tta, names):
    """Each training and validation face's probabilities under `nets` (averaged, with TTA if asked), with each
    split's fingerprint, so the file is refused for other faces. In bf16 where the device computes it natively:
    soft targets need no more, and three networks x ten views x 32k faces take 20 minutes on 2 CPU cores so,
    40 in fp32 (measured on batches of 128; batches of 512 ran several times slower there)."""
    blob = {"weights": names, "tta": tta}
    bf16 = cli.fast_amp(torch.device(device)) == "bf16"
    for split in ("train", "val"):
        images, labels = splits[split]
        probs = predict_proba(nets, images, device, tta, batch_size=128, autocast=bf16, progress=True)
        blob[split] = {"id": data.fingerprint(images, labels), "probs": probs.half()}
    return blob


def teacher_probabilities(path, splits, parts):
    """The probabilities a teacher file holds for the faces of `parts` (train, or train and val), in that
    order; refused in one line if the file holds them for other faces."""
    blob = checkpoint.read_file(path)
    if not isinstance(blob, dict) or any(not isinstance(blob.get(s), dict) for s in parts):
        raise data.DataError(f"{path}: not a teacher file of tools/teacher.py")
    for s in parts:
        if blob[s].get("id") != data.fingerprint(*splits[s]):
            raise data.DataError(f"{path}: the teacher's probabilities are for other {s} faces than --data "
                                 f"gives; make them with tools/teacher.py --data on this data")
    return torch.cat([blob[s]["probs"] for s in parts])

