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
- Section 3.3 / 4, Adam 2e-4, beta1 0.5, batch 1 .. `Args` defaults; `lr_lambda`: the port's decay (Lua: constant)
- Tables 1-3, the ablations ...................... `--objective`, `--generator`, `--netd` with `--n-layers-d`
- Section 6.2 / official aligned_dataset.py ....... `read_ab` (resize to 286), `augment` (random 256 crop, flip)
"""
import atexit
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import itertools
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF
import tyro
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
    track: bool = False
    """if toggled, also log to Weights and Biases (sync_tensorboard; needs `pip install -r requirements-track.txt`)"""
    wandb_project_name: str = "cleangan"
    """the Weights and Biases project"""
    wandb_entity: Optional[str] = None
    """the Weights and Biases entity (team); None: your default"""

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
    objective: Literal["l1", "gan", "cgan", "l1+gan", "l1+cgan"] = "l1+cgan"
    """Table 1: the terms of Eq. 4; gan: D sees only the output (Eq. 2), cgan: input and output (Eq. 1); l1: no D"""
    generator: Literal["unet", "encoder-decoder"] = "unet"
    """Table 2 / Section 4.3: the U-Net, or the encoder-decoder made by severing its skip connections"""
    netd: Literal["patch", "pixel"] = "patch"
    """Table 3 / Section 4.4: patch: PatchGAN of --n-layers-d; pixel: 1x1 PixelGAN (official --netD pixel)"""
    n_layers_d: int = 3
    """PatchGAN stride-2 layers -> receptive field (Table 3): 1 = 16, 2 = 34, 3 = 70 (paper), 4 = 142, 5 = 286 px"""
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


EVAL_IMAGES = 50  # the fixed test subset of each --eval-interval file


def translate(g: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """G over uint8 (N, 3, S, S) inputs in chunks (the batch BatchNorm sees at test time) -> float in [-1, 1]."""
    return torch.cat([g(normalise(x[i:i + chunk])) for i in range(0, len(x), chunk)])


def check_args(args: Args):
    check_common(args, positive=["img_size", "ngf", "ndf", "n_layers_d"],
                 non_negative=["in_memory_limit_mb", "num_workers"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= args.epochs_decay <= args.epochs:
        fail(f"--epochs-decay must lie in [0, epochs] (is {args.epochs_decay})")
    if not args.lambda_l1 >= 0:
        fail(f"--lambda-l1 must be >= 0 (got {args.lambda_l1})")
    if args.img_size < 32 or args.img_size & (args.img_size - 1):
        fail(f"--img-size must be a power of two >= 32 (the U-Net halves it down to 1x1; got {args.img_size})")
    if args.objective == "l1" and not args.lambda_l1 > 0:
        fail(f"--objective l1 needs --lambda-l1 > 0 (the L1 term alone trains G; got {args.lambda_l1})")
    if args.netd == "patch" and args.img_size < 4 * 2 ** args.n_layers_d:
        fail(f"--n-layers-d {args.n_layers_d} needs --img-size >= {4 * 2 ** args.n_layers_d} (PatchGAN map >= 1x1)")
    if args.batch_size % world:
        fail(f"--batch-size {args.batch_size} must be a multiple of the {world} processes")
    if args.input_dir is not None and not (args.eval_only and list_images(args.input_dir)):
        fail(f"--input-dir {args.input_dir}: needs --eval-only and a folder holding {'/'.join(IMG_EXT)} images")


def read_ab(path: str, size: int, direction: str) -> torch.Tensor:
    """One AB image (A | B side by side) -> uint8 (6, size, size): the input's 3 channels, then the target's."""
    a, b = halves(decode_rgb(path))  # (3, H, 2W) -> two (3, H, W)
    if direction == "BtoA":
        a, b = b, a
    return torch.cat([resize(a, size), resize(b, size)])


def read_pairs(paths: list, size: int, direction: str) -> torch.Tensor:
    """AB images -> uint8 (N, 6, size, size); also the streaming DataLoader's collate_fn, run in its workers."""
    return torch.stack([read_ab(p, size, direction) for p in paths])


