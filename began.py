# Docs: docs/began.md | Paper: Berthelot et al. 2017, "BEGAN: Boundary Equilibrium Generative Adversarial Networks", https://arxiv.org/abs/1703.10717  # noqa: E501
"""BEGAN: D is an autoencoder, G matches its loss distribution, k_t keeps E[L(G(z))] = gamma E[L(x)] (Section 3.3).

Paper-to-code map
- Eq. 1 (eta = 1), L(v) = |v - D(v)| ............. `recon_error` (pixel-wise mean absolute error)
- Eq. 4, L_D = L(x) - k_t L(G(z_D)) ............... `discriminator_loss`, step (1) of the training loop
- Eq. 4, L_G = L(G(z_G)) ........................... `generator_loss`, step (2) of the training loop
- Eq. 4, k_{t+1} = k_t + lambda_k (gamma L(x) - L(G(z_G))), k in [0, 1] ... `update_k`
- Section 3.4.1, M_global = L(x) + |gamma L(x) - L(G(z_G))| .............. `convergence_measure`
- Section 4.1, "decaying [the lr] by a factor of 2 when the measure of convergence stalls" ... `StallDecay`
- Section 3.5.1, vanishing residuals, carry 1 -> 0 over `--carry-steps` (D) and `--g-carry-steps` (G) ... `set_carry`
- Section 3.5 / Figure 1, ELU conv encoder and decoder, nearest upsampling, stride-2 subsampling ... `Encoder`,
  `Decoder`, `Discriminator` (encoder + decoder), `Generator` (same architecture as the decoder, own weights)
"""
import glob
import math
import os
import random
import shutil
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
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
    epochs: int = 20
    """passes over the training data"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 16
    """minibatch size (the paper and the reference implementation use 16)"""
    lr: float = 1e-4
    """initial learning rate of both networks (Section 4.1: in [5e-5, 1e-4])"""
    beta1: float = 0.5
    """Adam beta1 (not in the paper; 0.5 as DCGAN: the reference code's trainer uses TF's 0.9, see docs/began.md)"""
    beta2: float = 0.999
    """Adam beta2"""
    log_interval: int = 100
    """log losses every this many generator updates"""
    sample_interval: int = 1000
    """write a sample grid every this many generator updates"""
    checkpoint_interval: int = 5000
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
    dataset: Literal["mnist", "fashion-mnist", "folder"] = "mnist"
    """the training set (folder: every .png/.jpg under --data-dir, centre-cropped; CelebA in the paper)"""
    img_size: int = 32
    """image side: a power of two from 16 to 256, the encoder subsamples down to 8x8 (Section 4.1)"""
    h_dim: int = 64
    """N_h = N_z, the embedding and noise dimension (Section 4.1: 64)"""
    num_filters: int = 64
    """n, filters of the first conv; the encoder uses n, 2n, 3n, ... (paper: 128; reference implementations: 64, 128)"""
    gamma: float = 1.0
    """gamma = E[L(G(z))] / E[L(x)], the diversity ratio (Section 3.3; paper's CelebA: 0.5; ours, docs item 10: 1.0)"""
    lambda_k: float = 0.01
    """lambda_k, the proportional gain of the k_t controller (Eq. 4; paper, CelebA: 0.001)"""
    lr_decay_window: int = 5000
    """halve the lr when the mean M_global over this many iterations is not 1% below the best so far (0 = never)"""
    carry_steps: int = 16000
    """Section 3.5.1 vanishing residuals in D: the carry falls from 1 to 0 over this many iterations (0 = none)"""
    g_carry_steps: int = 500
    """the same for G (paper, CelebA: 16000, one schedule for both networks; 500: our MNIST tuning, docs item 10)"""
    in_memory_limit_mb: int = 4096
    """--dataset folder: hold the resized images on the device up to this size, else stream them from disk"""
    num_workers: int = 4
    """--dataset folder, streamed: DataLoader worker processes that decode images (0 = in the main process)"""


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    rules = [(name, getattr(args, name) > 0, "be > 0") for name in ["epochs", "batch_size", "lr", "lambda_k",
             "log_interval", "sample_interval", "checkpoint_interval", "h_dim", "num_filters"]]
    rules += [(name, getattr(args, name) >= 0, "be >= 0") for name in ["max_iters", "num_eval_samples", "eval_interval",
              "lr_decay_window", "carry_steps", "g_carry_steps", "in_memory_limit_mb", "num_workers"]]
    rules += [("beta1", 0 <= args.beta1 < 1, "lie in [0, 1)"), ("beta2", 0 <= args.beta2 < 1, "lie in [0, 1)"),
              ("gamma", 0 < args.gamma <= 1, "lie in (0, 1]"),
              ("img_size", args.img_size in (16, 32, 64, 128, 256), "lie in {16, 32, 64, 128, 256}, e.g. 32 or 64")]
    for name, ok, rule in rules:
        if not ok:
            fail(f"--{name.replace('_', '-')} must {rule} (got {getattr(args, name)})")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing, once on load, in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    return torch.cat([F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True)
                      .round_().clamp_(0, 255).to(torch.uint8) for c in images.split(5000)])


