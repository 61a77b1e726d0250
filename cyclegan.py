# Docs: docs/cyclegan.md | Paper: Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks", https://arxiv.org/abs/1703.10593  # noqa: E501
"""CycleGAN: ResNet generators G: A -> B and F: B -> A, 70x70 PatchGAN discriminators D_A and D_B.

Paper-to-code map
- Eq. 1 with the least-squares loss (Section 4) ... `generator_loss` (target 1), `discriminator_loss` (1 / 0, halved)
- Eq. 2, cycle consistency (L1) .................. `cycle_loss`, weight lambda (`--lambda-cycle` 10)
- Section 5.2, identity mapping loss .............. `identity_loss`, weight lambda * 0.5 (`--lambda-identity`)
- Eq. 3, full objective ........................... `g_loss` in step (1) of the loop; D_A, D_B in step (2)
- Section 4, history of 50 generated images ....... `image_pool` (official util/image_pool.py)
- Appendix 7.2, architectures ..................... `ResnetGenerator`, `NLayerDiscriminator`, `init_weights`
- Section 4, Adam 2e-4, 100 + 100 epochs, decay .. `linear_decay` (official `--lr_policy linear`)
- official data/unaligned_dataset.py .............. `epoch_batches` (B permuted; official: with replacement), `augment`
"""
import atexit
import datetime
import itertools
import os
import random
import shutil
import signal
import sys
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
    lambda_identity: float = 0.5
    """identity loss weight as a fraction of lambda (Section 5.2; official --lambda_identity 0.5; 0 = off)"""
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


AB_SETS = ("facades", "maps")  # also released in the AB layout; their unpaired copies live in DATA_DIR/<name>_cyclegan
IMG_EXT = (".jpg", ".jpeg", ".png")
stop_signal = 0  # the last stop signal received (0: none), set by on_stop_signal


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args, world: int = 1):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "ngf", "ndf", "lr"]:
        if not getattr(args, name) > 0:  # NaN fails too
            fail(f"--{name.replace('_', '-')} must be > 0 (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "n_blocks", "pool_size", "epochs_decay", "lambda_cycle",
                 "lambda_identity", "eval_interval", "in_memory_limit_mb", "num_workers"]:
        if not getattr(args, name) >= 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if args.img_size % 4 or args.img_size < 24:
        fail(f"--img-size must be a multiple of 4 and >= 24 (G halves it twice; got {args.img_size})")
    if args.epochs_decay > args.epochs:
        fail(f"--epochs-decay {args.epochs_decay} exceeds --epochs {args.epochs} (the total)")
    if args.batch_size % world:
        fail(f"--batch-size {args.batch_size} must be divisible by the {world} processes (the batch is split)")
    if args.dataset_mode == "aligned" and args.dataset not in (*AB_SETS, "folder"):
        fail(f"--dataset-mode aligned takes --dataset {', '.join(AB_SETS)} or folder (got {args.dataset})")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to translate with)")


def read_rgb(path: str, size: int, half: Optional[int] = None) -> torch.Tensor:
    """uint8 (3, size, size): the image (or its left / right half) resized, antialiased bicubic as the official PIL."""
    img = torchvision.io.decode_image(path, mode=torchvision.io.ImageReadMode.RGB)
    img = img if half is None else img.chunk(2, dim=-1)[half]
    return TF.resize(img, [size, size], TF.InterpolationMode.BICUBIC, antialias=True)


