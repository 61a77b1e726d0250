# Docs: docs/lsgan.md | Paper: Mao et al. 2017, "Least Squares Generative Adversarial Networks", https://arxiv.org/abs/1611.04076
"""LSGAN: least squares losses for D and G (Mao et al., ICCV 2017).

Paper-to-code map
- Eq. 2, min_D 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] ...... `discriminator_loss`, update (1) of the loop
- Eq. 2, min_G 1/2 E[(D(G(z)) - c)^2] ............................... `generator_loss`, update (2) of the loop
- Section 3.2.3, codings: Eq. 9 a=0, b=1, c=1 (the default, used in the paper's experiments);
  Eq. 8 a=-1, b=1, c=0 (b - c = 1, b - a = 2: minimises the Pearson chi^2 divergence) ... `--a --b --c`
- MNIST (no network in the paper): our choice, `--arch dcgan`, dcgan.py's G and D with BN, D's output linear, so
  lsgan.py and dcgan.py differ only in the loss (docs item 3) ......... `dcgan_generator`, `dcgan_discriminator`
- Figure 3(a): fc, BN, 3x3 deconvs (stride 2, 1, 2, 1 at 256 channels, then 128, 64), 3x3 output ... `lsun_generator`
- Figure 3(b): 5x5 stride-2 convs 64-128-256-512, BN but on the first, LeakyReLU, fc, linear ... `lsun_discriminator`
- Section 4.1 / official code: Adam lr 2e-4 (1e-3 for scenes), beta1 0.5, batch 64, z ~ U(-1, 1) ... `Args`
"""
import itertools
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
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
    """where datasets live (torchvision's layout, e.g. DATA_DIR/MNIST/raw)"""
    download: bool = True
    """fetch the dataset if it is missing"""
    epochs: int = 5
    """passes over the training data"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 64
    """minibatch size (official code: 64)"""
    lr: float = 2e-4
    """learning rate of both networks (Section 4.1: 0.0002 for the characters, 0.001 for the scenes)"""
    beta1: float = 0.5
    """Adam beta1 (Section 4.1, following DCGAN: 0.5)"""
    beta2: float = 0.999
    """Adam beta2"""
    log_interval: int = 100
    """log losses every this many generator updates"""
    sample_interval: int = 500
    """write a sample grid every this many generator updates"""
    checkpoint_interval: int = 2000
    """write checkpoint.pt every this many generator updates"""
    num_eval_samples: int = 10000
    """how many samples the final samples.npz holds (0 = none)"""
    resume: Optional[str] = None
    """continue from this checkpoint file, exactly"""
    eval_only: bool = False
    """with --resume: no training, only write the sample grid and samples.npz"""
    compile: bool = False
    """if toggled, `torch.compile` the networks"""
    eval_interval: int = 0
    """every this many generator updates write samples_{iteration:07d}.npz (quality over time; 0 = off)"""

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist", "cifar10", "svhn", "folder"] = "mnist"
    """the training set (folder: an ImageFolder tree at --data-dir, e.g. CelebA)"""
    arch: Literal["dcgan", "lsun"] = "dcgan"
    """networks: dcgan.py's G and D (our MNIST choice: only the loss differs) or Figure 3's LSUN scene networks"""
    img_size: int = 32
    """image side: 32 or 64 with --arch dcgan (MNIST is resized 28 -> 32), a multiple of 16 with lsun (Figure 3: 112)"""
    latent_dim: Optional[int] = None
    """dimension of the noise z (default: 100 with --arch dcgan, DCGAN's Figure 1; 1024 with --arch lsun, Figure 3)"""
    ngf: int = 64
    """G width (dcgan: channels of G's last hidden layer, doubling towards 4x4; lsun: 4, 2, 1 x ngf = 256, 128, 64)"""
    ndf: int = 64
    """D width: channels of D's first conv, doubling at each stride-2 conv (lsun, Figure 3: 64 to 512)"""
    a: float = 0.0
    """target of D for fake data (Eq. 2; Eq. 9: 0, Eq. 8: -1)"""
    b: float = 1.0
    """target of D for real data (Eq. 2; Eq. 9: 1, Eq. 8: 1)"""
    c: float = 1.0
    """value G wants D to output for fake data (Eq. 2; Eq. 9: 1, Eq. 8: 0)"""
    workers: int = 2
    """DataLoader worker processes that decode --dataset folder images (0 = in the main process)"""


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    if args.latent_dim is None:
        args.latent_dim = 100 if args.arch == "dcgan" else 1024
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "ngf", "ndf"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "workers", "eval_interval"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if args.img_size not in ((32, 64) if args.arch == "dcgan" else range(16, 1025, 16)):
        fail(f"--img-size must be 32 or 64 with --arch dcgan, a multiple of 16 with --arch lsun (got {args.img_size})")
    if not args.lr > 0:
        fail(f"--lr must be > 0 (got {args.lr})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if not all(np.isfinite([args.a, args.b, args.c])) or args.a == args.b:
        fail(f"--a and --b must be finite and differ (got a={args.a}, b={args.b}, c={args.c})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


# dataset -> (torchvision class, split, what it keeps under --data-dir: the folder/file it reads first)
SOURCES = {
    "mnist": (torchvision.datasets.MNIST, {"train": True}, ["MNIST"]),
    "fashion-mnist": (torchvision.datasets.FashionMNIST, {"train": True}, ["FashionMNIST"]),
    "cifar10": (torchvision.datasets.CIFAR10, {"train": True}, ["cifar-10-batches-py", "cifar-10-python.tar.gz"]),
    "svhn": (torchvision.datasets.SVHN, {"split": "train"}, ["train_32x32.mat"]),
}


def load_images(args: Args) -> torch.Tensor:
    """The whole training set as one uint8 tensor (N, C, img_size, img_size), read with torchvision's own loader
    and resized once (antialiased bilinear) when its side differs from --img-size."""
    cls, split, files = SOURCES[args.dataset]
    paths = [os.path.join(args.data_dir, f) for f in files] + [args.data_dir]
    existed = [os.path.exists(p) for p in paths]
    try:
        data = torch.as_tensor(cls(args.data_dir, download=args.download, **split).data)
    except (RuntimeError, OSError, ImportError) as e:
        for p in [p for p, ex in zip(paths, existed, strict=True) if not ex and os.path.exists(p)]:
            if os.path.isdir(p):  # nothing half-downloaded is left, not even --data-dir
                shutil.rmtree(p)
            else:
                os.remove(p)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {paths[0]} ({type(e).__name__}); pass --data-dir pointing at the folder "
             f"that holds {files[0]}, or run once with --download while online", 1)
    if data.ndim == 3:
        data = data.unsqueeze(1)  # MNIST-like (N, 28, 28)
    elif data.shape[-1] == 3:
        data = data.permute(0, 3, 1, 2)  # CIFAR-10 (N, 32, 32, 3); SVHN is already (N, 3, 32, 32)
    if data.shape[-1] != args.img_size:
        data = torch.cat([F.interpolate(chunk.float(), size=args.img_size, mode="bilinear", antialias=True)
                          .round_().clamp_(0, 255).to(torch.uint8) for chunk in data.split(10000)])
    return data.contiguous()


def load_folder(args: Args) -> torchvision.datasets.ImageFolder:
    """--dataset folder: an ImageFolder tree; images are decoded and resized when a batch needs them (flat memory)."""
    tf = T.Compose([T.Resize(args.img_size), T.CenterCrop(args.img_size), T.PILToTensor()])  # uint8 (3, S, S)
    try:
        return torchvision.datasets.ImageFolder(args.data_dir, transform=tf)
    except (FileNotFoundError, OSError) as e:
        fail(f"folder not found or holds no images: expected class subfolders of images in {args.data_dir} "
             f"({type(e).__name__}); pass --data-dir pointing at an ImageFolder tree", 1)


def epoch_batches(n: int, batch_size: int, seed: int, start: int = 0, device="cpu"):
    """Endless index batches: epoch e is the permutation seeded by (seed, e), its last incomplete batch dropped;
    starting at batch `start`, so the order depends only on the batches consumed and a resumed run continues it."""
    for step in itertools.count(start):
        epoch, i = divmod(step, n // batch_size)
        if i == 0 or step == start:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).to(device)
        yield perm[i * batch_size:(i + 1) * batch_size]


def minibatches(data, batch_size: int, seed: int, start: int, workers: int, device):
    """Endless minibatches in epoch_batches' order from batch `start`, in [-1, 1] on the device: slices of a uint8
    tensor kept there (small sets), or from ONE DataLoader for the run (folders), decoding one image at a time."""
    if isinstance(data, torch.Tensor):
        batches = (data[i] for i in epoch_batches(len(data), batch_size, seed, start, data.device))
    else:  # the loader's own generator seeds its workers: the global RNG is not drawn
        order = (i.tolist() for i in epoch_batches(len(data), batch_size, seed, start))
        batches = (x.to(device, non_blocking=True) for x, _ in torch.utils.data.DataLoader(
            data, batch_sampler=order, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed)))
    for x in batches:
        yield x.float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1]