def find_data(args: Args):
    """Paths of the train split, of the grid's 8 images (val, else test) and of the eval split (test, else val); the
    test split is never trained on. Downloads a missing dataset (under torchrun rank 0 does, the others wait)."""
    root = args.data_dir if args.dataset == "folder" else os.path.join(args.data_dir, args.dataset)
    how, url = "not found", f"{args.mirror.rstrip('/')}/{args.dataset}.tar.gz"
    fetch = args.download and args.dataset not in ("folder", "cityscapes")
    if fetch and not list_images(os.path.join(root, "train")):
        how = download(url, args.dataset, root) or how
    files = {s: list_images(os.path.join(root, s)) for s in ("train", "val", "test")}
    if not files["train"] or not (files["val"] or files["test"]):
        hint = {"cityscapes": "it cannot be downloaded: see the official datasets/prepare_cityscapes_dataset.py",
                "folder": "put A|B side-by-side images there"}.get(args.dataset, "or run once with --download online")
        fail(f"{args.dataset} {how}: expected AB images (A|B side by side) in {root}/train and {root}/val or "
             f"{root}/test; pass --data-dir pointing at the folder that holds them, {hint}", 1)
    return files["train"], (files["val"] or files["test"])[:8], files["test"] or files["val"]


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
    """One U-Net level (official UnetSkipConnectionBlock): x -> [down -> inner levels -> up], concatenated with x
    (skip=False: not concatenated, the encoder-decoder of Section 4.3)."""

    def __init__(self, outer_nc: int, inner_nc: int, in_nc: Optional[int] = None, submodule=None,
                 outermost: bool = False, dropout: bool = False, skip: bool = True):
        super().__init__()
        innermost = submodule is None
        self.skip = skip and not outermost
        down = [nn.Conv2d(in_nc or outer_nc, inner_nc, 4, 2, 1, bias=False)]  # bias off before BN (official)
        if not outermost:
            down.insert(0, nn.LeakyReLU(0.2))
        if not outermost and not innermost:
            down.append(nn.BatchNorm2d(inner_nc))
        up_in = 2 * inner_nc if skip and not innermost else inner_nc  # the inner level's output and its skip
        up = [nn.ReLU(), nn.ConvTranspose2d(up_in, outer_nc, 4, 2, 1, bias=outermost)]
        if outermost:
            up.append(nn.Tanh())
        else:
            up.append(nn.BatchNorm2d(outer_nc))
            if dropout:
                up.append(nn.Dropout(0.5))
        self.down = nn.Sequential(*down)
        self.inner = submodule or nn.Identity()
        self.up = nn.Sequential(*up)

    def forward(self, x):
        y = self.up(self.inner(self.down(x)))
        return torch.cat([x, y], 1) if self.skip else y  # skip connection (Fig. 3)


class UnetGenerator(nn.Module):
    """Encoder C64-C128-C256-C512-C512-..., decoder CD512-CD512-CD512-C512-C256-C128-C64 with skips (Section 6.1.1);
    depth log2(img_size) takes the image down to 1x1. Dropout 0.5 in the first 3 decoder blocks (= innermost 3).
    skips=False: Table 2's encoder-decoder, the same layers with the skip connections severed (Section 4.3)."""

    def __init__(self, img_size: int = 256, ngf: int = 64, in_ch: int = 3, out_ch: int = 3, skips: bool = True):
        super().__init__()
        depth = img_size.bit_length() - 1  # log2

        def ch(i: int) -> int:  # inner channels of level i (0 = outermost)
            return ngf * min(2 ** i, 8)

        block = None
        for i in reversed(range(depth)):
            block = UnetBlock(out_ch if i == 0 else ch(i - 1), ch(i), in_ch if i == 0 else None, block, i == 0,
                              dropout=i >= depth - 3, skip=skips)  # paper, Lua; the PyTorch port: one level out
        self.model = block

    def forward(self, x):
        return self.model(x)  # (B, 3, S, S) in [-1, 1]