def download(args: Args, root: str) -> Optional[str]:
    """Unpack the official archive in a temporary folder next to root, then one rename; on failure remove it all."""
    url = (f"{args.mirror.rstrip('/')}/cyclegan/datasets/{args.dataset}.zip" if args.dataset_mode == "unaligned" else
           f"{args.mirror.rstrip('/')}/pix2pix/datasets/{args.dataset}.tar.gz")
    created, tmp = not os.path.exists(args.data_dir), None
    try:
        os.makedirs(args.data_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.download-", dir=args.data_dir)
        archive = os.path.join(tmp, os.path.basename(url))
        print(f"downloading {url}", flush=True)
        urllib.request.urlretrieve(url, archive)
        safe = {} if archive.endswith(".zip") else {"filter": "data"}  # tar: no absolute paths or links out of tmp
        shutil.unpack_archive(archive, tmp, **safe)  # .zip (members with "/" or ".." are skipped) or .tar.gz
        os.rename(os.path.join(tmp, args.dataset), root)  # the archive's top folder is the dataset's name
    except Exception as e:  # the network, the disk, a broken archive: leave nothing behind
        if created:
            shutil.rmtree(args.data_dir, ignore_errors=True)
        return f"download from {url} failed ({type(e).__name__}; offline?)"
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def find_images(args: Args, rank: int = 0, group=None):
    """(train_a, train_b, test_a, test_b) lists of (path, half: None, or 0 / 1 for A / B of an AB image), paired. A
    missing set is downloaded (--download) by rank 0 alone; under torchrun the others wait at a barrier of `group`."""
    suffix = "_cyclegan" if args.dataset_mode == "unaligned" and args.dataset in AB_SETS else ""
    root = args.data_dir if args.dataset == "folder" else os.path.join(args.data_dir, args.dataset + suffix)
    problem, fetch = None, args.download and args.dataset != "folder"  # every rank alike: the same barriers
    if fetch and rank == 0 and not os.path.exists(root):
        problem = download(args, root)
    if fetch and group is not None:
        dist.barrier(group)
    subdirs = ["trainA", "trainB", "testA", "testB"] if args.dataset_mode == "unaligned" else ["train", "test"]
    listed = lambda d: sorted(f for f in os.listdir(d) if f.lower().endswith(IMG_EXT)) if os.path.isdir(d) else []
    found = {d: [os.path.join(root, d, f) for f in listed(os.path.join(root, d))] for d in subdirs}
    missing = [d for d in subdirs if not found[d]]
    if missing:
        fail(f"{args.dataset} ({args.dataset_mode}) {problem or 'not found'}: expected images in {root}/{missing[0]}; "
             f"pass --data-dir holding {os.path.basename(root)}/ (with --dataset folder: the tree) or --download", 1)
    if args.dataset_mode == "aligned":  # A | B side by side: the left half is A, the right half B
        return *([(p, half) for p in found[split]] for split in ("train", "test") for half in (0, 1)), True
    paired = [os.path.basename(p) for p in found["testA"]] == [os.path.basename(p) for p in found["testB"]]
    return *([(p, None) for p in found[d]] for d in subdirs), paired


def epoch_batches(n: int, length: int, batch_size: int, seed: int, domain: int, start: int, rank=0, world=1):
    """One domain's batches of (index, crop key) from step `start` on; a batch depends only on its step and rank."""
    local, per_epoch, epoch = batch_size // world, length // batch_size, -1  # the last incomplete batch is dropped
    for step in itertools.count(start):
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            g = torch.Generator().manual_seed((seed * 100_003 + epoch) * 2 + domain)
            perm = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-length // n))])[:length].tolist()
        lo = step % per_epoch * batch_size + rank * local
        yield [(perm[j], f"{seed}/{domain}/{epoch}/{j}") for j in range(lo, lo + local)]


def augment(img: torch.Tensor, key: str, size: int) -> torch.Tensor:
    """Random crop to size x size and horizontal flip (official resize_and_crop + flip), drawn from Random(key)."""
    r = random.Random(key)
    y, x = r.randrange(img.shape[-2] - size + 1), r.randrange(img.shape[-1] - size + 1)
    crop = img[..., y:y + size, x:x + size]
    return crop.flip(-1) if r.random() < 0.5 else crop


class ImageFiles(torch.utils.data.Dataset):
    """One domain's training images streamed from disk: decoded, resized to the load size, cropped and flipped."""
    def __init__(self, files: list, load_size: int, size: int):
        self.files, self.load_size, self.size = files, load_size, size

    def __getitem__(self, item: tuple) -> torch.Tensor:
        (path, half), key = self.files[item[0]], item[1]
        return augment(read_rgb(path, self.load_size, half), key, self.size)


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
    real, fake = F.mse_loss(real_pred, torch.ones_like(real_pred)), F.mse_loss(fake_pred, torch.zeros_like(fake_pred))
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


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint onto the CPU (RNG states must be CPU tensors); an unreadable file ends in one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # garbage, a truncated copy, a full disk: torch.load raises many kinds
        fail(f"--resume {path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})")


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict):
    """Load an optimiser state, keeping this run's `fused` setting (fused Adam on CUDA) rather than the writer's."""
    for saved, group in zip(state["param_groups"], optimizer.param_groups, strict=True):
        if "fused" in group:
            saved["fused"] = group["fused"]
    optimizer.load_state_dict(state)