class ImageFolder(torch.utils.data.Dataset):
    """Every .png/.jpg under `root`, decoded one at a time, centre-cropped to a square and resized: uint8 (3, S, S)."""
    def __init__(self, root: str, size: int):
        self.size, self.files = size, sorted(f for ext in ("png", "jpg", "jpeg") for f in glob.glob(
            os.path.join(root, "**", f"*.{ext}"), recursive=True))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        image = torchvision.io.decode_image(self.files[i], mode=torchvision.io.ImageReadMode.RGB)
        return resize(torchvision.transforms.functional.center_crop(image, min(image.shape[-2:]))[None], self.size)[0]


def load_images(args: Args, device):
    """uint8 (N, C, S, S) on `device`, resized once (MNIST: 28 -> 32), or an ImageFolder above the memory limit."""
    if args.dataset == "folder":
        folder = ImageFolder(args.data_dir, args.img_size)
        if not len(folder):
            fail(f"--dataset folder: no .png/.jpg images under {args.data_dir}; pass --data-dir pointing at them", 1)
        if len(folder) * 3 * args.img_size ** 2 > args.in_memory_limit_mb * 2 ** 20:
            return folder
        images = torch.empty(len(folder), 3, args.img_size, args.img_size, dtype=torch.uint8)
        for i in range(len(folder)):  # one image at a time: host memory holds the resized set only
            images[i] = folder[i]
        return images.to(device)
    name = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[args.dataset]  # torchvision's class and folder
    path = os.path.join(args.data_dir, name)
    leftovers = [p for p in (args.data_dir, path) if not os.path.exists(p)]  # what a failed download may leave behind
    try:
        images = getattr(torchvision.datasets, name)(args.data_dir, train=True, download=args.download).data[:, None]
    except (RuntimeError, OSError, ImportError) as e:
        for p in leftovers[::-1]:  # leave nothing half-downloaded behind, not even a --data-dir made for it
            shutil.rmtree(p, ignore_errors=True)  # the data folder and --data-dir, directories both
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {path} ({type(e).__name__}); pass --data-dir pointing at a folder "
             "that holds it in torchvision's layout, or run once with --download while online", 1)
    return resize(images, args.img_size).to(device)