class PatchDiscriminator(nn.Module):
    """C64-C128-C256-C512, a 1-channel conv: logits per 70x70 patch (Section 6.1.2, official NLayerDiscriminator).
    pixel=True: Table 3's 1x1 PixelGAN, C64-C128 of 1x1 convolutions, a last conv without bias (official
    PixelDiscriminator); in_ch 3: the unconditional D of Eq. 2."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_ch: int = 6, pixel: bool = False):
        super().__init__()
        kernel, stride, pad = (1, 1, 0) if pixel else (4, 2, 1)
        n_layers = 1 if pixel else n_layers
        layers, nf = [nn.Conv2d(in_ch, ndf, kernel, stride, pad), nn.LeakyReLU(0.2)], ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(nf_prev, nf, kernel, stride if n < n_layers else 1, pad, bias=False),
                       nn.BatchNorm2d(nf), nn.LeakyReLU(0.2)]
        self.model = nn.Sequential(*layers, nn.Conv2d(nf, 1, kernel, 1, pad, bias=not pixel))  # logits (BCEWithLogits)

    def forward(self, x):
        return self.model(x)  # (B, 1, S/2^n - 2, S/2^n - 2); PixelGAN: (B, 1, S, S)


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
    """Eq. 4: -log D(x, G(x)) (non-saturating, Section 3.3) + lambda ||y - G(x)||_1 (Eq. 3); (total, gan, l1).
    fake_logits None: no adversarial term (Table 1's L1 row), gan = 0."""
    l1 = F.l1_loss(fake, target)
    if fake_logits is None:
        return lambda_l1 * l1, torch.zeros_like(l1), l1
    gan = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
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


def train(args: Args):
    check_args(args)
    run = Run(args)  # the common block below: seeding, device, and on --resume the checkpoint's model args
    args, device = run.args, run.device
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # Data: a small training split lives on the device as one uint8 tensor at load size (no host copy); a larger one
    # streams from disk through one DataLoader for the whole run. Crops and flips happen on the device either way.
    # --eval-only reads no training images (the grid and translations.npz need the val and test splits only), and
    # --eval-only --input-dir needs no dataset at all.
    load_size = args.img_size * 286 // 256  # official load_size 286 for crop_size 256
    data, n_batches, total_iters = None, 1, 0
    if args.input_dir is None:
        train_files, grid_files, eval_files = run.rank0_first(find_data, args)
        n_batches = len(train_files) // args.batch_size
        if n_batches == 0:
            fail(f"--batch-size {args.batch_size} exceeds the {len(train_files)} training images")
        total_iters = min(args.epochs * n_batches, args.max_iters or args.epochs * n_batches)
        grid_data = read_pairs(grid_files, args.img_size, args.direction).to(device)
        n_eval = max(args.num_eval_samples, EVAL_IMAGES if args.eval_interval else 0)
        eval_data = read_pairs(eval_files[:n_eval], args.img_size, args.direction) if n_eval else None  # on the host
        in_memory = len(train_files) * 6 * load_size ** 2 <= args.in_memory_limit_mb * 2 ** 20
        if not args.eval_only and in_memory:
            data = torch.empty(len(train_files), 6, load_size, load_size, dtype=torch.uint8, device=device)
            for i, path in enumerate(train_files):
                data[i] = read_ab(path, load_size, args.direction)  # (6, load, load): input | target channels
        elif not args.eval_only:  # streamed: the Dataset is the file list, the workers decode whole batches
            data = train_files

    terms = set(args.objective.split("+"))  # Table 1: which terms of Eq. 4 are on
    adversarial, conditional = terms != {"l1"}, "cgan" in terms
    lambda_l1 = args.lambda_l1 if "l1" in terms else 0.0  # GAN and cGAN alone: lambda = 0 in Eq. 4 (Section 4.2)
    generator = UnetGenerator(args.img_size, args.ngf, skips=args.generator == "unet")
    generator = generator.apply(init_weights).to(device, memory_format=fmt)
    discriminator = PatchDiscriminator(args.ndf, args.n_layers_d, 6 if conditional else 3, args.netd == "pixel")
    discriminator = discriminator.apply(init_weights).to(device, memory_format=fmt)  # built (and saved) even for l1
    optimizer_g, optimizer_d = [torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=device.type == "cuda") for net in (generator, discriminator)]
    scheduler_g, scheduler_d = [torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(args.epochs, args.epochs_decay))
                                for opt in (optimizer_g, optimizer_d)]  # stepped once per epoch
    run.restore({"generator": generator, "discriminator": discriminator, "optimizer_g": optimizer_g,
                 "optimizer_d": optimizer_d, "scheduler_g": scheduler_g, "scheduler_d": scheduler_d})
    g_train, d_train = run.prepare(generator), run.prepare(discriminator)
    d_frozen = run.prepare(discriminator, ddp=False)  # D's pass in the G step: the plain module, no gradient sync
    chunk = args.batch_size // run.world if args.test_batch_stats else 32  # test-time batch: the per-rank batch

    def grid() -> torch.Tensor:
        """Rows input | output | target of the fixed grid batch (val split, else test), G in test mode."""
        with test_mode(generator, args.test_dropout, args.test_batch_stats, args.seed, device):
            out = translate(generator, grid_data[:, :3], chunk)
        return torchvision.utils.make_grid(torch.cat([normalise(grid_data[:, :3]), out, normalise(grid_data[:, 3:])]),
                                           nrow=len(grid_data), normalize=True, value_range=(-1, 1))

    def samples(n: int, final: bool) -> dict:
        """inputs, outputs, targets (uint8) of the first n eval-split pairs in test mode (RNG fork seeded seed + 1)."""
        pairs = eval_data[:n]
        with test_mode(generator, args.test_dropout, args.test_batch_stats, args.seed + 1, device):
            outputs = translate(generator, pairs[:, :3].to(device), chunk)
        return {"inputs": pairs[:, :3], "outputs": to_uint8(outputs), "targets": pairs[:, 3:]}

    run.open(args.dataset, grid, samples, artefact="translations.npz", eval_size=EVAL_IMAGES)
    collate = functools.partial(read_pairs, size=load_size, direction=args.direction)
    batches = run.batches(data, args.batch_size, collate, args.num_workers)  # uint8 (B, 6, load, load)

    # ALGO LOGIC: Eq. 4, alternating one D step and one G step per minibatch (Section 3.3)
    for iteration in run.loop(total_iters, n_batches):
        real_ab = augment(next(batches), args.img_size).contiguous(memory_format=fmt)
        real_a, real_b = real_ab[:, :3], real_ab[:, 3:]  # input x, target y in [-1, 1]
        fake_b = g_train(real_a)  # G(x); the noise z is the dropout inside G (Section 3.1)
        real_in, fake_in = (real_ab, torch.cat([real_a, fake_b], 1)) if conditional else (real_b, fake_b)  # D's input

        # (1) Update D: minimise (1/2)[-log D(x, y) - log(1 - D(x, G(x)))] (Eq. 1; Eq. 2 drops x); G(x) detached.
        # Table 1's L1 row has no D step, and D's tags log 0 (the official code prints Err_D 0 without the GAN term)
        d_loss, d_real, d_fake = 0.0, 0.0, 0.0
        if adversarial:
            fake_logits = d_train(fake_in.detach())
            real_logits = d_train(real_in)
            d_loss = discriminator_loss(real_logits, fake_logits)
            optimizer_d.zero_grad(set_to_none=True)
            d_loss.backward()
            optimizer_d.step()
            d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()

        # (2) Update G: minimise -log D(x, G(x)) + lambda ||y - G(x)||_1 (Eq. 4) through the updated, frozen D
        discriminator.requires_grad_(False)
        g_loss, g_gan, l1_loss = generator_loss(d_frozen(fake_in) if adversarial else None, fake_b, real_b, lambda_l1)
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()
        discriminator.requires_grad_(True)

        run.log(iteration, {"losses/d_loss": d_loss, "losses/g_loss": g_loss, "losses/g_gan": g_gan,
                            "losses/l1_loss": l1_loss, "charts/d_real": d_real, "charts/d_fake": d_fake,
                            "charts/learning_rate": optimizer_g.param_groups[0]["lr"]})
        if iteration % n_batches == 0:  # lr stepped at each epoch's end (the port's update_learning_rate), after the
            scheduler_g.step()  # logs of the epoch's last iteration, which show the rate it trained with
            if adversarial:  # Table 1's L1 row never steps D's optimiser
                scheduler_d.step()

    if args.input_dir is None:
        run.finish()  # the final grid and translations.npz over the test split (val where there is none)
    elif run.rank == 0:  # --eval-only --input-dir: translate a folder of single-domain images of any size
        os.makedirs(f"{run.dir}/translated", exist_ok=True)
        with test_mode(generator, args.test_dropout, args.test_batch_stats, args.seed + 1, device):
            for p in list_images(args.input_dir):
                out = generator(normalise(resize(decode_rgb(p), args.img_size)[None].to(device)))
                name = os.path.splitext(os.path.basename(p))[0]
                torchvision.utils.save_image(out * 0.5 + 0.5, f"{run.dir}/translated/{name}.png")
        run.writer.close()
        print(f"done: translations in {run.dir}/translated")


