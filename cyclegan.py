# Docs: docs/cyclegan.md | Paper: Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks", https://arxiv.org/abs/1703.10593  # noqa: E501
"""CycleGAN: ResNet generators G: A -> B and F: B -> A, 70x70 PatchGAN discriminators D_A and D_B.

Paper-to-code map
- Eq. 1 with the least-squares loss (Section 4) ... `generator_loss` (target 1), `discriminator_loss` (1 / 0, halved)
- Eq. 2, cycle consistency (L1) .................. `cycle_loss`, weight lambda (`--lambda-cycle` 10)
- Section 5.2, identity mapping loss .............. `identity_loss`, lambda * `--lambda-identity` (painting: 0.5)
- Section 5.1.4, Tables 4-5, loss ablation ........ `--objective`, `OBJECTIVES` (terms of Eq. 3 kept; no identity)
- Eq. 3, full objective ........................... `g_loss` in step (1) of the loop; D_A, D_B in step (2)
- Section 4, history of 50 generated images ....... `image_pool` (official util/image_pool.py), `ImagePool` (per rank)
- Appendix 7.2, architectures ..................... `ResnetGenerator`, `NLayerDiscriminator`, `init_weights`
- Section 4, Adam 2e-4, 100 + 100 epochs, decay .. `linear_decay` (official `--lr_policy linear`)
- official data/unaligned_dataset.py .............. `run.batches(..., streams=2)` (A and B each permuted per epoch;
  official: B drawn with replacement), `crop_batch` + `augment` (random crop, flip)
"""
import atexit
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
    """where datasets live (DATA_DIR/<dataset>/trainA ...; with `--dataset folder` the tree itself)"""
    download: bool = True
    """fetch the dataset if it is missing"""
    epochs: int = 200
    """passes over the training data (the paper: 100 at the initial rate + 100 decaying)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 1
    """(A, B) pairs per update, split across processes under torchrun (Section 4: 1)"""
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
    """how many test images per direction translations.npz holds (0 = none)"""
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
    dataset: Literal["facades", "horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo", "maps",
                     "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "iphone2dslr_flower", "folder"] = "facades"
    """the official CycleGAN dataset (downloaded into DATA_DIR), or `folder`: --data-dir is the tree itself"""
    dataset_mode: Literal["unaligned", "aligned"] = "unaligned"
    """unaligned: trainA/ trainB/ testA/ testB/; aligned: an AB tree {train,test}/*.jpg, pairs broken in training"""
    img_size: int = 256
    """crop size the whole pipeline runs at (multiple of 4, >= 24); load size = img_size * 286 / 256"""
    ngf: int = 64
    """filters of the generators' first layer (official --ngf)"""
    ndf: int = 64
    """filters of the discriminators' first layer (official --ndf)"""
    n_blocks: int = 0
    """residual blocks of the generators (0 = 9 at --img-size >= 256, 6 below; Appendix 7.2)"""
    lambda_cycle: float = 10.0
    """lambda, weight of the cycle-consistency loss (Eq. 3, Section 4)"""
    lambda_identity: float = 0.0
    """identity loss weight as a fraction of lambda: 0 = off, as the paper's label <-> photo runs and the Lua code;
    0.5 for painting <-> photo (Section 5.2), the PyTorch port's default"""
    objective: Literal["cyclegan", "cycle-alone", "gan-alone", "gan+forward", "gan+backward"] = "cyclegan"
    """Tables 4-5 (Section 5.1.4) ablation: Eq. 3, or only some terms (forward: F(G(a)) ~ a); variants: no identity"""
    pool_size: int = 50
    """history of generated images shown to the discriminators (Section 4; 0 = no history)"""
    epochs_decay: int = 100
    """last epochs over which the rate decays linearly to zero (Section 4: 100)"""
    in_memory_limit_mb: int = 2048
    """training sets up to this size ((N_A + N_B) x 3 x 286 x 286 bytes) live on the device, larger ones stream"""
    num_workers: int = 4
    """DataLoader processes decoding images when the training set streams from disk (official num_threads 4)"""
    mirror: str = "http://efrosgans.eecs.berkeley.edu"
    """--download fetches MIRROR/cyclegan/datasets/NAME.zip (aligned: pix2pix/.../NAME.tar.gz); file:///path works"""
    input_dir: Optional[str] = None
    """with --eval-only: translate every image in this folder (no dataset needed); PNGs into RUN_FOLDER/DIRECTION"""
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    """which generator --input-dir images go through (AtoB: G, BtoA: F)"""
    backend: Optional[Literal["nccl", "gloo"]] = None
    """torch.distributed backend under torchrun (default: nccl on CUDA, gloo on the CPU)"""


# Tables 4-5 (Section 5.1.4): (GAN terms, forward cycle F(G(a)) ~ a, backward cycle G(F(b)) ~ b) of Eq. 3 kept. No
# identity loss there (Section 5.2 adds it for painting -> photo; official Torch identity = 0), so the variants drop it
OBJECTIVES = {"cyclegan": (True, True, True), "cycle-alone": (False, True, True), "gan-alone": (True, False, False),
              "gan+forward": (True, True, False), "gan+backward": (True, False, True)}
AB_SETS = ("facades", "maps")  # also released in the AB layout; their unpaired copies live in DATA_DIR/<name>_cyclegan


def check_args(args: Args):
    check_common(args, positive=["ngf", "ndf"],
                 non_negative=["n_blocks", "pool_size", "epochs_decay", "in_memory_limit_mb", "num_workers"])
    if not (args.lambda_cycle >= 0 and args.lambda_identity >= 0):  # NaN fails too
        fail(f"--lambda-cycle and --lambda-identity must be >= 0 (got {args.lambda_cycle}, {args.lambda_identity})")
    if args.objective == "cycle-alone" and args.lambda_cycle == 0:
        fail("--objective cycle-alone with --lambda-cycle 0 leaves no loss to train on")
    if args.img_size % 4 or args.img_size < 24:
        fail(f"--img-size must be a multiple of 4 and >= 24 (G halves it twice; got {args.img_size})")
    if args.epochs_decay > args.epochs:
        fail(f"--epochs-decay {args.epochs_decay} exceeds --epochs {args.epochs} (the total)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch_size % world:
        fail(f"--batch-size {args.batch_size} must be divisible by the {world} processes (the batch is split)")
    if args.dataset_mode == "aligned" and args.dataset not in (*AB_SETS, "folder"):
        fail(f"--dataset-mode aligned takes --dataset {', '.join(AB_SETS)} or folder (got {args.dataset})")
    if args.input_dir is not None and not (args.eval_only and list_images(args.input_dir)):
        fail(f"--input-dir {args.input_dir}: needs --eval-only and a folder holding {'/'.join(IMG_EXT)} images")


def read_rgb(path: str, size: int, half: Optional[int] = None) -> torch.Tensor:
    """uint8 (3, size, size): the image, or the left (half 0: A) or right (half 1: B) half of an A|B pair, resized."""
    img = decode_rgb(path)
    if half is not None:
        img = halves(img)[half]
    return resize(img, size)


def read_images(files: list, size: int, device) -> torch.Tensor:
    """uint8 (N, 3, size, size) on the device from (path, half) pairs."""
    return torch.stack([read_rgb(p, size, half) for p, half in files]).to(device)


def find_images(args: Args):
    """(train_a, train_b, test_a, test_b) lists of (path, half: None, or 0 / 1 for A / B of an AB image), paired. A
    missing set is downloaded (--download; under torchrun by rank 0, see run.rank0_first)."""
    suffix = "_cyclegan" if args.dataset_mode == "unaligned" and args.dataset in AB_SETS else ""
    root = args.data_dir if args.dataset == "folder" else os.path.join(args.data_dir, args.dataset + suffix)
    problem = None
    if args.download and args.dataset != "folder" and not os.path.exists(root):
        if args.dataset_mode == "unaligned":
            url = f"{args.mirror.rstrip('/')}/cyclegan/datasets/{args.dataset}.zip"
        else:
            url = f"{args.mirror.rstrip('/')}/pix2pix/datasets/{args.dataset}.tar.gz"
        problem = download(url, args.dataset, root)  # the archive's top folder is the dataset's name
    subdirs = ["trainA", "trainB", "testA", "testB"] if args.dataset_mode == "unaligned" else ["train", "test"]
    found = {d: list_images(os.path.join(root, d)) for d in subdirs}
    missing = [d for d in subdirs if not found[d]]
    if missing:
        fail(f"{args.dataset} ({args.dataset_mode}) {problem or 'not found'}: expected images in {root}/{missing[0]}; "
             f"pass --data-dir holding {os.path.basename(root)}/ (with --dataset folder: the tree) or --download", 1)
    if args.dataset_mode == "aligned":  # A | B side by side: the left half is A, the right half B
        return *([(p, half) for p in found[split]] for split in ("train", "test") for half in (0, 1)), True
    paired = [os.path.basename(p) for p in found["testA"]] == [os.path.basename(p) for p in found["testB"]]
    return *([(p, None) for p in found[d]] for d in subdirs), paired


def augment(img: torch.Tensor, key: str, size: int) -> torch.Tensor:
    """Random crop to size x size and horizontal flip (official resize_and_crop + flip), drawn from Random(key)."""
    r = random.Random(key)
    y, x = r.randrange(img.shape[-2] - size + 1), r.randrange(img.shape[-1] - size + 1)
    crop = img[..., y:y + size, x:x + size]
    return crop.flip(-1) if r.random() < 0.5 else crop


def crop_batch(images: torch.Tensor, args: Args, domain: int, step: int, n_batches: int, rank=0, world=1):
    """Batch `step` of a domain (uint8, load size; this rank's slice) -> float crops in [-1, 1]. The image at position
    j of epoch e's order is cropped by the key seed/domain/e/j: a crop depends only on the step, not on the ranks."""
    epoch, i = divmod(step, n_batches)
    first = i * args.batch_size + rank * (args.batch_size // world)  # index_batches' slice of this rank
    keys = [f"{args.seed}/{domain}/{epoch}/{j}" for j in range(first, first + len(images))]
    return normalise(torch.stack([augment(img, key, args.img_size) for img, key in zip(images, keys, strict=True)]))


def image_pool(history: list, images: torch.Tensor, size: int) -> torch.Tensor:
    """Section 4's history of `size` fakes (official image_pool.py): stored until full, then swapped at p 0.5."""
    out = []
    for img in images.detach().split(1):
        if len(history) < size:
            history.append(img)
        elif size > 0 and random.uniform(0, 1) > 0.5:
            j = random.randint(0, size - 1)
            history[j], img = img, history[j]
        out.append(img)
    return torch.cat(out)


class ImagePool(list):
    """One rank's history for `image_pool`, on the device; in the checkpoint (per rank) on the CPU."""
    def __init__(self, device):
        super().__init__()
        self.device = device

    def state_dict(self) -> dict:
        return {"images": [t.cpu() for t in self]}

    def load_state_dict(self, state: dict):
        self[:] = [t.to(self.device) for t in state["images"]]


def init_weights(m: nn.Module):  # N(0, 0.02) weights, zero biases (official init_type normal, init_gain 0.02)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


class ReflectionPad2d(nn.ReflectionPad2d):
    """Under deterministic algorithms the same padding by slices, flips and cat: a deterministic backward on CUDA."""
    def forward(self, x):
        if not torch.are_deterministic_algorithms_enabled():
            return super().forward(x)
        p = self.padding[0]
        x = torch.cat([x[..., 1:p + 1, :].flip(-2), x, x[..., -p - 1:-1, :].flip(-2)], dim=-2)
        return torch.cat([x[..., 1:p + 1].flip(-1), x, x[..., -p - 1:-1].flip(-1)], dim=-1)


class ResnetBlock(nn.Module):
    """R_k: two 3x3 convolutions with reflection padding and InstanceNorm, plus the skip connection."""
    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.block(x)


class ResnetGenerator(nn.Sequential):
    """c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3, tanh (Appendix 7.2; Johnson et al. 2016)."""
    def __init__(self, ngf: int = 64, n_blocks: int = 9, channels: int = 3):
        layers = [ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for mult in (1, 2):  # d128, d256: (B, ngf*mult*2, H/2^k, W/2^k)
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]  # (B, 4 ngf, H/4, W/4)
        for mult in (4, 2):  # u128, u64: fractionally strided convolutions
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]  # (B, C, H, W) in [-1, 1]
        super().__init__(*layers)
        self.apply(init_weights)


class NLayerDiscriminator(nn.Sequential):
    """70x70 PatchGAN: C64 (no norm)-C128-C256-C512 (stride 1)-1, 4x4 convs, LeakyReLU 0.2, raw scores (App. 7.2)."""
    def __init__(self, ndf: int = 64, n_layers: int = 3, channels: int = 3):
        layers, mult = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]  # (B, 1, H/8 - 2, W/8 - 2): 30x30 patches at 256
        super().__init__(*layers)
        self.apply(init_weights)


class CycleGenerators(nn.ModuleDict):
    """G: A -> B (g_ab) and F: B -> A (g_ba) in one module: one forward (and one DDP wrapper) covers the G step."""
    def forward(self, real_a, real_b):
        """G(a), F(b), F(G(a)), G(F(b)), F(a), G(b); InstanceNorm is per image, so batching calls changes nothing."""
        fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
        rec_a, idt_a = self.g_ba(torch.cat([fake_b, real_a])).chunk(2)
        rec_b, idt_b = self.g_ab(torch.cat([fake_a, real_b])).chunk(2)
        return fake_b, fake_a, rec_a, rec_b, idt_a, idt_b


def generator_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Least squares (Section 4, Mao et al. 2017): mean (D(G(x)) - 1)^2, G wants its fakes scored as real (1)."""
    return F.mse_loss(fake_pred, torch.ones_like(fake_pred))


def discriminator_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """0.5 [(D(y) - 1)^2 + D(G(x))^2]: real towards 1, fake towards 0, halved to slow D relative to G (Section 4)."""
    real = F.mse_loss(real_pred, torch.ones_like(real_pred))
    fake = F.mse_loss(fake_pred, torch.zeros_like(fake_pred))
    return 0.5 * (real + fake)


def cycle_loss(rec: torch.Tensor, real: torch.Tensor, lambda_cycle: float) -> torch.Tensor:
    """lambda ||F(G(x)) - x||_1 (Eq. 2, one direction), mean over pixels as the official L1Loss."""
    return lambda_cycle * F.l1_loss(rec, real)


def identity_loss(idt: torch.Tensor, real: torch.Tensor, lambda_cycle: float, lambda_identity: float):
    """lambda * lambda_idt ||F(x) - x||_1 (Section 5.2; official: lambda_identity times lambda_A/B)."""
    return lambda_cycle * lambda_identity * F.l1_loss(idt, real)


def linear_decay(epochs: int, epochs_decay: int):
    """LambdaLR factor of epoch e: 1, then linear down to 1/(epochs_decay + 1) (official `--lr_policy linear`)."""
    return lambda e: 1.0 - max(0, e + 1 - (epochs - epochs_decay)) / float(epochs_decay + 1)


@torch.no_grad()
def translate_folder(net: nn.Module, args: Args, device):
    """--input-dir: each image resized to --img-size and translated by net, written as RUN_FOLDER/DIRECTION/NAME.png."""
    out_dir = os.path.join(os.path.dirname(os.path.abspath(args.resume)), args.direction)
    os.makedirs(out_dir, exist_ok=True)
    files = list_images(args.input_dir)
    for path in files:
        y = net(normalise(read_rgb(path, args.img_size)[None].to(device)))
        name = os.path.splitext(os.path.basename(path))[0]
        torchvision.io.write_png(to_uint8(y[0]), os.path.join(out_dir, name + ".png"))
    print(f"done: {len(files)} images translated {args.direction} into {out_dir}")


def train(args: Args):
    check_args(args)
    run = Run(args)  # the common block below: seeding, device, and on --resume the checkpoint's model args
    args, device = run.args, run.device
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    n_blocks = args.n_blocks or (9 if args.img_size >= 256 else 6)  # Appendix 7.2: 6 blocks at 128, 9 at 256
    g_nets = CycleGenerators({"g_ab": ResnetGenerator(args.ngf, n_blocks), "g_ba": ResnetGenerator(args.ngf, n_blocks)})
    g_nets.to(device, memory_format=fmt)
    d_nets = nn.ModuleDict({"d_a": NLayerDiscriminator(args.ndf), "d_b": NLayerDiscriminator(args.ndf)})
    d_nets.to(device, memory_format=fmt)  # D_A judges domain A (a vs F(b)), D_B domain B (b vs G(a))
    optimizer_g, optimizer_d = (torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=device.type == "cuda") for net in (g_nets, d_nets))
    scheduler_g, scheduler_d = (torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(args.epochs, args.epochs_decay))
                                for opt in (optimizer_g, optimizer_d))
    pool_a, pool_b = ImagePool(device), ImagePool(device)  # this rank's histories: F(b) for D_A, G(a) for D_B
    run.restore({**g_nets, **d_nets, "optimizer_g": optimizer_g, "optimizer_d": optimizer_d, "scheduler_g": scheduler_g,
                 "scheduler_d": scheduler_d}, per_rank={"pool_a": pool_a, "pool_b": pool_b})  # g_ab, g_ba, d_a, d_b
    if args.input_dir is not None:  # --eval-only --input-dir: a folder of one domain's images through G or F
        translate_folder(g_nets.g_ab if args.direction == "AtoB" else g_nets.g_ba, args, device)
        return
    # the G step runs D outside DDP (frozen, nothing to sync); the D step through DDP under torchrun
    g_train, d_train_a, d_train_b = run.prepare(g_nets), run.prepare(d_nets.d_a), run.prepare(d_nets.d_b)
    d_a, d_b = run.prepare(d_nets.d_a, ddp=False), run.prepare(d_nets.d_b, ddp=False)

    # Data: lists of files (the test split for the grid and translations.npz); rank 0 downloads, the others wait
    train_a, train_b, test_a, test_b, paired = run.rank0_first(find_images, args)
    length = max(len(train_a), len(train_b))  # an epoch (official: max(|A|, |B|))
    n_batches = length // args.batch_size  # the last incomplete batch is dropped
    if n_batches == 0:
        fail(f"--batch-size {args.batch_size} exceeds the {length} training images")
    total_iters = min(args.epochs * n_batches, args.max_iters or float("inf"))

    @torch.no_grad()
    def translations(m: int, final: bool = True) -> dict:
        """uint8 {a2b,b2a}_{inputs,outputs,cycle} of the first m test images (eval = train mode: no dropout, no BN),
        and {a2b,b2a}_targets where the test split is paired (AB sets, or the same file names in testA and testB)."""
        out = {}
        for d, files, net, back in [("a2b", test_a[:m], g_nets.g_ab, g_nets.g_ba),
                                    ("b2a", test_b[:m], g_nets.g_ba, g_nets.g_ab)]:
            parts = []
            for i in range(0, len(files), 16):
                x = read_images(files[i:i + 16], args.img_size, device)
                y = net(normalise(x))
                parts.append((x.cpu(), to_uint8(y), to_uint8(back(y))))
            for k, v in zip(["inputs", "outputs", "cycle"], zip(*parts, strict=True), strict=True):
                out[f"{d}_{k}"] = torch.cat(v).numpy()
        if paired:
            out.update(a2b_targets=out["b2a_inputs"], b2a_targets=out["a2b_inputs"])
        return out

    def grid() -> torch.Tensor:
        """Rows a | G(a) | F(G(a)) | b | F(b) | G(F(b)) for the first (up to) 4 test images."""
        t, n = translations(4), min(4, len(test_a), len(test_b))
        rows = np.stack([t[f"{d}_{k}"][:n] for d in ("a2b", "b2a") for k in ("inputs", "outputs", "cycle")], 1)
        return torchvision.utils.make_grid(torch.from_numpy(rows).flatten(0, 1).float() / 255, nrow=6)

    run.open(args.dataset, grid, translations, artefact="translations.npz", eval_size=50)  # eval files: 50 each way
    load_size = round(args.img_size * 286 / 256)  # official --load_size 286 for --crop_size 256
    in_memory = (len(train_a) + len(train_b)) * 3 * load_size ** 2 <= args.in_memory_limit_mb * 2 ** 20
    sets = [None, None]  # --eval-only: no training data
    if not args.eval_only:  # uint8 at the load size, on the device when small; else the files, read by the loader
        sets = [read_images(files, load_size, device) if in_memory else files for files in (train_a, train_b)]
    read_batch = functools.partial(read_images, size=load_size, device="cpu")  # in the loader's workers
    # A and B: independent orders (index_batches' seeds (seed * 100_003 + epoch) * 2 + domain), `length` per epoch
    batches_a, batches_b = (run.batches(data, args.batch_size, read_batch, args.num_workers, length=length, streams=2,
                                        stream=domain) for domain, data in enumerate(sets))

    # ALGO LOGIC: Section 4 training loop (one iteration = one update of G and F, then of D_A and D_B)
    gan, forward, backward = OBJECTIVES[args.objective]  # Tables 4-5: which terms of Eq. 3 the G step minimises
    lam_a = args.lambda_cycle if forward else 0.0  # weight of the forward cycle F(G(a)) ~ a
    lam_b = args.lambda_cycle if backward else 0.0  # weight of the backward cycle G(F(b)) ~ b
    lam_idt = args.lambda_identity if args.objective == "cyclegan" else 0.0  # the Tables 4-5 runs: no identity loss
    for iteration in run.loop(total_iters, n_batches):
        real_a, real_b = (crop_batch(next(batches), args, domain, iteration - 1, n_batches, run.rank, run.world)
                          .contiguous(memory_format=fmt) for domain, batches in enumerate((batches_a, batches_b)))

        # (1) Update G and F: minimise Eq. 3 = LSGAN terms + lambda * cycle (Eq. 2) + lambda * lambda_idt * identity
        d_nets.requires_grad_(False)
        fake_b, fake_a, rec_a, rec_b, idt_a, idt_b = g_train(real_a, real_b)
        if gan:
            g_gan_a = generator_loss(d_a(fake_a))  # (D_A(F(b)) - 1)^2
            g_gan_b = generator_loss(d_b(fake_b))  # (D_B(G(a)) - 1)^2
        else:  # --objective cycle-alone: no D; its terms are logged as 0
            g_gan_a = g_gan_b = real_a.new_zeros(())
        cycle_loss_a = cycle_loss(rec_a, real_a, lam_a)  # lambda ||F(G(a)) - a||_1
        cycle_loss_b = cycle_loss(rec_b, real_b, lam_b)  # lambda ||G(F(b)) - b||_1
        identity_loss_a = identity_loss(idt_a, real_a, args.lambda_cycle, lam_idt)  # lambda lambda_idt ||F(a) - a||_1
        identity_loss_b = identity_loss(idt_b, real_b, args.lambda_cycle, lam_idt)  # lambda lambda_idt ||G(b) - b||_1
        g_loss = g_gan_a + g_gan_b + cycle_loss_a + cycle_loss_b + identity_loss_a + identity_loss_b
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()

        # (2) Update D_A and D_B: minimise 0.5 [(D(y) - 1)^2 + D(G(x))^2] with fakes from the image history
        charts = {}  # D's mean outputs; none (and no D update) without the GAN terms
        if gan:
            d_nets.requires_grad_(True)
            n = len(real_a)
            out_a = d_train_a(torch.cat([real_a, image_pool(pool_a, fake_a, args.pool_size)]))  # reals, pooled fakes
            out_b = d_train_b(torch.cat([real_b, image_pool(pool_b, fake_b, args.pool_size)]))
            d_loss_a = discriminator_loss(out_a[:n], out_a[n:])
            d_loss_b = discriminator_loss(out_b[:n], out_b[n:])
            optimizer_d.zero_grad(set_to_none=True)
            (d_loss_a + d_loss_b).backward()  # D_A and D_B share no weights: one backward, one optimiser
            optimizer_d.step()
            charts = {"charts/d_real": torch.cat([out_a[:n], out_b[:n]]).mean(),
                      "charts/d_fake": torch.cat([out_a[n:], out_b[n:]]).mean()}
        else:  # no D step: D's losses are logged as 0
            d_loss_a = d_loss_b = real_a.new_zeros(())

        terms = {"g_gan": (g_gan_a, g_gan_b), "cycle_loss": (cycle_loss_a, cycle_loss_b),
                 "identity_loss": (identity_loss_a, identity_loss_b), "d_loss": (d_loss_a, d_loss_b)}
        per_domain = {f"losses/{k}_{d}": v for k, pair in terms.items() for d, v in zip("ab", pair, strict=True)}
        run.log(iteration, {"losses/g_loss": g_loss, **{f"losses/{k}": a + b for k, (a, b) in terms.items()},
                            **per_domain, **charts, "charts/learning_rate": optimizer_g.param_groups[0]["lr"]})
        if iteration % n_batches == 0:  # linear decay, stepped at the end of each epoch (official)
            scheduler_g.step()
            if gan:  # cycle-alone never steps optimizer_d
                scheduler_d.step()
    run.finish()


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