def epoch_batches(n: int, batch_size: int, seed: int, start: int, device="cpu"):
    """An infinite batch sampler from batch `start` on; epoch e is a permutation seeded by (seed, e), on `device`."""
    epoch, i = divmod(start, n // batch_size)  # the last incomplete batch of an epoch is dropped
    while True:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).to(device)
        yield from (perm[j * batch_size:(j + 1) * batch_size] for j in range(i, n // batch_size))
        epoch, i = epoch + 1, 0


def sample_noise(n: int, dim: int, device, generator=None) -> torch.Tensor:
    """z ~ U[-1, 1]^N_z (Section 3.5)."""
    return torch.rand(n, dim, device=device, generator=generator) * 2 - 1


class ConvELU(nn.Module):
    """conv3x3-ELU (Figure 1); between same-sized layers Section 3.5.1's carry * x + (1 - carry) * ELU(conv(x))."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv, self.elu, self.residual = nn.Conv2d(cin, cout, 3, stride, 1), nn.ELU(), cin == cout and stride == 1
        self.register_buffer("carry", torch.zeros(()), persistent=False)  # a function of the iteration: not saved

    def forward(self, x):
        y = self.elu(self.conv(x))
        return torch.lerp(y, x, self.carry) if self.residual else y


class Encoder(nn.Sequential):
    """x -> conv-ELU(n) -> per scale s = 1..S: [conv-ELU(s*n) x2, stride-2 conv-ELU(s*n) except at 8x8] -> FC -> h."""

    def __init__(self, channels: int, n: int, h_dim: int, img_size: int):
        scales = int(math.log2(img_size // 8)) + 1  # 32: 32, 16, 8; 64: 64, 32, 16, 8
        layers = [ConvELU(channels, n)]
        for s in range(scales):
            c = n * (s + 1)  # filters grow linearly with depth (Section 3.5)
            layers += [ConvELU(n * max(s, 1), c), ConvELU(c, c)]  # n -> n, then n -> 2n, 2n -> 3n, ...
            if s < scales - 1:
                layers.append(ConvELU(c, c, stride=2))  # subsampling by stride 2
        super().__init__(*layers, nn.Flatten(), nn.Linear(8 * 8 * c, h_dim))  # to h: no non-linearity


class Decoder(nn.Sequential):
    """h -> FC -> (n, 8, 8) -> per scale: [conv-ELU(n) x2, nearest-neighbour x2 except at full size] -> conv -> C."""

    def __init__(self, channels: int, n: int, h_dim: int, img_size: int):
        scales = int(math.log2(img_size // 8)) + 1
        layers = [nn.Linear(h_dim, 8 * 8 * n), nn.Unflatten(1, (n, 8, 8))]  # from h: no non-linearity
        for s in range(scales):
            layers += [ConvELU(n, n), ConvELU(n, n)]
            if s < scales - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        super().__init__(*layers, nn.Conv2d(n, channels, 3, 1, 1))  # linear output (reference code)


class Generator(Decoder):
    """G: the decoder's architecture with its own weights (Section 3.5), z in [-1, 1]^N_z -> image."""


class Discriminator(nn.Sequential):
    """D: an autoencoder, D(x) = decoder(encoder(x)), the reconstruction of x (Section 3.5)."""

    def __init__(self, channels: int, n: int, h_dim: int, img_size: int):
        super().__init__(OrderedDict(encoder=Encoder(channels, n, h_dim, img_size),
                                     decoder=Decoder(channels, n, h_dim, img_size)))


def set_carry(iteration: int, *schedules):
    """Section 3.5.1: per (net, carry_steps), the carry falls linearly from 1 at iteration 0 to 0 at carry_steps."""
    for net, carry_steps in (s for s in schedules if iteration <= s[1]):
        for m in (m for m in net.modules() if isinstance(m, ConvELU)):
            m.carry.fill_(1 - iteration / carry_steps if carry_steps else 0.0)


def init_weights(m: nn.Module):
    """Xavier-uniform weights and zero biases (the paper does not say; TF slim's defaults in the reference code)."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


def recon_error(v, d_v):
    """Eq. 1 with eta = 1: L(v) = |v - D(v)|, the pixel-wise mean absolute error of the autoencoder."""
    return F.l1_loss(d_v, v)


def discriminator_loss(real_recon, fake_recon, k_t):
    """Eq. 4: L_D = L(x) - k_t L(G(z_D)): reconstruct real images well and, weighted by k_t, generated ones badly."""
    return real_recon - k_t * fake_recon


def generator_loss(fake, d_fake):
    """Eq. 4: L_G = L(G(z_G)) = |G(z_G) - D(G(z_G))|, with the gradient through both terms (as the reference code)."""
    return recon_error(fake, d_fake)


def update_k(k, real_recon, fake_recon_g, gamma: float, lambda_k: float):
    """Eq. 4: k_{t+1} = k_t + lambda_k (gamma L(x) - L(G(z_G))), clipped to [0, 1]."""
    return torch.clamp(k + lambda_k * (gamma * real_recon - fake_recon_g), 0.0, 1.0)


def convergence_measure(real_recon, fake_recon_g, gamma: float):
    """Section 3.4.1: M_global = L(x) + |gamma L(x) - L(G(z_G))|."""
    return real_recon + torch.abs(gamma * real_recon - fake_recon_g)


class StallDecay:
    """Section 4.1: halve the lr when a window's mean M_global is not below best * (1 - margin), best the lowest
    earlier window mean (summed on the device: one host sync per window). Checkpoints hold vars(self)."""

    def __init__(self, lr: float, window: int, margin: float = 0.01):  # the margin: at least 1% better, our choice
        self.lr, self.window, self.margin, self.best, self.total, self.count = lr, window, margin, math.inf, 0.0, 0

    def step(self, m_global) -> bool:  # True when the lr was just halved
        self.total, self.count = self.total + m_global, self.count + 1
        if self.count < self.window or not self.window:
            return False
        mean, self.total, self.count = float(self.total) / self.count, 0.0, 0
        stalled = not mean < self.best * (1 - self.margin)
        self.best, self.lr = min(self.best, mean), self.lr / 2 if stalled else self.lr
        return stalled


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint onto the CPU (RNG states must stay CPU tensors); an unreadable file ends in one line."""
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
    """Ctrl-C (SIGINT) and a scheduler's SIGTERM: finish the iteration, write a checkpoint, exit 128 + signal."""
    global stop_signal
    stop_signal = signum


def save_atomic(path: str, obj=None, **arrays):
    """torch.save(obj), or np.savez_compressed(arrays), into a temporary file, then os.replace: never half a file."""
    with open(path + ".tmp", "wb") as f:
        if arrays:
            np.savez_compressed(f, **arrays)
        else:
            torch.save(obj, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)
    ckpt = load_checkpoint(args.resume) if args.resume else None  # a missing or unreadable file ends here, exit 2

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)  # seeded, never drawn from: checkpoints keep torch's RNG states only
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    if args.torch_deterministic:  # cuBLAS needs a fixed workspace for deterministic matmuls (set before CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        sys.excepthook = on_uncaught
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    on_cuda = device.type == "cuda"  # fused Adam there; channels_last everywhere (faster on the CPU too)

    data = load_images(args, device)  # uint8 (N, C, S, S) on the device (no host copy kept), or a streamed ImageFolder
    n_batches = len(data) // args.batch_size
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {len(data)} training images")
    total_iters = min(args.epochs * n_batches, args.max_iters or math.inf)  # --max-iters 0: no cap

    net_args = (data[0].shape[0], args.num_filters, args.h_dim, args.img_size)
    generator, discriminator = Generator(*net_args).to(device), Discriminator(*net_args).to(device)
    for net in (generator, discriminator):
        net.apply(init_weights).to(memory_format=torch.channels_last)
    # G starts at the data's mean colour, summed exactly (same bits streamed or not); not in the paper, docs item 7.
    if not ckpt:  # a resumed run loads its own weights: no need to decode 10,000 images first
        n = min(10000, len(data))
        total = sum(data[i].to(device).sum((1, 2), dtype=torch.int64) for i in range(n))
        generator[-1].bias.data.copy_(total.double().div(n * args.img_size ** 2 * 127.5).sub(1))
    optimizer_g, optimizer_d = (torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=on_cuda) for net in (generator, discriminator))
    scheduler = StallDecay(args.lr, args.lr_decay_window)
    k_t, iteration, train_seconds = torch.zeros((), device=device), 0, 0.0  # k_0 = 0 (Section 3.4)
    run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"  # or, resumed, its own
    if ckpt:
        try:
            generator.load_state_dict(ckpt["generator"])
            discriminator.load_state_dict(ckpt["discriminator"])
            load_optimizer(optimizer_g, ckpt["optimizer_g"])
            load_optimizer(optimizer_d, ckpt["optimizer_d"])
            vars(scheduler).update(ckpt["scheduler"])
            k_t, iteration, train_seconds = ckpt["k_t"].to(device), ckpt["iteration"], ckpt.get("train_seconds", 0.0)
            torch.set_rng_state(ckpt["rng"]["torch"])
            if on_cuda and ckpt["rng"]["cuda"] is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        except (KeyError, TypeError, RuntimeError, ValueError) as e:  # a missing entry: another script's checkpoint
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        run_dir = os.path.dirname(os.path.abspath(args.resume))
    set_carry(iteration, (generator, args.g_carry_steps), (discriminator, args.carry_steps))
    g_train, d_train = (torch.compile(net) if args.compile else net for net in (generator, discriminator))
    indices = epoch_batches(len(data), args.batch_size, args.seed, iteration, getattr(data, "device", "cpu"))
    batches = (data[idx] for idx in indices) if isinstance(data, torch.Tensor) else iter(torch.utils.data.DataLoader(
        data, batch_sampler=indices, num_workers=args.num_workers, persistent_workers=args.num_workers > 0,
        pin_memory=on_cuda, generator=torch.Generator().manual_seed(args.seed)))  # its own RNG, not training's

    # TRY NOT TO MODIFY: run folder and logging (a resumed run keeps writing into its own folder)
    os.makedirs(f"{run_dir}/samples", exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                          asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"

    @torch.no_grad()
    def generate(n: int, seed: int) -> np.ndarray:
        """n samples G(z), uint8 (n, C, S, S), z from its own RNG seeded `seed` (G has no BatchNorm or dropout)."""
        z = sample_noise(n, args.h_dim, device, torch.Generator(device).manual_seed(seed))
        images = torch.cat([generator(chunk) for chunk in z.split(1000)])
        return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    def write_samples():
        """A 10x10 grid of G(fixed z), z seeded --seed."""
        grid = torchvision.utils.make_grid(torch.from_numpy(generate(100, args.seed)).float() / 255, nrow=10)
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    stop_signal = None
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGTERM, on_stop_signal)

    # ALGO LOGIC: Eq. 4 (BEGAN objective and the k_t proportional control)
    print(f"began.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds = time.time(), iteration, 0.0
    while iteration < total_iters and not args.eval_only:
        # (1) Update D: descend L_D = L(x) - k_t L(G(z_D)); G(z_D) is generated under no_grad
        real = next(batches).to(device, non_blocking=True)  # uint8 (B, C, S, S), one real batch per iteration
        real = real.float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)  # in [-1, 1]
        with torch.no_grad():
            fake = g_train(sample_noise(len(real), args.h_dim, device))
        recon = d_train(torch.cat([real, fake]))  # one pass over both halves (no batch statistics in D)
        real_recon, fake_recon = recon_error(real, recon[:len(real)]), recon_error(fake, recon[len(real):])
        d_loss = discriminator_loss(real_recon, fake_recon, k_t)
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # (2) Update G: descend L_G = L(G(z_G)) with fresh noise z_G; D's weights get no gradient here
        fake_g = g_train(sample_noise(args.batch_size, args.h_dim, device))
        g_loss = generator_loss(fake_g, d_train(fake_g))
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(generator.parameters()))
        optimizer_g.step()
        iteration += 1
        set_carry(iteration, (generator, args.g_carry_steps), (discriminator, args.carry_steps))

        # (3) Eq. 4: k_{t+1} (on the device, no host sync); Section 3.4.1: M_global; Section 4.1: lr decay
        with torch.no_grad():
            k_t = update_k(k_t, real_recon, g_loss, args.gamma, args.lambda_k)
            m_global = convergence_measure(real_recon, g_loss, args.gamma)
        if scheduler.step(m_global):  # syncs once per window
            for group in [*optimizer_d.param_groups, *optimizer_g.param_groups]:
                group["lr"] = scheduler.lr

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        stopping = stop_signal  # read once: a signal that lands after this line stops the next iteration
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stopping
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "real_recon": real_recon.item(),
                      "fake_recon": fake_recon.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                last = ckpt_path if os.path.exists(ckpt_path) else "not written yet"
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {last}", 1)
            its = (iteration - start_iter) / (time.time() - start_time)
            charts = {"d_real": losses["real_recon"], "d_fake": losses["fake_recon"], "k_t": k_t.item(),  # D: L1 error
                      "convergence": m_global.item(), "learning_rate": scheduler.lr, "SPS": its * args.batch_size}
            for group, values in [("losses", losses), ("charts", charts)]:
                for k, v in values.items():
                    writer.add_scalar(f"{group}/{k}", v, iteration)
            print(f"iter {iteration}/{total_iters} | epoch {iteration // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | k_t {k_t.item():.4f} | M_global {m_global.item():.4f} | "
                  f"lr {scheduler.lr:.2e} | {its:.1f} it/s | ETA {(total_iters - iteration) / its:.0f}s", flush=True)
        if iteration % args.sample_interval == 0:
            write_samples()
        if args.eval_interval and iteration % args.eval_interval == 0:  # train_seconds excludes these writes
            if on_cuda:
                torch.cuda.synchronize()
            t0 = time.time()
            save_atomic(f"{run_dir}/samples_{iteration:07d}.npz", images=generate(2000, args.seed + 2),
                        iteration=iteration, train_seconds=train_seconds + t0 - start_time - eval_seconds)
            eval_seconds += time.time() - t0
        if at_checkpoint:
            save_atomic(ckpt_path, {
                "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
                "scheduler": dict(vars(scheduler)), "k_t": k_t, "iteration": iteration, "epoch": iteration // n_batches,
                "args": asdict(args), "train_seconds": train_seconds + time.time() - start_time - eval_seconds,
                "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if on_cuda else None},
            })
        if stopping:
            print(f"stopped by {signal.Signals(stopping).name}: checkpoint written to {ckpt_path}", file=sys.stderr)
            sys.exit(128 + stopping)

    # Final artefacts: the sample grid and samples.npz for the benchmark
    print(f"writing the final sample grid and {args.num_eval_samples} samples to {run_dir}", flush=True)
    write_samples()
    if args.num_eval_samples > 0:
        save_atomic(f"{run_dir}/samples.npz", images=generate(args.num_eval_samples, args.seed + 1))
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