# ===== CleanGAN image-to-image data block: the same text in pix2pix.py and cyclegan.py, TRY NOT TO MODIFY =====
IMG_EXT = (".jpg", ".jpeg", ".png")


def list_images(folder: str) -> list:
    """Sorted paths of the image files in `folder` (none if it does not exist)."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMG_EXT))


def decode_rgb(path: str) -> torch.Tensor:
    """An image file -> uint8 (3, H, W)."""
    return torchvision.io.decode_image(path, mode=torchvision.io.ImageReadMode.RGB)


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (..., size, size), antialiased bicubic (the official code's PIL Image.BICUBIC)."""
    return TF.resize(img, [size, size], TF.InterpolationMode.BICUBIC, antialias=True)


def halves(ab: torch.Tensor) -> tuple:
    """An A|B pair side by side -> (A, B): the left and right halves, of equal width (an odd last column dropped)."""
    width = ab.shape[-1] // 2
    return ab[..., :width], ab[..., width:2 * width]


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def download(url: str, top: str, target: str) -> Optional[str]:
    """Fetch the archive at `url` (.tar.gz or .zip; a stalled mirror times out after 60 s) and unpack its top folder
    `top` to `target`: in a temporary folder next to it, then one rename. Returns None, or what failed; a failure
    leaves nothing behind, not even a --data-dir it made."""
    data_dir = os.path.dirname(target)
    created = not os.path.exists(data_dir)
    try:
        os.makedirs(data_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{os.path.basename(target)}.download-", dir=data_dir) as tmp:
            archive = os.path.join(tmp, os.path.basename(url))
            print(f"downloading {url} into {target}", flush=True)
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as f:
                shutil.copyfileobj(response, f)
            safe = {} if archive.endswith(".zip") else {"filter": "data"}  # tar: no absolute paths or links out of tmp
            shutil.unpack_archive(archive, tmp, **safe)  # .zip (members with "/" or ".." are skipped) or .tar.gz
            os.rename(os.path.join(tmp, top), target)
    except Exception as e:  # the network, the disk, a broken archive: leave nothing behind (tmp is gone already)
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        return f"download from {url} failed ({type(e).__name__}; offline?)"
    return None
# ========================================== end of image-to-image data block ==========================================


# ===================== CleanGAN common block: the same text in every script, TRY NOT TO MODIFY =====================
# Plumbing, not the paper; docs/contract.md explains it once. train() above: run = Run(args); run.restore(state);
# run.open(...); run.batches(...); `for iteration in run.loop(total, n_batches):` the paper's updates, then
# run.log(iteration, {tag: value}); run.finish().
RUN_FLAGS = ("exp_name", "torch_deterministic", "cuda", "data_dir", "download", "epochs", "max_iters", "log_interval",
             "sample_interval", "checkpoint_interval", "num_eval_samples", "resume", "eval_only", "compile",
             "eval_interval", "track", "wandb_project_name", "wandb_entity", "workers", "num_workers",
             "in_memory_limit_mb", "input_dir", "backend")  # the command line's on --resume; see Run.__init__


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_common(args, positive=(), non_negative=()):
    """The common flags' checks, and the script's own integer flags that must be > 0 or >= 0."""
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", *positive]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval", *non_negative]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if not args.lr > 0:
        fail(f"--lr must be > 0 (got {args.lr})")
    if not (0 <= getattr(args, "beta1", 0) < 1 and 0 <= getattr(args, "beta2", 0) < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] on any device -> uint8 [0, 255] on the CPU."""
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def save_atomic(obj, path: str):
    """torch.save (np.savez for .npz) to a temporary file, fsync, rename, fsync the folder: never a truncated file.
    A write that fails (a full disk, a lost mount) ends the run in one line; the file it would replace is unchanged."""
    try:
        with open(path + ".tmp", "wb") as f:
            if path.endswith(".npz"):
                np.savez_compressed(f, **obj)
            else:
                torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError: the OSError in context
        reason = e.__context__ if isinstance(e.__context__, OSError) else e
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")
        fail(f"cannot write {path} ({reason}); the file it would replace is unchanged", 1)
    os.replace(path + ".tmp", path)
    folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    os.fsync(folder)
    os.close(folder)


def index_batches(n: int, batch_size: int, seed: int, start=0, rank=0, world=1, length=0, streams=1, stream=0):
    """Endless index batches from global batch `start` on (so a resumed run continues exactly): epoch e permutes
    `length` (default n) indices seeded by (seed, e, stream), drops its last incomplete batch; rank r takes slice r."""
    length = length or n
    for step in itertools.count(start):
        epoch, i = divmod(step, length // batch_size)
        if i == 0 or step == start:
            g = torch.Generator().manual_seed((seed * 100_003 + epoch) * streams + stream)
            perm = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-length // n))])[:length]
        first = i * batch_size + rank * (batch_size // world)
        yield perm[first:first + batch_size // world]


def quiet_worker(worker_id: int):
    """Workers leave SIGINT/SIGTERM (sent to the whole process group by torchrun, Slurm, docker) to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def load_state(obj, saved):
    """load_state_dict (copy_ for a tensor); an optimiser keeps this run's `fused`, and its states take their
    parameter's layout (fused Adam needs them equal: a contiguous checkpoint resumed into channels_last weights)."""
    if torch.is_tensor(obj):
        obj.copy_(saved)
        return
    if isinstance(obj, torch.optim.Optimizer):
        for group, mine in zip(saved["param_groups"], obj.param_groups, strict=True):
            group["fused"] = mine.get("fused")
    obj.load_state_dict(saved)
    if isinstance(obj, torch.optim.Optimizer):
        for p, state in obj.state.items():
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def on_uncaught(kind, error, tb):
    """With --torch-deterministic, an op that has no deterministic CUDA kernel ends in one line, not a traceback."""
    if issubclass(kind, RuntimeError) and "deterministic" in str(error):
        print(f"{os.path.basename(__file__)}: error: --torch-deterministic: {str(error).splitlines()[0]}; rerun with "
              "--no-torch-deterministic", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, tb)