def sample_noise(n: int, dim: int, device, generator=None) -> torch.Tensor:
    """z ~ U(-1, 1)^dim (the official code's prior)."""
    return torch.rand(n, dim, device=device, generator=generator) * 2 - 1


def init_weights(m: nn.Module):
    """Official code (DCGAN-tensorflow ops): weights from N(0, 0.02), biases 0; BatchNorm keeps PyTorch's scale 1 and
    shift 0, which are the official ones."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def dcgan_generator(latent_dim: int, ngf: int, channels: int, img_size: int) -> nn.Sequential:
    """dcgan.py's G: z -> 4x4 (a 4x4 transposed conv) -> fractional-strided 4x4 convs doubling the side and halving
    the channels, BatchNorm + ReLU after each -> tanh output without BatchNorm."""
    mult = img_size // 8  # 32 px: 4x4x(4 ngf) -> 8 -> 16 -> 32; 64 px: 4x4x(8 ngf) -> ... -> 64
    layers = [nn.Unflatten(1, (latent_dim, 1, 1)), nn.ConvTranspose2d(latent_dim, ngf * mult, 4, 1, 0, bias=False),
              nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]  # (B, ngf*mult, 4, 4)
    while mult > 1:
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
        mult //= 2
    layers += [nn.ConvTranspose2d(ngf, channels, 4, 2, 1), nn.Tanh()]  # (B, C, S, S); no BatchNorm here
    return nn.Sequential(*layers).apply(init_weights)


def dcgan_discriminator(ndf: int, channels: int, img_size: int) -> nn.Sequential:
    """dcgan.py's D: strided 4x4 convs halving the side and doubling the channels, LeakyReLU 0.2 (BatchNorm from the
    second layer on) -> a 4x4 valid conv to one linear output (no sigmoid: the least squares loss takes it raw)."""
    layers = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]  # no BatchNorm on the input layer
    mult, side = 1, img_size // 2
    while side > 4:
        layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(ndf * mult * 2), nn.LeakyReLU(0.2, True)]
        mult, side = mult * 2, side // 2
    layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 0), nn.Flatten(0)]  # (B, 1, 1, 1) -> (B,)
    return nn.Sequential(*layers).apply(init_weights)


def deconv(c_in: int, c_out: int, stride: int) -> list:
    """3x3 transposed conv ("SAME" padding: stride 2 doubles the side, stride 1 keeps it), then BN and ReLU."""
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride, 1, output_padding=stride - 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(True)]


def lsun_generator(latent_dim: int, ngf: int, channels: int, img_size: int) -> nn.Sequential:
    """Figure 3(a) at side S: z -> fc to (4 ngf, S/16, S/16) -> BN, ReLU -> deconv 3x3 s2 and s1 at 4 ngf, twice ->
    deconv s2 to 2 ngf -> deconv s2 to ngf (all with BN, ReLU) -> deconv 3x3 s1 to C -> tanh."""
    return nn.Sequential(
        nn.Linear(latent_dim, ngf * 4 * (img_size // 16) ** 2, bias=False),
        nn.Unflatten(1, (ngf * 4, img_size // 16, img_size // 16)),
        nn.BatchNorm2d(ngf * 4), nn.ReLU(True),  # (B, 4 ngf, S/16, S/16)
        *deconv(ngf * 4, ngf * 4, 2), *deconv(ngf * 4, ngf * 4, 1),  # (B, 4 ngf, S/8, S/8)
        *deconv(ngf * 4, ngf * 4, 2), *deconv(ngf * 4, ngf * 4, 1),  # (B, 4 ngf, S/4, S/4)
        *deconv(ngf * 4, ngf * 2, 2),  # (B, 2 ngf, S/2, S/2)
        *deconv(ngf * 2, ngf, 2),  # (B, ngf, S, S)
        nn.ConvTranspose2d(ngf, channels, 3, 1, 1), nn.Tanh(),  # (B, C, S, S); no BatchNorm on the output
    ).apply(init_weights)


def lsun_discriminator(ndf: int, channels: int, img_size: int) -> nn.Sequential:
    """Figure 3(b): 5x5 stride-2 convs with ndf, 2, 4, 8 ndf channels, LeakyReLU 0.2, BN except on the first ->
    fc to one linear output (no sigmoid: the least squares loss takes the raw value)."""
    return nn.Sequential(
        nn.Conv2d(channels, ndf, 5, 2, 2), nn.LeakyReLU(0.2, True),  # (B, ndf, S/2, S/2)
        nn.Conv2d(ndf, ndf * 2, 5, 2, 2, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 5, 2, 2, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, ndf * 8, 5, 2, 2, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
        nn.Flatten(), nn.Linear(ndf * 8 * (img_size // 16) ** 2, 1), nn.Flatten(0),  # (B,)
    ).apply(init_weights)


NETWORKS = {"dcgan": (dcgan_generator, dcgan_discriminator), "lsun": (lsun_generator, lsun_discriminator)}


def least_squares(out: torch.Tensor, target: float) -> torch.Tensor:
    """1/2 E[(D(.) - target)^2]: one term of Eq. 2."""
    return 0.5 * F.mse_loss(out, torch.full_like(out, target))


def discriminator_loss(real_out, fake_out, a: float, b: float):
    """Eq. 2, D's two terms: (1/2 E[(D(x) - b)^2], 1/2 E[(D(G(z)) - a)^2]); D minimises their sum."""
    return least_squares(real_out, b), least_squares(fake_out, a)


