# Docs: docs/pix2pix.md | Paper: Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks", https://arxiv.org/abs/1611.07004
"""pix2pix: a U-Net generator and a conditional PatchGAN discriminator trained on paired images (AB layout).

Paper-to-code map
- Eq. 1, conditional GAN loss L_cGAN(G, D) ....... `discriminator_loss` (D's half, divided by 2 as Section 3.3 says)
- Eq. 3, L1 loss ||y - G(x, z)||_1 ................ `generator_loss` (`l1`)
- Eq. 4, G* = arg min max L_cGAN + lambda L_L1 .... `generator_loss` (non-saturating -log D(x, G(x)), Section 3.3)
- Section 3.1, noise z = dropout only ............. `nn.Dropout(0.5)` in the 3 innermost decoder blocks of `UnetBlock`
- Section 3.2.1 / Fig. 3, U-Net with skips ........ `UnetBlock`, `UnetGenerator` (depth log2(img_size); 8 for 256)
- Section 3.2.2, 70x70 PatchGAN ................... `PatchDiscriminator` (n_layers_d = 3), input and output concatenated
- Section 3.3, test-time dropout and batch stats .. `test_mode` (`--test-dropout`, `--test-batch-stats`)
- Section 3.3 / 4, Adam 2e-4, beta1 0.5, batch 1 .. `Args` defaults; `lr_lambda`: the port's decay (paper: constant)
- Section 6.2 / official aligned_dataset.py ....... `read_ab` (resize to 286), `augment` (random 256 crop, flip)
"""
import contextlib
import datetime
import functools
import hashlib
import itertools
import os
import random
import shutil
import signal
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF
import tyro
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the data order)"""
    torch_deterministic: bool = True
    """if toggled, deterministic kernels only (`torch.use_deterministic_algorithms`); off is faster on CUDA"""
    cuda: bool = True
    """if toggled, cuda will be used when available"""
    data_dir: str = "data"
    """where datasets live (DATA_DIR/facades/{train,val,test}; with --dataset folder: DATA_DIR/{train,val,test})"""
    download: bool = True
    """fetch the dataset if it is missing"""
    epochs: int = 200
    """passes over the training data (total; the last --epochs-decay of them decay the lr linearly to 0)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 1
    """minibatch size (Section 4: 1 for facades; global under torchrun, split across the ranks)"""
    lr: float = 2e-4
    """learning rate of both networks"""
    beta1: float = 0.5
    """Adam beta1"""
    beta2: float = 0.999
    """Adam beta2"""
    log_interval: int = 100
    """log losses every this many generator updates"""
    sample_interval: int = 1000
    """write a sample grid every this many generator updates"""
    checkpoint_interval: int = 5000
    """write checkpoint.pt every this many generator updates"""
    num_eval_samples: int = 10000
    """how many test-split translations the final translations.npz holds (0 = none; capped at the split's size)"""
    resume: Optional[str] = None
    """continue from this checkpoint file, exactly"""
    eval_only: bool = False
    """with --resume: no training, only write the sample grid and translations.npz"""
    compile: bool = False
    """if toggled, `torch.compile` the networks"""
    eval_interval: int = 0
    """every this many generator updates write samples_{iteration:07d}.npz (quality over time; 0 = off)"""

    # Algorithm specific arguments
    dataset: Literal["facades", "maps", "edges2shoes", "edges2handbags", "night2day", "cityscapes",
                     "folder"] = "facades"
    """the paired dataset (official archives), or `folder`: any AB tree at --data-dir"""
    direction: Literal["AtoB", "BtoA"] = "BtoA"
    """AtoB: left half -> right half; BtoA: right -> left (facades: labels -> photo, the paper's direction)"""
    epochs_decay: int = 100
    """of --epochs, how many decay the lr linearly to 0 (PyTorch port's n_epochs_decay; 0 = paper's constant lr)"""
    lambda_l1: float = 100.0
    """lambda, weight of the L1 term (Eq. 4; Section 4 uses 100)"""
    img_size: int = 256
    """crop size fed to the networks, a power of two >= 32 (U-Net depth = log2; images are loaded at 286/256 of it)"""
    ngf: int = 64
    """generator filters in the outermost layer (C64 in Section 6.1.1)"""
    ndf: int = 64
    """discriminator filters in the first layer (C64 in Section 6.1.2)"""
    n_layers_d: int = 3
    """PatchGAN stride-2 layers -> receptive field: 1 = 16, 2 = 34, 3 = 70 (paper default), 4 = 142, 5 = 286 px"""
    test_dropout: bool = True
    """keep dropout on at test time (Section 3.3; the grid and translations.npz are drawn with a seeded RNG)"""
    test_batch_stats: bool = True
    """at test time normalise with the test batch's statistics as in training (Section 3.3; off = running stats)"""
    input_dir: Optional[str] = None
    """with --eval-only: translate every image of this folder (single domain) into RUN_DIR/translated/<name>.png"""
    in_memory_limit_mb: int = 2048
    """a training split up to this size at load size (N x 6 x 286 x 286 bytes) lives on the device; larger streams"""
    num_workers: int = 4
    """DataLoader processes decoding images when the training split streams from disk (official num_threads 4)"""
    mirror: str = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
    """where --download fetches MIRROR/<dataset>.tar.gz (default: the official server; file:///path works)"""