def on_uncaught(kind, error, tb):
    """With --torch-deterministic, an op that has no deterministic CUDA kernel ends in one line, not a traceback."""
    if issubclass(kind, RuntimeError) and "deterministic" in str(error):
        print(f"{os.path.basename(__file__)}: error: --torch-deterministic: {str(error).splitlines()[0]}; rerun with "
              "--no-torch-deterministic", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, tb)


def on_stop_signal(signum, frame):
    """Ctrl-C (SIGINT), a scheduler's SIGTERM: the loop finishes its iteration, checkpoints and exits 128 + signal."""
    global stop_signal
    stop_signal = signum


if __name__ == "__main__":
    args = tyro.cli(Args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    check_args(args, world)
    distributed, rank, cpu_group = world > 1, 0, None
    use_cuda = torch.cuda.is_available() and args.cuda
    if distributed:  # launched by torchrun: one process per device, the batch split across them
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank = dist.get_rank()
        cpu_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=24))  # outlasts a long download

    # TRY NOT TO MODIFY: seeding (per rank: image pools differ, DDP broadcasts rank 0's weights)
    random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    torch.manual_seed(args.seed + rank)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    if args.torch_deterministic:  # cuBLAS needs a fixed workspace for deterministic matmuls (set before CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        sys.excepthook = on_uncaught
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu")
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    ckpt = load_checkpoint(args.resume) if args.resume else None
    read_images = lambda files, size: torch.stack([read_rgb(p, size, half) for p, half in files]).to(device)
    normalize = lambda x: x.float().div(127.5).sub(1.0)  # uint8 [0, 255] -> float [-1, 1]

    # Data: lists of files; only rank 0 downloads, the others wait for it
    train_a, train_b, test_a, test_b, paired = find_images(args, rank, cpu_group)
    length = max(len(train_a), len(train_b))  # an epoch (official: max(|A|, |B|))
    per_epoch = length // args.batch_size
    if per_epoch == 0:
        fail(f"--batch-size {args.batch_size} exceeds the {length} training images")
    total_iters = min(args.epochs * per_epoch, args.max_iters or float("inf"))
    load_size = round(args.img_size * 286 / 256)  # official --load_size 286 for --crop_size 256
    in_memory = (len(train_a) + len(train_b)) * 3 * load_size ** 2 <= args.in_memory_limit_mb * 2 ** 20

    n_blocks = args.n_blocks or (9 if args.img_size >= 256 else 6)  # Appendix 7.2: 6 blocks at 128, 9 at 256
    g_nets = CycleGenerators({"g_ab": ResnetGenerator(args.ngf, n_blocks), "g_ba": ResnetGenerator(args.ngf, n_blocks)})
    g_nets.to(device, memory_format=fmt)
    d_nets = nn.ModuleDict({"d_a": NLayerDiscriminator(args.ndf), "d_b": NLayerDiscriminator(args.ndf)})
    d_nets.to(device, memory_format=fmt)  # D_A judges domain A (a vs F(b)), D_B domain B (b vs G(a))
    optimizer_g, optimizer_d = (torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=device.type == "cuda") for net in (g_nets, d_nets))
    scheduler_g, scheduler_d = (torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(args.epochs, args.epochs_decay))
                                for opt in (optimizer_g, optimizer_d))
    pool_a, pool_b = [], []  # histories: F(b) for D_A, G(a) for D_B
    nets = {"g_ab": g_nets.g_ab, "g_ba": g_nets.g_ba, "d_a": d_nets.d_a, "d_b": d_nets.d_b}
    states = dict(optimizer_g=optimizer_g, optimizer_d=optimizer_d, scheduler_g=scheduler_g, scheduler_d=scheduler_d)

    iteration, train_seconds, run_dir = 0, 0.0, None  # G updates (= (a, b) batches consumed), training time so far
    if ckpt is not None:
        try:
            for name, obj in [*nets.items(), *(states.items() if not args.eval_only else [])]:
                (load_optimizer if name.startswith("optimizer") else type(obj).load_state_dict)(obj, ckpt[name])
            if not args.eval_only:
                if len(ckpt["ranks"]) != world:
                    raise ValueError(f"written by {len(ckpt['ranks'])} process(es), resumed with {world}")
                own = ckpt["ranks"][rank]  # this rank's image pools and RNG states (CPU tensors)
                pool_a[:], pool_b[:] = ([t.to(device) for t in own[k]] for k in ("pool_a", "pool_b"))
                for key, set_state in [("python", random.setstate), ("numpy", np.random.set_state),
                                       ("torch", torch.set_rng_state), ("cuda", torch.cuda.set_rng_state)]:
                    if own["rng"][key] is not None and (key != "cuda" or device.type == "cuda"):
                        set_state(own["rng"][key])
            iteration, train_seconds = ckpt["iteration"], ckpt.get("train_seconds", 0.0)
        except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as e:  # another script's file, no dict
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        run_dir = os.path.dirname(os.path.abspath(args.resume))
    # the G step runs D outside DDP (frozen, nothing to sync); the D step through DDP when distributed
    trained = [nn.parallel.DistributedDataParallel(m) if distributed else m for m in (g_nets, d_nets.d_a, d_nets.d_b)]
    g_train, d_train_a, d_train_b, d_a, d_b = [torch.compile(m) if args.compile else m for m in
                                               [*trained, d_nets.d_a, d_nets.d_b]]

    def training_batches(files: list, domain: int):
        """uint8 crops per step: from the set held on the device when small, else streamed (the same batches)."""
        sampler = epoch_batches(len(files), length, args.batch_size, args.seed, domain, iteration, rank, world)
        if in_memory:
            data = read_images(files, load_size)  # on the device; the host copy is dropped
            return (torch.stack([augment(data[i], key, args.img_size) for i, key in batch]) for batch in sampler)
        return iter(torch.utils.data.DataLoader(
            ImageFiles(files, load_size, args.img_size), batch_sampler=sampler, num_workers=args.num_workers,
            persistent_workers=args.num_workers > 0, pin_memory=device.type == "cuda"))

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM: finish the iteration, write
    signal.signal(signal.SIGTERM, on_stop_signal)  # a checkpoint, exit 128 + signal; DataLoader workers ignore them
    streams = [] if args.eval_only else [training_batches(train_a, 0), training_batches(train_b, 1)]
    atexit.register(streams.clear)  # DataLoader workers ignore SIGTERM: end them before multiprocessing joins them

    # TRY NOT TO MODIFY: run folder and logging, rank 0 only (a resumed run keeps writing into its own folder)
    run_dir = run_dir or f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"
    writer, ckpt_path = None, f"{run_dir}/checkpoint.pt"
    if rank == 0:
        os.makedirs(f"{run_dir}/samples", exist_ok=True)
        writer = SummaryWriter(run_dir)
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                              asdict(args).items()))

    def save_checkpoint():  # all ranks take part (their image pools and RNG states are gathered); rank 0 writes
        own = {"pool_a": [t.cpu() for t in pool_a], "pool_b": [t.cpu() for t in pool_b],
               "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                       "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}}
        ranks = [own] * world
        if distributed:
            dist.all_gather_object(ranks, own)
        if rank == 0:
            torch.save({**{k: v.state_dict() for k, v in {**nets, **states}.items()}, "iteration": iteration,
                        "step": iteration, "epoch": iteration // per_epoch, "args": asdict(args), "ranks": ranks,
                        "train_seconds": train_seconds + time.time() - start_time - eval_seconds}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)  # atomic

    @torch.no_grad()
    def translate_test(m: int) -> dict:
        """uint8 {a2b,b2a}_{inputs,outputs,cycle} of the first m test images (eval = train mode: no dropout, no BN)."""
        out, to_uint8 = {}, lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        for d, files, net, back in [("a2b", test_a[:m], g_nets.g_ab, g_nets.g_ba),
                                    ("b2a", test_b[:m], g_nets.g_ba, g_nets.g_ab)]:
            parts = []
            for i in range(0, len(files), 16):
                x = read_images(files[i:i + 16], args.img_size)
                y = net(normalize(x))
                parts.append((x, to_uint8(y), to_uint8(back(y))))
            for k, v in zip(["inputs", "outputs", "cycle"], zip(*parts, strict=True), strict=True):
                out[f"{d}_{k}"] = torch.cat(v)
        return out

    def write_translations(path: str, m: int, **extra):  # translate_test(m), + targets where paired, atomically
        arrays = {**{k: v.cpu().numpy() for k, v in translate_test(m).items()}, **extra}
        if paired:
            arrays.update(a2b_targets=arrays["b2a_inputs"], b2a_targets=arrays["a2b_inputs"])
        with open(path + ".tmp", "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(path + ".tmp", path)

    def write_samples():  # rows: a | G(a) | F(G(a)) | b | F(b) | G(F(b)) for the first (up to) 4 test images
        t, n = translate_test(4), min(4, len(test_a), len(test_b))
        rows = torch.stack([t[f"{d}_{k}"][:n] for d in ("a2b", "b2a") for k in ("inputs", "outputs", "cycle")], 1)
        grid = torchvision.utils.make_grid(rows.flatten(0, 1).float() / 255, nrow=6)
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    # ALGO LOGIC: Section 4 training loop (one iteration = one update of G and F, then of D_A and D_B)
    if rank == 0:
        print(f"cyclegan.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds, stopping = time.time(), iteration, 0.0, 0
    while not args.eval_only and iteration < total_iters and not stopping:
        real_a, real_b = (normalize(next(s).to(device, non_blocking=True)).contiguous(memory_format=fmt)
                          for s in streams)

        # (1) Update G and F: minimise Eq. 3 = LSGAN terms + lambda * cycle (Eq. 2) + lambda * lambda_idt * identity
        d_nets.requires_grad_(False)
        fake_b, fake_a, rec_a, rec_b, idt_a, idt_b = g_train(real_a, real_b)
        g_gan_a, g_gan_b = generator_loss(d_a(fake_a)), generator_loss(d_b(fake_b))  # (D_A(F(b)) - 1)^2, ...
        lam, lam_idt = args.lambda_cycle, args.lambda_identity
        cycle_loss_a, cycle_loss_b = cycle_loss(rec_a, real_a, lam), cycle_loss(rec_b, real_b, lam)  # F(G(a)), G(F(b))
        identity_loss_a = identity_loss(idt_a, real_a, lam, lam_idt)  # lambda * lambda_idt * ||F(a) - a||_1
        identity_loss_b = identity_loss(idt_b, real_b, lam, lam_idt)  # lambda * lambda_idt * ||G(b) - b||_1
        g_loss = g_gan_a + g_gan_b + cycle_loss_a + cycle_loss_b + identity_loss_a + identity_loss_b
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()

        # (2) Update D_A and D_B: minimise 0.5 [(D(y) - 1)^2 + D(G(x))^2] with fakes from the image history
        d_nets.requires_grad_(True)
        n = len(real_a)
        out_a = d_train_a(torch.cat([real_a, image_pool(pool_a, fake_a, args.pool_size)]))  # reals, pooled fakes
        out_b = d_train_b(torch.cat([real_b, image_pool(pool_b, fake_b, args.pool_size)]))
        d_loss_a, d_loss_b = discriminator_loss(out_a[:n], out_a[n:]), discriminator_loss(out_b[:n], out_b[n:])
        optimizer_d.zero_grad(set_to_none=True)
        (d_loss_a + d_loss_b).backward()  # D_A and D_B share no weights: one backward, one optimiser
        optimizer_d.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here; ranks agree on stops)
        stopping = stop_signal  # read once: a signal that lands after this line stops the next iteration
        if distributed:  # the signal any rank got, so that every rank stops at this same iteration (CPU group: no sync)
            flag = torch.tensor(stopping)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=cpu_group)
            stopping = int(flag)
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stopping
        if iteration % args.log_interval == 0 or at_checkpoint:
            terms = {"g_gan": (g_gan_a, g_gan_b), "cycle_loss": (cycle_loss_a, cycle_loss_b),
                     "identity_loss": (identity_loss_a, identity_loss_b), "d_loss": (d_loss_a, d_loss_b)}
            values = {"losses/g_loss": g_loss, **{f"losses/{k}": a + b for k, (a, b) in terms.items()},
                      **{f"losses/{k}_{d}": v for k, pair in terms.items() for d, v in zip("ab", pair, strict=True)},
                      "charts/d_real": torch.cat([out_a[:n], out_b[:n]]).mean(),
                      "charts/d_fake": torch.cat([out_a[n:], out_b[n:]]).mean()}
            stacked = torch.stack([v.detach().float() for v in values.values()])
            if distributed:  # mean over ranks: every rank logs and checks the same values
                dist.all_reduce(stacked)
                stacked /= world
            losses = dict(zip(values, stacked.tolist(), strict=True))
            shown = " | ".join(f"{k[7:]} {losses[k]:.4f}" for k in list(losses)[:5])  # g_loss, its terms, d_loss
            if not all(np.isfinite(v) for v in losses.values()):
                last = ckpt_path if os.path.exists(ckpt_path) else "not written yet"
                fail(f"non-finite loss at iteration {iteration} ({shown}); the last good checkpoint is {last}", 1)
            its = (iteration - start_iter) / (time.time() - start_time - eval_seconds)
            if rank == 0:  # SPS: A and B training images per second
                for k, v in {**losses, "charts/SPS": its * 2 * args.batch_size,
                             "charts/learning_rate": optimizer_g.param_groups[0]["lr"]}.items():
                    writer.add_scalar(k, v, iteration)
                print(f"iter {iteration}/{total_iters} | epoch {iteration // per_epoch} | {shown} | {its:.2f} it/s "
                      f"| ETA {(total_iters - iteration) / its:.0f}s", flush=True)
        if iteration % args.sample_interval == 0 and rank == 0:
            write_samples()
        if args.eval_interval and iteration % args.eval_interval == 0 and rank == 0:  # quality over time (untimed)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
            write_translations(f"{run_dir}/samples_{iteration:07d}.npz", 50, iteration=iteration,  # a fixed subset
                               train_seconds=train_seconds + t0 - start_time - eval_seconds)
            eval_seconds += time.time() - t0
        if iteration % per_epoch == 0:  # linear decay, stepped at the end of each epoch (official)
            scheduler_g.step()
            scheduler_d.step()
        if at_checkpoint:
            save_checkpoint()
    streams.clear()  # DataLoader workers, if any, end here

    # Final artefacts (rank 0): grid and translations.npz over the test split in both directions
    if stopping:  # every rank says so (one write each, so the ranks' lines do not interleave)
        sys.stderr.write(f"stopped by {signal.Signals(stopping).name} at iteration {iteration}: checkpoint written to "
                         f"{ckpt_path}\n")
    elif rank == 0:
        print(f"writing the final sample grid and translations.npz to {run_dir}", flush=True)
        write_samples()
        if args.num_eval_samples > 0:
            write_translations(f"{run_dir}/translations.npz", args.num_eval_samples)
        print(f"done: {iteration} iterations; artefacts in {run_dir}")
    if rank == 0:
        writer.close()
    if distributed:  # every rank waits for rank 0's files, then all tear down together
        dist.barrier(cpu_group)
        dist.destroy_process_group()
    sys.exit(128 + stopping if stopping else 0)