class Run:
    """One run's plumbing. After --resume, run.args holds the checkpoint's model args."""

    def __init__(self, args):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))  # processes (torchrun's; 1 for `python script.py`)
        self.rank = int(os.environ.get("RANK", "0"))
        self.ckpt = None  # the checkpoint read on --resume
        self.iteration = 0  # generator updates done
        self.step = 0  # minibatches consumed (of the first stream)
        self.seconds = 0.0  # training seconds of the processes before this one (a resumed run)
        self.stop_signal = None  # SIGINT or SIGTERM once received in the training loop
        self.in_loop = False  # outside it (reading data, --eval-only, the final samples) a stop signal ends the run
        if args.resume:
            try:  # onto the CPU whatever device wrote it (RNG states must stay CPU tensors)
                self.ckpt = torch.load(args.resume, map_location="cpu", weights_only=False)
                if not isinstance(self.ckpt, dict):
                    raise TypeError(f"it holds a {type(self.ckpt).__name__}")
                saved = {k: v for k, v in self.ckpt["args"].items() if k not in RUN_FLAGS and hasattr(args, k)}
            except Exception as e:  # garbage, a truncated copy, another program's pickle: torch.load raises many kinds
                fail(f"--resume {args.resume}: not a readable checkpoint ({type(e).__name__}: {e})".splitlines()[0])
            default = type(args)()  # an arg the command line leaves at its default takes the checkpoint's value
            taken = {k: v for k, v in saved.items() if getattr(args, k) == getattr(default, k)}
            notes = [f"{k}={v!r}" for k, v in taken.items() if v != getattr(args, k)] + [
                f"{k}={getattr(args, k)!r} as typed (checkpoint: {v!r})" for k, v in saved.items() if k not in taken]
            if notes and self.rank == 0:
                print("--resume: args from the checkpoint unless typed: " + ", ".join(notes))
            args = dataclasses.replace(args, **taken)
        self.args = args
        self.streams = []  # the batch generators of run.batches, closed by run.close
        self.state = {}  # what checkpoints hold (run.restore names it)
        self.per_rank = {}  # each rank's own part of them
        random.seed(args.seed + self.rank)  # each rank its own streams; DDP copies rank 0's initial weights
        np.random.seed(args.seed + self.rank)
        torch.manual_seed(args.seed + self.rank)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        torch.backends.cudnn.benchmark = not args.torch_deterministic
        if args.torch_deterministic:  # cuBLAS needs a fixed workspace for deterministic matmuls (before CUDA starts)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            sys.excepthook = on_uncaught
        cuda = torch.cuda.is_available() and args.cuda
        self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
        if self.world > 1:  # launched by torchrun; a plain `python script.py` never takes a distributed path
            if cuda:
                torch.cuda.set_device(self.device)
            dist.init_process_group(getattr(args, "backend", None) or ("nccl" if cuda else "gloo"))
        atexit.register(self.close)  # streaming workers ignore SIGTERM: end them before multiprocessing joins them
        signal.signal(signal.SIGINT, self.on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM: finish the iteration,
        signal.signal(signal.SIGTERM, self.on_stop_signal)  # write a checkpoint, exit 128 + signal

    def on_stop_signal(self, signum, frame):
        """In the training loop: finish the iteration, write a checkpoint, exit (run.loop). Outside it nothing new is
        to be saved, and a long data read or --eval-only must not ignore Ctrl-C until it ends: end now."""
        if not self.in_loop:
            print(f"stopped by {signal.Signals(signum).name} outside the training loop", file=sys.stderr)
            sys.exit(128 + signum)
        self.stop_signal = signum

    def rank0_first(self, fn, *fn_args):
        """fn(*fn_args) on rank 0 first (a download), then on the other ranks, which wait for it without a time-out."""
        if self.world > 1:
            waiting_room = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=1))
        if self.rank == 0:
            result = fn(*fn_args)
        if self.world > 1:
            dist.barrier(waiting_room)
        return result if self.rank == 0 else fn(*fn_args)

    def prepare(self, module: nn.Module, ddp: bool = True) -> nn.Module:
        """DDP under torchrun (no buffer broadcast before each forward: it changes BatchNorm statistics that cuDNN's
        backward saved, pytorch/pytorch#175024), then torch.compile under --compile."""
        if ddp and self.world > 1:
            module = nn.parallel.DistributedDataParallel(module, broadcast_buffers=False)
        return torch.compile(module) if self.args.compile else module

    def restore(self, state: dict, per_rank: Optional[dict] = None):
        """Name what a checkpoint holds (modules, optimisers, schedulers, tensors; per_rank: each rank's own) and load
        it on --resume (--eval-only: the networks only)."""
        self.state, self.per_rank = state, per_rank or {}
        if self.ckpt is None:
            return
        try:
            for name, obj in state.items():
                if not self.args.eval_only or isinstance(obj, nn.Module):
                    load_state(obj, self.ckpt[name])
            self.iteration, self.step, self.seconds = self.ckpt["iteration"], self.ckpt["step"], self.ckpt["seconds"]
            if not self.args.eval_only:
                if len(self.ckpt["ranks"]) != self.world:
                    raise ValueError(f"written by {len(self.ckpt['ranks'])} process(es), resumed with {self.world}")
                own = self.ckpt["ranks"][self.rank]
                for name, obj in self.per_rank.items():
                    load_state(obj, own[name])
                random.setstate(own["python"])
                np.random.set_state(own["numpy"])
                torch.set_rng_state(own["torch"])
                if self.device.type == "cuda" and own["cuda"] is not None:
                    torch.cuda.set_rng_state(own["cuda"], self.device)
        except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as e:  # another script's or shape's file
            fail(f"--resume {self.args.resume} does not match this model ({str(e).splitlines()[0][:200]})")

    def open(self, dataset: str, grid, samples, artefact: str = "samples.npz", eval_size: int = 2000):
        """Run folder (a resumed run keeps its own), TensorBoard, W&B; grid() -> a float image for samples/*.png,
        samples(n, final) -> uint8 arrays for the eval files and the final artefact."""
        self.grid = grid
        self.samples = samples
        self.artefact = artefact
        self.eval_size = eval_size
        if self.args.resume:
            self.dir = os.path.dirname(os.path.abspath(self.args.resume))
        else:
            self.dir = self.new_folder(dataset)
        self.ckpt_path = f"{self.dir}/checkpoint.pt"
        if self.rank == 0:
            os.makedirs(f"{self.dir}/samples", exist_ok=True)
            if self.args.track:  # CleanRL's convention: W&B mirrors the TensorBoard events
                import wandb
                wandb.tensorboard.patch(root_logdir=self.dir)  # sync_tensorboard, told the folder (no 10 s guess)
                wandb.init(project=self.args.wandb_project_name, entity=self.args.wandb_entity,
                           config=dataclasses.asdict(self.args), name=os.path.basename(self.dir), save_code=True)
            self.writer = SummaryWriter(self.dir)
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(
                f"|{k}|{v}|" for k, v in dataclasses.asdict(self.args).items()))

    def new_folder(self, dataset: str) -> str:
        """runs/{dataset}__{exp_name}__{seed}__{unix time}, created by rank 0; the next free second when another run
        holds it (a sweep can start runs of one name and seed at once: they must not share a checkpoint)."""
        stamp = int(time.time())
        while True:
            path = f"runs/{dataset}__{self.args.exp_name}__{self.args.seed}__{stamp}"
            if self.rank != 0:
                return path
            try:
                os.makedirs(path)
                return path
            except FileExistsError:
                stamp += 1

    def batches(self, data, batch_size: int, collate_fn=None, workers: int = 0, **order):
        """Endless uint8 minibatches on the device in index_batches' order from the resumed batch on: slices of a
        tensor kept there (small sets), or read by ONE DataLoader for the run (collate_fn: items -> batch)."""
        if data is None:  # --eval-only reads no data
            return None
        indices = index_batches(len(data), batch_size, self.args.seed, self.step, self.rank, self.world, **order)
        if isinstance(data, torch.Tensor):
            source = (data[i.to(data.device, non_blocking=True)] for i in indices)
        else:  # the loader's own generator keeps its seed draw off the global RNG
            source = (x.to(self.device, non_blocking=True) for x in torch.utils.data.DataLoader(
                data, batch_sampler=(i.tolist() for i in indices), collate_fn=collate_fn, num_workers=workers,
                persistent_workers=workers > 0, pin_memory=self.device.type == "cuda", worker_init_fn=quiet_worker,
                generator=torch.Generator().manual_seed(self.args.seed)))
        self.streams.append(self.counted(source, first=not self.streams))
        return self.streams[-1]

    def counted(self, source, first: bool):
        for x in source:
            self.step += first  # batches consumed (of the first stream: CycleGAN's two domains advance together)
            yield x

    def loop(self, total_iters: int, n_batches: int):
        """Generator updates iteration + 1 ... total_iters; after each: grid, eval file, checkpoint, stop."""
        self.total = total_iters
        self.n_batches = n_batches
        self.eval_seconds = 0.0  # spent writing eval files: not training time
        self.start_time = time.time()
        self.start_iter = self.iteration
        self.start_step = self.step
        self.stop = None  # the stop signal as run.log read it this iteration (agreed on by the ranks)
        if self.rank == 0:
            print(f"{os.path.basename(__file__)}: {self.device}, run folder {self.dir}, iterations {self.iteration} "
                  f"-> {total_iters}", flush=True)
        self.in_loop = True
        while self.iteration < total_iters and not self.args.eval_only:
            self.iteration += 1
            yield self.iteration
            if self.iteration % self.args.sample_interval == 0 and self.rank == 0:
                self.write_grid()
            if self.args.eval_interval and self.iteration % self.args.eval_interval == 0 and self.rank == 0:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)  # the training seconds exclude the time spent here
                t0 = time.time()
                save_atomic({**self.samples(self.eval_size, False), "iteration": self.iteration,
                             "train_seconds": self.train_seconds(t0)}, f"{self.dir}/samples_{self.iteration:07d}.npz")
                self.eval_seconds += time.time() - t0
            if self.at_checkpoint():
                self.save_checkpoint()
            if self.stop:
                if self.rank == 0:
                    print(f"stopped by {signal.Signals(self.stop).name}: checkpoint in {self.ckpt_path}",
                          file=sys.stderr)
                self.close()
                sys.exit(128 + self.stop)
        self.in_loop = False

    def train_seconds(self, now: float) -> float:
        return self.seconds + now - self.start_time - self.eval_seconds

    def at_checkpoint(self) -> bool:
        return self.iteration % self.args.checkpoint_interval == 0 or self.iteration == self.total or bool(self.stop)

    def log(self, iteration: int, values: dict):
        """At log points (every --log-interval, checkpoints, a stop signal: read once per iteration, agreed on by the
        ranks) the only host sync: losses/* and charts/* (rank means) to TensorBoard and stdout; non-finite: exit 1."""
        self.stop = self.stop_signal if self.world == 1 else None
        if iteration % self.args.log_interval != 0 and not self.at_checkpoint():
            return
        stats = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.device).detach().reshape(())
                             for v in values.values()])
        if self.world > 1:  # the mean over ranks, and the stop signal any rank got
            sig = torch.tensor(self.stop_signal or 0, device=self.device)
            dist.all_reduce(stats)
            dist.all_reduce(sig, op=dist.ReduceOp.MAX)
            stats, self.stop = stats / self.world, int(sig) or None
        values = dict(zip(values, stats.tolist(), strict=True))
        losses = {k: v for k, v in values.items() if k.startswith("losses/")}
        if not all(np.isfinite(v) for v in losses.values()):
            last = self.ckpt_path if os.path.exists(self.ckpt_path) else "not written yet"
            fail(f"non-finite loss at iteration {iteration} ({losses}); the last good checkpoint is {last}", 1)
        seconds = time.time() - self.start_time
        its = (iteration - self.start_iter) / seconds
        sps = (self.step - self.start_step) * self.args.batch_size / seconds
        if self.rank == 0:  # SPS: training images consumed per second (WGAN's critic steps each take a minibatch)
            for k, v in {**values, "charts/SPS": sps}.items():
                self.writer.add_scalar(k, v, iteration)
            shown = "".join(f" | {k[7:]} {losses[k]:.4f}" for k in ("losses/d_loss", "losses/g_loss") if k in losses)
            print(f"iter {iteration}/{self.total} | epoch {self.step // self.n_batches}{shown} | {its:.2f} it/s | "
                  f"ETA {(self.total - iteration) / its:.0f}s", flush=True)

    def save_checkpoint(self):
        """Every rank's RNG states (and per_rank state) are gathered; rank 0 writes the file atomically."""
        own = {**{k: v.state_dict() for k, v in self.per_rank.items()}, "python": random.getstate(),
               "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        ranks = [own] * self.world
        if self.world > 1:
            dist.all_gather_object(ranks, own)
        if self.rank == 0:
            states = {k: v if torch.is_tensor(v) else v.state_dict() for k, v in self.state.items()}
            save_atomic({**states, "iteration": self.iteration, "step": self.step, "epoch": self.step // self.n_batches,
                         "args": dataclasses.asdict(self.args), "ranks": ranks,
                         "seconds": self.train_seconds(time.time())}, self.ckpt_path)

    def write_grid(self):
        image = self.grid()
        torchvision.utils.save_image(image, f"{self.dir}/samples/{self.iteration:07d}.png")
        self.writer.add_image("samples", image, self.iteration)

    def close(self):
        """End the streams' DataLoader workers (they ignore SIGTERM) and, under torchrun, the process group, after
        each rank prints a checksum of its parameters (equal on every rank; BatchNorm statistics are each rank's)."""
        for stream in self.streams:
            stream.close()
        self.streams.clear()
        if self.world > 1 and dist.is_initialized():
            digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for net in self.state.values()
                                             if isinstance(net, nn.Module) for v in net.parameters()))
            print(f"rank {self.rank}: iteration {self.iteration}, weights sha256 {digest.hexdigest()}", flush=True)
            dist.destroy_process_group()

    def finish(self):
        """Ranks other than 0 end here; rank 0 writes the final grid and artefact (the whole of --eval-only)."""
        self.close()
        if self.rank != 0:
            sys.exit(0)
        print(f"writing the final sample grid and {self.artefact} to {self.dir}", flush=True)
        self.write_grid()
        if self.args.num_eval_samples > 0:
            save_atomic(self.samples(self.args.num_eval_samples, True), f"{self.dir}/{self.artefact}")
        self.writer.close()
        print(f"done: {self.iteration} iterations; artefacts in {self.dir}")
# ================================================ end of common block ================================================


if __name__ == "__main__":
    train(tyro.cli(Args))