def generator_loss(fake_out, c: float):
    """Eq. 2, G's objective: 1/2 E[(D(G(z)) - c)^2]."""
    return least_squares(fake_out, c)


@torch.no_grad()
def generate_uint8(generator: nn.Module, n: int, args: Args, device, gen: torch.Generator) -> torch.Tensor:
    """n samples as uint8 (n, C, S, S) on the CPU, from the noise stream `gen` (not the training RNG), in chunks of
    1000, G in eval mode: BatchNorm uses (and does not update) its running statistics; G goes back to train mode."""
    generator.eval()
    images = torch.cat([generator(sample_noise(min(1000, n - i), args.latent_dim, device, gen))
                        for i in range(0, n, 1000)])
    generator.train()
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def save_atomic(obj, path: str):
    """torch.save (or np.savez_compressed for a dict of arrays to a .npz) to a temporary file, then os.replace."""
    with open(path + ".tmp", "wb") as f:
        if path.endswith(".npz"):
            np.savez_compressed(f, **obj)
        else:
            torch.save(obj, f)
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint onto the CPU, whatever device wrote it: RNG states must stay CPU ByteTensors, and
    load_state_dict moves weights and optimiser states to the run's device. An unreadable file ends in one line."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # garbage, a truncated copy, a full disk: torch.load raises many kinds
        fail(f"--resume {path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    if not isinstance(ckpt, dict):
        fail(f"--resume {path}: not a checkpoint written by {os.path.basename(__file__)}")
    return ckpt


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


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    if args.torch_deterministic:  # cuBLAS needs a fixed workspace for deterministic matmuls (set before CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        sys.excepthook = on_uncaught
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    memory_format = torch.channels_last  # faster on CUDA, and measured faster on the CPU too

    # Data: small sets on the device as one uint8 tensor (no host copy kept); image folders streamed by DataLoader
    data = load_folder(args) if args.dataset == "folder" else load_images(args).to(device)  # (N, C, S, S) uint8
    channels = 3 if args.dataset == "folder" else data.shape[1]
    n_batches = len(data) // args.batch_size  # per epoch; the last incomplete batch is dropped
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {len(data)} training images")
    total_iters = min(args.epochs * n_batches, args.max_iters or sys.maxsize)  # --max-iters 0: no cap

    make_g, make_d = NETWORKS[args.arch]
    generator = make_g(args.latent_dim, args.ngf, channels, args.img_size).to(device, memory_format=memory_format)
    discriminator = make_d(args.ndf, channels, args.img_size).to(device, memory_format=memory_format)
    optimizer_g, optimizer_d = (torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=device.type == "cuda") for net in (generator, discriminator))

    iteration, step, train_seconds = 0, 0, 0.0  # generator updates done, real minibatches consumed, training time
    run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"  # or, resumed, its own
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        try:
            generator.load_state_dict(ckpt["generator"])
            discriminator.load_state_dict(ckpt["discriminator"])
            load_optimizer(optimizer_g, ckpt["optimizer_g"])
            load_optimizer(optimizer_d, ckpt["optimizer_d"])
            iteration, step, train_seconds = ckpt["iteration"], ckpt["step"], ckpt.get("train_seconds", 0.0)
            random.setstate(ckpt["rng"]["python"])
            np.random.set_state(ckpt["rng"]["numpy"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        except (KeyError, TypeError, RuntimeError, ValueError) as e:  # a missing entry: another script's checkpoint
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        run_dir = os.path.dirname(os.path.abspath(args.resume))
    g_train, d_train = (torch.compile(generator), torch.compile(discriminator)) if args.compile else (
        generator, discriminator)

    # TRY NOT TO MODIFY: run folder and logging (a resumed run keeps writing into its own folder)
    os.makedirs(f"{run_dir}/samples", exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                          asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"

    def save_checkpoint():
        save_atomic({
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "train_seconds": train_seconds + time.time() - start_time - eval_seconds,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        }, ckpt_path)

    def write_samples():
        """An 8x8 grid from a fixed noise batch."""
        images = generate_uint8(generator, 64, args, device, torch.Generator(device).manual_seed(args.seed))
        grid = torchvision.utils.make_grid(images, nrow=8).float() / 255
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    def write_eval_samples():
        """samples_{iteration}.npz (quality over time): 2000 samples, and the training seconds so far without this."""
        global eval_seconds
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        images = generate_uint8(generator, 2000, args, device, torch.Generator(device).manual_seed(args.seed + 2))
        seconds = train_seconds + t0 - start_time - eval_seconds
        save_atomic({"images": images, "iteration": iteration, "train_seconds": seconds},
                    f"{run_dir}/samples_{iteration:07d}.npz")
        eval_seconds += time.time() - t0

    stop_signal = None

    def on_stop_signal(signum, frame):
        global stop_signal
        stop_signal = signum

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM (preemption, docker stop):
    signal.signal(signal.SIGTERM, on_stop_signal)  # finish the iteration, write a checkpoint, exit 128 + signal

    # ALGO LOGIC: alternate one D and one G Adam step per minibatch on the least squares objectives of Eq. 2
    print(f"lsgan.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds = time.time(), iteration, 0.0
    batches = minibatches(data, args.batch_size, args.seed, step, args.workers, device)
    while iteration < total_iters and not args.eval_only:
        real = next(batches).contiguous(memory_format=memory_format)  # (B, C, S, S) in [-1, 1]
        step += 1
        fake = g_train(sample_noise(len(real), args.latent_dim, device))

        # (1) Update D, Eq. 2: minimise 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]; G(z) detached
        real_out, fake_out = d_train(real), d_train(fake.detach())
        d_loss_real, d_loss_fake = discriminator_loss(real_out, fake_out, args.a, args.b)
        d_loss = d_loss_real + d_loss_fake
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # (2) Update G, Eq. 2: minimise 1/2 E[(D(G(z)) - c)^2], through the updated D
        g_loss = generator_loss(d_train(fake), args.c)
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(generator.parameters()))  # no gradients for D's weights
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        stopping = stop_signal  # read once: a signal that lands after this line stops the next iteration
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stopping
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "d_loss_real": d_loss_real.item(),
                      "d_loss_fake": d_loss_fake.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                last = ckpt_path if os.path.exists(ckpt_path) else "not written yet"
                fail(f"non-finite loss at iteration {iteration} ({losses}); the last good checkpoint is {last}", 1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/d_real", real_out.mean().item(), iteration)  # raw D output, target b
            writer.add_scalar("charts/d_fake", fake_out.mean().item(), iteration)  # raw D output, target a
            its = (iteration - start_iter) / (time.time() - start_time)
            writer.add_scalar("charts/SPS", its * args.batch_size, iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | {its:.2f} it/s | ETA {(total_iters - iteration) / its:.0f}s",
                  flush=True)
        if iteration % args.sample_interval == 0:
            write_samples()
        if args.eval_interval and iteration % args.eval_interval == 0:
            write_eval_samples()
        if at_checkpoint:
            save_checkpoint()
        if stopping:
            print(f"stopped by {signal.Signals(stopping).name}: checkpoint written to {ckpt_path}", file=sys.stderr)
            sys.exit(128 + stopping)

    # Final artefacts: grid and samples.npz for the benchmark
    print(f"writing the final sample grid and {args.num_eval_samples} samples to {run_dir}", flush=True)
    write_samples()
    if args.num_eval_samples > 0:
        images = generate_uint8(generator, args.num_eval_samples, args, device,
                                torch.Generator(device).manual_seed(args.seed + 1))
        save_atomic({"images": images}, f"{run_dir}/samples.npz")
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