IMG_EXT = (".jpg", ".jpeg", ".png")
EVAL_IMAGES = 50  # the fixed test subset of each --eval-interval file
read_rgb = lambda path: torchvision.io.decode_image(path, mode=torchvision.io.ImageReadMode.RGB)  # (3, H, W) uint8
resize = lambda img, size: TF.resize(img, [size, size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
normalise = lambda x: x.float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1]
# G over uint8 (N, 3, S, S) inputs in chunks (the batch BatchNorm sees at test time) -> float in [-1, 1]
translate = lambda g, x, chunk: torch.cat([g(normalise(x[i:i + chunk])) for i in range(0, len(x), chunk)])


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "img_size", "ngf",
                 "ndf", "n_layers_d"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval", "in_memory_limit_mb", "num_workers"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    for bad, msg in [
        (not 0 <= args.epochs_decay <= args.epochs, f"--epochs-decay must lie in [0, epochs] (is {args.epochs_decay})"),
        (not args.lr > 0, f"--lr must be > 0 (got {args.lr})"),
        (not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1), f"--beta1 and --beta2 must lie in [0, 1) (got "
                                                             f"{args.beta1}, {args.beta2})"),
        (not args.lambda_l1 >= 0, f"--lambda-l1 must be >= 0 (got {args.lambda_l1})"),
        (args.img_size < 32 or args.img_size & (args.img_size - 1),
         f"--img-size must be a power of two >= 32 (the U-Net halves it down to 1x1; got {args.img_size})"),
        (args.img_size < 4 * 2 ** args.n_layers_d,
         f"--n-layers-d {args.n_layers_d} needs --img-size >= {4 * 2 ** args.n_layers_d} (PatchGAN map >= 1x1)"),
        (args.batch_size % world, f"--batch-size {args.batch_size} must be a multiple of the {world} processes"),
        (args.eval_only and args.resume is None, "--eval-only needs --resume PATH (the checkpoint to translate with)"),
        (args.input_dir is not None and not (args.eval_only and list_images(args.input_dir)),
         f"--input-dir {args.input_dir}: needs --eval-only and a folder holding {'/'.join(IMG_EXT)} images"),
    ]:
        if bad:
            fail(msg)


def list_images(folder: str) -> list:
    ok = os.path.isdir(folder)
    return sorted(os.path.join(folder, f) for f in (os.listdir(folder) if ok else []) if f.lower().endswith(IMG_EXT))


def download(url: str, name: str, data_dir: str):
    """Fetch and unpack an archive holding <name>/ into DATA_DIR/<name> atomically: download and extraction happen in a
    temporary folder next to the target, then one rename. A failure leaves nothing, not even a --data-dir it made."""
    created = not os.path.exists(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-download-", dir=data_dir)
    try:
        print(f"downloading {url} into {os.path.join(data_dir, name)}", flush=True)
        urllib.request.urlretrieve(url, os.path.join(tmp, f"{name}.tar.gz"))
        with tarfile.open(os.path.join(tmp, f"{name}.tar.gz")) as tar:
            tar.extractall(tmp, filter="data")
        os.rename(os.path.join(tmp, name), os.path.join(data_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not os.path.exists(os.path.join(data_dir, name)):
            shutil.rmtree(data_dir, ignore_errors=True)


def read_ab(path: str, size: int, direction: str) -> torch.Tensor:
    """One AB image (A | B side by side) -> uint8 (6, size, size): the input's 3 channels, then the target's."""
    ab = read_rgb(path)  # (3, H, 2W)
    a, b = resize(ab[:, :, :ab.shape[2] // 2], size), resize(ab[:, :, ab.shape[2] // 2:2 * (ab.shape[2] // 2)], size)
    return torch.cat([a, b] if direction == "AtoB" else [b, a])


def read_pairs(paths: list, size: int, direction: str) -> torch.Tensor:
    """AB images -> uint8 (N, 6, size, size); also the streaming DataLoader's collate_fn, run in its workers."""
    return torch.stack([read_ab(p, size, direction) for p in paths])


def find_data(args: Args, rank: int = 0):
    """Paths of the train split, of the grid's 8 images (val, else test) and of the eval split (test, else val); the
    test split is never trained on. Under torchrun only rank 0 downloads; the other ranks wait at a barrier."""
    root = args.data_dir if args.dataset == "folder" else os.path.join(args.data_dir, args.dataset)
    how, url = "not found", f"{args.mirror.rstrip('/')}/{args.dataset}.tar.gz"
    fetch = args.download and args.dataset not in ("folder", "cityscapes")
    if fetch and dist.is_initialized():  # made by every rank first; its timeout outlasts a download (NCCL's: 10 min)
        waiting_room = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=24))
    if fetch and rank == 0 and not list_images(os.path.join(root, "train")):
        try:
            download(url, args.dataset, args.data_dir)
        except (OSError, ValueError, tarfile.TarError) as e:
            how = f"download from {url} failed ({type(e).__name__}; offline?)"
    if fetch and dist.is_initialized():
        dist.barrier(waiting_room)
    files = {s: list_images(os.path.join(root, s)) for s in ("train", "val", "test")}
    if not files["train"] or not (files["val"] or files["test"]):
        hint = {"cityscapes": "it cannot be downloaded: see the official datasets/prepare_cityscapes_dataset.py",
                "folder": "put A|B side-by-side images there"}.get(args.dataset, "or run once with --download online")
        fail(f"{args.dataset} {how}: expected AB images (A|B side by side) in {root}/train and {root}/val or "
             f"{root}/test; pass --data-dir pointing at the folder that holds them, {hint}", 1)
    return files["train"], (files["val"] or files["test"])[:8], files["test"] or files["val"]


def quiet_worker(worker_id: int):
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which finishes its iteration and checkpoints."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def epoch_batches(n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
    """This rank's minibatch indices from global step `start` on, without end: epoch e is one permutation seeded by
    (seed, e) (the order depends only on batches consumed: exact resume); rank r takes slice r of each global batch."""
    local, per_epoch = batch_size // world, n // batch_size
    for step in itertools.count(start):
        epoch, i = divmod(step, per_epoch)
        if i == 0 or step == start:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        first = i * batch_size + rank * local
        yield perm[first:first + local].tolist()


def augment(batch: torch.Tensor, size: int) -> torch.Tensor:
    """Random crop and horizontal flip, the same for input and target (official get_params), per image from the global
    RNG on the batch's device (no host sync): uint8 (B, 6, load, load) -> float (B, 6, size, size) in [-1, 1]."""
    b, load, dev = len(batch), batch.shape[-1], batch.device
    offset = torch.randint(0, load - size + 1, (2, b, 1), device=dev)
    ar = torch.arange(size, device=dev)
    rows, cols = offset[0] + ar, offset[1] + ar  # (B, size)
    cols = torch.where(torch.rand(b, 1, device=dev) < 0.5, cols.flip(1), cols)
    ch, i = torch.arange(batch.shape[1], device=dev), torch.arange(b, device=dev)
    return normalise(batch[i[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None],
                           cols[:, None, None, :]])


class UnetBlock(nn.Module):
    """One U-Net level (official UnetSkipConnectionBlock): x -> [down -> inner levels -> up], concatenated with x."""

    def __init__(self, outer_nc: int, inner_nc: int, in_nc: Optional[int] = None, submodule=None,
                 outermost: bool = False, dropout: bool = False):
        super().__init__()
        innermost, self.outermost = submodule is None, outermost
        down = [nn.Conv2d(in_nc or outer_nc, inner_nc, 4, 2, 1, bias=False)]  # bias off before BN (official)
        if not outermost:
            down = [nn.LeakyReLU(0.2), *down] + ([] if innermost else [nn.BatchNorm2d(inner_nc)])
        up = [nn.ReLU(), nn.ConvTranspose2d(inner_nc if innermost else 2 * inner_nc, outer_nc, 4, 2, 1,
                                            bias=outermost)]
        up += [nn.Tanh()] if outermost else [nn.BatchNorm2d(outer_nc)] + ([nn.Dropout(0.5)] if dropout else [])
        self.down, self.inner, self.up = nn.Sequential(*down), submodule or nn.Identity(), nn.Sequential(*up)

    def forward(self, x):
        y = self.up(self.inner(self.down(x)))
        return y if self.outermost else torch.cat([x, y], 1)  # skip connection (Fig. 3)


class UnetGenerator(nn.Module):
    """Encoder C64-C128-C256-C512-C512-..., decoder CD512-CD512-CD512-C512-C256-C128-C64 with skips (Section 6.1.1);
    depth log2(img_size) takes the image down to 1x1. Dropout 0.5 in the first 3 decoder blocks (= innermost 3)."""

    def __init__(self, img_size: int = 256, ngf: int = 64, in_ch: int = 3, out_ch: int = 3):
        super().__init__()
        depth = img_size.bit_length() - 1  # log2
        ch = lambda i: ngf * min(2 ** i, 8)  # inner channels of level i (0 = outermost)
        block = None
        for i in reversed(range(depth)):
            block = UnetBlock(out_ch if i == 0 else ch(i - 1), ch(i), in_ch if i == 0 else None, block, i == 0,
                              dropout=i >= depth - 3)  # paper, Lua code; the PyTorch port: one level further out
        self.model = block

    def forward(self, x):
        return self.model(x)  # (B, 3, S, S) in [-1, 1]


class PatchDiscriminator(nn.Module):
    """C64-C128-C256-C512, a 1-channel conv: logits per 70x70 patch (Section 6.1.2, official NLayerDiscriminator)."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_ch: int = 6):
        super().__init__()
        layers, nf = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2)], ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(nf_prev, nf, 4, 2 if n < n_layers else 1, 1, bias=False), nn.BatchNorm2d(nf),
                       nn.LeakyReLU(0.2)]
        self.model = nn.Sequential(*layers, nn.Conv2d(nf, 1, 4, 1, 1))  # logits: the sigmoid lives in BCEWithLogits

    def forward(self, x):
        return self.model(x)  # (B, 1, S/2^n - 2, S/2^n - 2)


def init_weights(m: nn.Module):
    """N(0, 0.02) for convolutions, N(1, 0.02) for BatchNorm scales, zero biases (Section 6.2, official init)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0 if isinstance(m, nn.BatchNorm2d) else 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def discriminator_loss(real_logits, fake_logits):
    """(1/2) [-log D(x, y) - log(1 - D(x, G(x)))] over all patches (Eq. 1, halved as in Section 3.3)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def generator_loss(fake_logits, fake, target, lambda_l1: float):
    """Eq. 4: -log D(x, G(x)) (non-saturating, Section 3.3) + lambda ||y - G(x)||_1 (Eq. 3); (total, gan, l1)."""
    gan = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    l1 = F.l1_loss(fake, target)
    return gan + lambda_l1 * l1, gan, l1


def lr_lambda(epochs: int, epochs_decay: int):
    """PyTorch port's 'linear' policy (paper, Lua: constant), e from 0: 1 - max(0, e + 1 - n_const) / (n_decay + 1)"""
    return lambda e: 1.0 - max(0, e + 1 - (epochs - epochs_decay)) / (epochs_decay + 1)


@contextlib.contextmanager
def test_mode(g: nn.Module, dropout: bool, batch_stats: bool, seed: int, device):
    """Section 3.3: at test time G runs as in training (dropout on, BatchNorm on the batch's statistics), under
    no_grad, with a seeded RNG fork and restored BatchNorm buffers, so that training and resume are unaffected."""
    saved = {k: v.clone() for k, v in g.named_buffers()}
    g.eval()
    for m in g.modules():
        if isinstance(m, (nn.Dropout, nn.BatchNorm2d)):
            m.train(dropout if isinstance(m, nn.Dropout) else batch_stats)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield
    finally:
        for k, v in g.named_buffers():
            v.copy_(saved[k])
        g.train()


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint onto the CPU whatever wrote it (RNG states must be CPU tensors); unreadable: one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # garbage, a truncated copy, a full disk: torch.load raises many kinds
        fail(f"--resume {path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})")


def load_state(obj, state: dict):
    """load_state_dict; an optimiser keeps this run's `fused` setting (fused Adam on CUDA), not the writer's."""
    if isinstance(obj, torch.optim.Optimizer):
        for saved, group in zip(state["param_groups"], obj.param_groups, strict=True):
            saved["fused"] = group["fused"]
    obj.load_state_dict(state)


def on_uncaught(kind, error, tb):
    """With --torch-deterministic, an op that has no deterministic CUDA kernel ends in one line, not a traceback."""
    if issubclass(kind, RuntimeError) and "deterministic" in str(error):
        print(f"{os.path.basename(__file__)}: error: --torch-deterministic: {str(error).splitlines()[0]}; rerun with "
              "--no-torch-deterministic", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, tb)


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)
    ckpt = load_checkpoint(args.resume) if args.resume else None
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    distributed = world > 1  # launched by torchrun; a plain `python pix2pix.py` never takes a distributed path

    # TRY NOT TO MODIFY: seeding (each rank its own augmentation stream; DDP copies rank 0's initial weights)
    random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    torch.manual_seed(args.seed + rank)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    if args.torch_deterministic:  # cuBLAS needs a fixed workspace for deterministic matmuls (set before CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        sys.excepthook = on_uncaught
    cuda = torch.cuda.is_available() and args.cuda
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if distributed:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    fmt = torch.channels_last if cuda else torch.contiguous_format

    # Data: a small training split lives on the device as one uint8 tensor at load size (no host copy); a larger one
    # streams from disk through one DataLoader for the whole run. Crops and flips happen on the device either way.
    load_size = args.img_size * 286 // 256  # official load_size 286 for crop_size 256
    n_batches = total_iters = 0
    if args.input_dir is None:
        train_files, grid_files, eval_files = find_data(args, rank)
        n_batches = len(train_files) // args.batch_size
        if n_batches == 0:
            fail(f"--batch-size {args.batch_size} exceeds the {len(train_files)} training images")
        total_iters = min(args.epochs * n_batches, args.max_iters or args.epochs * n_batches)
        grid_data = read_pairs(grid_files, args.img_size, args.direction).to(device)
        n_eval = max(args.num_eval_samples, EVAL_IMAGES if args.eval_interval else 0)
        eval_data = read_pairs(eval_files[:n_eval], args.img_size, args.direction) if n_eval else None  # on the host

    generator = UnetGenerator(args.img_size, args.ngf).apply(init_weights).to(device, memory_format=fmt)
    discriminator = PatchDiscriminator(args.ndf, args.n_layers_d).apply(init_weights).to(device, memory_format=fmt)
    optimizer_g, optimizer_d = [torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=cuda) for net in (generator, discriminator)]
    scheduler_g, scheduler_d = [torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(args.epochs, args.epochs_decay))
                                for opt in (optimizer_g, optimizer_d)]  # stepped once per epoch

    state = {"generator": generator, "discriminator": discriminator, "optimizer_g": optimizer_g,
             "optimizer_d": optimizer_d, "scheduler_g": scheduler_g, "scheduler_d": scheduler_d}
    iteration, train_seconds, run_dir = 0, 0.0, None  # generator updates (= minibatches) done, training time so far
    if ckpt is not None:
        try:
            for k, v in state.items():
                load_state(v, ckpt[k])
            iteration, train_seconds = ckpt["iteration"], ckpt.get("train_seconds", 0.0)
            if rank < len(ckpt["rng"]):  # each rank's own torch RNG streams (the only ones drawn from), CPU tensors
                torch.set_rng_state(ckpt["rng"][rank]["torch"])
                if cuda and ckpt["rng"][rank]["cuda"] is not None:
                    torch.cuda.set_rng_state(ckpt["rng"][rank]["cuda"], device)
        except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as e:  # another script's file, no dict
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        run_dir = os.path.dirname(os.path.abspath(args.resume))

    if total_iters and not args.eval_only:  # this rank's minibatches (uint8, load size) from the resumed step on
        sampler = epoch_batches(len(train_files), args.batch_size, args.seed, rank, world, start=iteration)
        if len(train_files) * 6 * load_size ** 2 <= args.in_memory_limit_mb * 2 ** 20:
            data = torch.empty(len(train_files), 6, load_size, load_size, dtype=torch.uint8, device=device)
            for i, path in enumerate(train_files):
                data[i] = read_ab(path, load_size, args.direction)  # (6, load, load): input | target channels
            batches = (data[torch.tensor(idx).to(device, non_blocking=True)] for idx in sampler)
        else:  # workers decode whole batches; the generator keeps the loader's seed draw off the global RNG
            batches = iter(torch.utils.data.DataLoader(
                train_files, batch_sampler=sampler, num_workers=args.num_workers, pin_memory=cuda,
                collate_fn=functools.partial(read_pairs, size=load_size, direction=args.direction),
                persistent_workers=args.num_workers > 0, worker_init_fn=quiet_worker,
                generator=torch.Generator().manual_seed(args.seed)))

    g_train, d_train, d_frozen = generator, discriminator, discriminator
    if distributed:  # gradients averaged over the ranks; D's G-step pass goes through the plain module (frozen)
        g_train, d_train = DDP(generator), DDP(discriminator)  # each on this rank's one device
    if args.compile:
        g_train, d_train, d_frozen = torch.compile(g_train), torch.compile(d_train), torch.compile(d_frozen)

    # TRY NOT TO MODIFY: run folder and logging, rank 0 only (a resumed run keeps writing into its own folder)
    run_dir = run_dir or f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if rank == 0:
        os.makedirs(f"{run_dir}/samples", exist_ok=True)
        writer = SummaryWriter(run_dir)
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                              asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"
    chunk = args.batch_size // world if args.test_batch_stats else 32  # test-time batch: the per-rank training batch

    def save_checkpoint():
        rngs = [{"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if cuda else None}] * world
        if distributed:  # every rank's own streams
            dist.all_gather_object(rngs, rngs[rank])
        if rank == 0:
            torch.save({**{k: v.state_dict() for k, v in state.items()}, "iteration": iteration, "step": iteration,
                        "epoch": iteration // n_batches, "args": asdict(args), "rng": rngs,
                        "train_seconds": train_seconds + time.time() - start_time - eval_seconds}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)  # atomic

    def write_samples():
        """Rows input | output | target of the fixed grid batch (val split, else test), G in test mode."""
        with test_mode(generator, args.test_dropout, args.test_batch_stats, args.seed, device):
            out = translate(generator, grid_data[:, :3], chunk)
        grid = torchvision.utils.make_grid(torch.cat([normalise(grid_data[:, :3]), out, normalise(grid_data[:, 3:])]),
                                           nrow=len(grid_data), normalize=True, value_range=(-1, 1))
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    def write_translations(path: str, pairs: torch.Tensor, **extra):
        """inputs, outputs, targets (uint8) of eval-split pairs in test mode (RNG fork seeded seed + 1), atomically."""
        with test_mode(generator, args.test_dropout, args.test_batch_stats, args.seed + 1, device):
            outputs = translate(generator, pairs[:, :3].to(device), chunk)
        outputs = ((outputs + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        with open(path + ".tmp", "wb") as f:
            np.savez_compressed(f, inputs=pairs[:, :3].numpy(), outputs=outputs, targets=pairs[:, 3:].numpy(), **extra)
        os.replace(path + ".tmp", path)

    stop_signal = None

    def on_stop_signal(signum, frame):
        global stop_signal
        stop_signal = signum

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM (preemption, docker stop):
    signal.signal(signal.SIGTERM, on_stop_signal)  # finish the iteration, write a checkpoint, exit 128 + signal

    # ALGO LOGIC: Eq. 4, alternating one D step and one G step per minibatch (Section 3.3)
    if rank == 0:
        print(f"pix2pix.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds, stop = time.time(), iteration, 0.0, None
    while iteration < total_iters and not args.eval_only and not stop:
        real_ab = augment(next(batches).to(device, non_blocking=True), args.img_size).contiguous(memory_format=fmt)
        real_a, real_b = real_ab[:, :3], real_ab[:, 3:]  # input x, target y in [-1, 1]
        fake_b = g_train(real_a)  # G(x); the noise z is the dropout inside G (Section 3.1)

        # (1) Update D: minimise (1/2)[-log D(x, y) - log(1 - D(x, G(x)))] (Eq. 1); G(x) detached
        fake_logits = d_train(torch.cat([real_a, fake_b.detach()], 1))
        real_logits = d_train(real_ab)
        d_loss = discriminator_loss(real_logits, fake_logits)
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # (2) Update G: minimise -log D(x, G(x)) + lambda ||y - G(x)||_1 (Eq. 4) through the updated, frozen D
        discriminator.requires_grad_(False)
        g_loss, g_gan, l1_loss = generator_loss(d_frozen(torch.cat([real_a, fake_b], 1)), fake_b, real_b,
                                                args.lambda_l1)
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()
        discriminator.requires_grad_(True)
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        stopping = stop_signal  # read once: a signal that lands after this line stops a later iteration
        stop = None if distributed else stopping  # under torchrun the ranks agree on stopping at log points
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stop
        if iteration % args.log_interval == 0 or at_checkpoint:
            stats = torch.stack([d_loss, g_loss, g_gan, l1_loss, torch.sigmoid(real_logits).mean(),
                                 torch.sigmoid(fake_logits).mean()]).detach()
            if distributed:  # mean over ranks, and the signal any rank got, so that every rank decides the same
                sig = torch.tensor(stopping or 0, device=device)
                dist.all_reduce(stats)
                dist.all_reduce(sig, op=dist.ReduceOp.MAX)
                stats, stop = stats / world, int(sig) or None
                at_checkpoint = at_checkpoint or stop
            d_l, g_l, g_g, l1_l, d_real, d_fake = stats.tolist()
            losses = {"d_loss": d_l, "g_loss": g_l, "g_gan": g_g, "l1_loss": l1_l}
            if not all(np.isfinite(v) for v in losses.values()):
                last = ckpt_path if os.path.exists(ckpt_path) else "not written yet"
                fail(f"non-finite loss at iteration {iteration} ({losses}); the last good checkpoint is {last}", 1)
            its = (iteration - start_iter) / (time.time() - start_time)
            if rank == 0:
                for k, v in {**{f"losses/{k}": v for k, v in losses.items()}, "charts/d_real": d_real,
                             "charts/d_fake": d_fake, "charts/SPS": its * args.batch_size,
                             "charts/learning_rate": optimizer_g.param_groups[0]["lr"]}.items():
                    writer.add_scalar(k, v, iteration)
                print(f"iter {iteration}/{total_iters} | epoch {iteration // n_batches} | d_loss {d_l:.4f} | g_loss "
                      f"{g_l:.4f} | l1 {l1_l:.4f} | {its:.2f} it/s | ETA {(total_iters - iteration) / its:.0f}s",
                      flush=True)
        if iteration % args.sample_interval == 0 and rank == 0:
            write_samples()
        if args.eval_interval and iteration % args.eval_interval == 0 and rank == 0:  # quality over time
            if cuda:
                torch.cuda.synchronize(device)  # the training seconds exclude the time spent here
            t0 = time.time()
            write_translations(f"{run_dir}/samples_{iteration:07d}.npz", eval_data[:EVAL_IMAGES], iteration=iteration,
                               train_seconds=train_seconds + t0 - start_time - eval_seconds)
            eval_seconds += time.time() - t0
        if iteration % n_batches == 0:  # lr stepped at each epoch's end (the port's update_learning_rate), after the
            scheduler_g.step()  # logs of the epoch's last iteration, which show the rate it trained with
            scheduler_d.step()
        if at_checkpoint:
            save_checkpoint()
    batches = None  # ends the DataLoader's workers

    if distributed:  # every rank ends (or stops) with the same weights: each prints a checksum that tests compare
        digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in generator.parameters()))
        print(f"rank {rank}: iteration {iteration}, generator sha256 {digest.hexdigest()}", flush=True)
        dist.destroy_process_group()
    if stop:
        if rank == 0:
            print(f"stopped by {signal.Signals(stop).name}: checkpoint written to {ckpt_path}", file=sys.stderr)
        sys.exit(128 + stop)
    if rank != 0:
        sys.exit(0)

    if args.input_dir is not None:  # translate a folder of single-domain images of any size
        os.makedirs(f"{run_dir}/translated", exist_ok=True)
        with test_mode(generator, args.test_dropout, args.test_batch_stats, args.seed + 1, device):
            for p in list_images(args.input_dir):
                out = generator(normalise(resize(read_rgb(p), args.img_size)[None].to(device)))
                name = os.path.splitext(os.path.basename(p))[0]
                torchvision.utils.save_image(out * 0.5 + 0.5, f"{run_dir}/translated/{name}.png")
    else:  # final artefacts: grid and translations.npz over the test split (val where there is none)
        print(f"writing the final sample grid and translations.npz to {run_dir}", flush=True)
        write_samples()
        if args.num_eval_samples:
            write_translations(f"{run_dir}/translations.npz", eval_data[:args.num_eval_samples])
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
