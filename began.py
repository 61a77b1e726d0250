# Docs: docs/began.md | Paper: Berthelot et al. 2017, "BEGAN: Boundary Equilibrium Generative Adversarial Networks", https://arxiv.org/abs/1703.10717  # noqa: E501
"""BEGAN: an autoencoder discriminator, a generator that matches its reconstruction-loss distribution, and a
proportional controller k_t that keeps E[L(G(z))] = gamma E[L(x)] (the equilibrium of Section 3.3).

Paper-to-code map
- Eq. 1 (eta = 1), L(v) = |v - D(v)| ............. `recon_error` (pixel-wise mean absolute error)
- Eq. 4, L_D = L(x) - k_t L(G(z_D)) ............... step (1) of the training loop
- Eq. 4, L_G = L(G(z_G)) ........................... step (2) of the training loop
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
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
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

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist", "cifar10", "svhn", "folder"] = "mnist"
    """the training set (folder: every .png/.jpg under --data-dir, centre-cropped)"""
    img_size: int = 32
    """image side: a power of two from 16 to 256, the encoder subsamples down to 8x8 (Section 4.1)"""
    h_dim: int = 64
    """N_h = N_z, the embedding and noise dimension (Section 4.1: 64)"""
    num_filters: int = 16
    """n, filters of the first conv; the encoder uses n, 2n, 3n, ... (paper: 128; 16 keeps a CPU run short)"""
    gamma: float = 0.5
    """gamma = E[L(G(z))] / E[L(x)], the diversity ratio (Section 3.3)"""
    lambda_k: float = 0.001
    """lambda_k, the proportional gain of the k_t controller (Eq. 4)"""
    lr_decay_window: int = 5000
    """halve the lr when the mean M_global over this many iterations stalls (0 = never)"""
    lr_decay_margin: float = 0.01
    """a window stalls unless its mean M_global is below best * (1 - margin)"""
    carry_steps: int = 16000
    """Section 3.5.1 vanishing residuals in D: the carry falls from 1 to 0 over this many iterations (0 = none)"""
    g_carry_steps: int = 16000
    """the same for G (the paper: 16000 for both; MNIST: 500, docs/began.md item 10)"""


DATASETS = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "FashionMNIST"),  # (class, path)
            "cifar10": ("CIFAR10", "cifar-10-batches-py"), "svhn": ("SVHN", "train_32x32.mat")}


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    rules = [(name, getattr(args, name) > 0, "be a positive integer") for name in ["epochs", "batch_size",
             "log_interval", "sample_interval", "checkpoint_interval", "h_dim", "num_filters"]]
    rules += [(name, getattr(args, name) >= 0, "be >= 0") for name in ["max_iters", "num_eval_samples",
              "lr_decay_window", "carry_steps", "g_carry_steps"]]
    rules += [
        ("lr", args.lr > 0, "lie in (0, inf)"), ("beta1", 0 <= args.beta1 < 1, "lie in [0, 1)"),
        ("beta2", 0 <= args.beta2 < 1, "lie in [0, 1)"), ("img_size", args.img_size in (16, 32, 64, 128, 256),
        "lie in {16, 32, 64, 128, 256}, e.g. 32 or 64"), ("gamma", 0 < args.gamma <= 1, "lie in (0, 1]"),
        ("lambda_k", args.lambda_k > 0, "lie in (0, inf)"), ("lr_decay_margin", 0 <= args.lr_decay_margin < 1,
        "lie in [0, 1)")]
    for name, ok, rule in rules:
        if not ok:
            fail(f"--{name.replace('_', '-')} must {rule} (got {getattr(args, name)})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing, once on load, in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    return torch.cat([F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True)
                      .round_().clamp_(0, 255).to(torch.uint8) for c in images.split(5000)])


def load_images(args: Args) -> torch.Tensor:
    """The whole training set as one uint8 tensor (N, C, img_size, img_size) (MNIST: 28 -> 32 once here)."""
    if args.dataset == "folder":
        files = sorted(f for ext in ("png", "jpg", "jpeg") for f in glob.glob(
            os.path.join(args.data_dir, "**", f"*.{ext}"), recursive=True))
        if not files:
            fail(f"--dataset folder: no .png/.jpg images under {args.data_dir}; pass --data-dir pointing at them", 1)
        images = [torchvision.io.decode_image(f, mode=torchvision.io.ImageReadMode.RGB) for f in files]
        crop = [torchvision.transforms.functional.center_crop(i, min(i.shape[-2:]))[None] for i in images]
        return torch.cat([resize(c, args.img_size) for c in crop])
    cls, path = DATASETS[args.dataset]
    cls, path = getattr(torchvision.datasets, cls), os.path.join(args.data_dir, path)
    leftovers = [path] + ([os.path.join(args.data_dir, "cifar-10-python.tar.gz")] if args.dataset == "cifar10" else [])
    leftovers = [p for p in leftovers if not os.path.exists(p)]  # what a failed download may leave behind
    try:
        split = {"split": "train"} if args.dataset == "svhn" else {"train": True}
        images = torch.as_tensor(cls(args.data_dir, download=args.download, **split).data)  # CIFAR-10: NHWC
        images = images.movedim(3, 1) if args.dataset == "cifar10" else images.view(len(images), -1, *images.shape[-2:])
    except (RuntimeError, OSError, ImportError) as e:
        for p in leftovers:  # leave nothing half-downloaded behind
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.path.isfile(p) and os.remove(p)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {path} ({type(e).__name__}); pass --data-dir pointing at a folder "
             "that holds it in torchvision's layout, or run once with --download while online", 1)
    return resize(images.contiguous(), args.img_size)


class EpochBatches:
    """Minibatches from a uint8 tensor on the device; epoch e is a permutation seeded by (seed, e), so the data
    order depends only on the number of batches consumed and a resumed run sees exactly the same batches."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed, self.epoch = data, batch_size, seed, -1
        self.per_epoch = len(data) // batch_size  # the last incomplete batch is dropped

    def get(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self.perm, self.epoch = torch.randperm(len(self.data), generator=gen).to(self.data.device), epoch
        idx = self.perm[i * self.batch_size:(i + 1) * self.batch_size]
        return self.data[idx].float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)  # [-1, 1]


def sample_noise(n: int, dim: int, device, generator=None) -> torch.Tensor:
    """z ~ U[-1, 1]^N_z (Section 3.5)."""
    return torch.rand(n, dim, device=device, generator=generator) * 2 - 1


class ConvELU(nn.Module):
    """conv3x3-ELU (Figure 1). Between same-sized layers, Section 3.5.1's vanishing residual: carry * x + (1 - carry)
    * ELU(conv(x)), carry falling from 1 to 0 (`set_carry`); with carry = 0 it is the plain conv-ELU of Figure 1."""

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
        layers, c_prev = [ConvELU(channels, n)], n
        for s in range(scales):
            c = n * (s + 1)  # filters grow linearly with depth (Section 3.5)
            layers += [ConvELU(c_prev, c), ConvELU(c, c)]
            if s < scales - 1:
                layers.append(ConvELU(c, c, stride=2))  # subsampling by stride 2
            c_prev = c
        super().__init__(*layers, nn.Flatten(), nn.Linear(8 * 8 * c_prev, h_dim))  # to h: no non-linearity


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
    """Section 3.5.1: for each (net, carry_steps), the vanishing residuals' carry falls linearly from 1 at iteration 0
    to 0 at `carry_steps` and stays 0 (the buffers start at 0; past `carry_steps` this does nothing)."""
    for net, carry_steps in (s for s in schedules if iteration <= s[1]):
        for m in (m for m in net.modules() if isinstance(m, ConvELU)):
            m.carry.fill_(1 - iteration / carry_steps if carry_steps else 0.0)


def init_weights(m: nn.Module):
    """Xavier-uniform weights and zero biases (the paper does not say; TF slim's defaults in the reference code)."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight), nn.init.zeros_(m.bias)


def recon_error(v, d_v):
    """Eq. 1 with eta = 1: L(v) = |v - D(v)|, the pixel-wise mean absolute error of the autoencoder."""
    return F.l1_loss(d_v, v)


def update_k(k, real_recon, fake_recon_g, gamma: float, lambda_k: float):
    """Eq. 4: k_{t+1} = k_t + lambda_k (gamma L(x) - L(G(z_G))), clipped to [0, 1]."""
    return torch.clamp(k + lambda_k * (gamma * real_recon - fake_recon_g), 0.0, 1.0)


def convergence_measure(real_recon, fake_recon_g, gamma: float):
    """Section 3.4.1: M_global = L(x) + |gamma L(x) - L(G(z_G))|."""
    return real_recon + torch.abs(gamma * real_recon - fake_recon_g)


class StallDecay:
    """Section 4.1: halve the lr when M_global stalls. Each window of `window` iterations ends with its mean M_global;
    the window stalls unless that mean is below best * (1 - margin), best being the lowest earlier window mean.
    The running sum stays on the device: one host sync per window. Its state, for checkpoints, is vars(self)."""

    def __init__(self, lr: float, window: int, margin: float):
        self.lr, self.window, self.margin, self.best, self.total, self.count = lr, window, margin, math.inf, 0.0, 0

    def step(self, m_global) -> bool:  # True when the lr was just halved
        self.total, self.count = self.total + m_global, self.count + 1
        if self.count < self.window or not self.window:
            return False
        mean, self.total, self.count = float(self.total) / self.count, 0.0, 0
        stalled = not mean < self.best * (1 - self.margin)
        self.best, self.lr = min(self.best, mean), self.lr / 2 if stalled else self.lr
        return stalled


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # Data: the whole training set on the device as one uint8 tensor; batches are normalised there
    data = load_images(args).to(device)  # (N, C, S, S) uint8
    n_batches = len(data) // args.batch_size
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {len(data)} training images")
    total_iters = args.epochs * n_batches
    total_iters = min(total_iters, args.max_iters or total_iters)  # --max-iters 0: no cap
    on_cuda = device.type == "cuda"  # fused Adam there; channels_last everywhere (on this CPU 5.9 vs 5.0 it/s)
    batches = EpochBatches(data, args.batch_size, args.seed)

    net_args = (data.shape[1], args.num_filters, args.h_dim, args.img_size)
    generator, discriminator = Generator(*net_args).to(device), Discriminator(*net_args).to(device)
    for net in (generator, discriminator):
        net.apply(init_weights).to(memory_format=torch.channels_last)
    # G starts at the data's mean colour, as Section 3.4 assumes ("generated data is close to 0"); not in the paper
    generator[-1].bias.data.copy_(data[:10000].float().mean((0, 2, 3)).div(127.5).sub(1))
    optimizer_g, optimizer_d = (torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=on_cuda) for net in (generator, discriminator))
    scheduler = StallDecay(args.lr, args.lr_decay_window, args.lr_decay_margin)
    k_t = torch.zeros((), device=device)  # k_0 = 0 (Section 3.4)

    iteration, step = 0, 0  # generator updates done, real minibatches consumed
    run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"  # or, resumed, its own
    if args.resume:
        ckpt = torch.load(args.resume, map_location=device, weights_only=False)
        try:
            for key, obj in [("generator", generator), ("discriminator", discriminator), ("optimizer_g", optimizer_g),
                             ("optimizer_d", optimizer_d)]:
                obj.load_state_dict(ckpt[key])
            vars(scheduler).update(ckpt["scheduler"])
            k_t = ckpt["k_t"].to(device)
        except (KeyError, RuntimeError, ValueError) as e:
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        iteration, step, run_dir = ckpt["iteration"], ckpt["step"], os.path.dirname(os.path.abspath(args.resume))
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    set_carry(iteration, (generator, args.g_carry_steps), (discriminator, args.carry_steps))
    g_train, d_train = (torch.compile(generator), torch.compile(discriminator)) if args.compile else (
        generator, discriminator)

    # TRY NOT TO MODIFY: run folder and logging (a resumed run keeps writing into its own folder)
    os.makedirs(f"{run_dir}/samples", exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                          asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"
    fixed_z = sample_noise(100, args.h_dim, device, torch.Generator(device).manual_seed(args.seed))
    fixed_real = data[:50].float().div(127.5).sub(1.0)  # 50 training images for the reconstruction grid

    def save_checkpoint():  # atomically: a temporary file, then os.replace
        torch.save({
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
            "scheduler": dict(vars(scheduler)), "k_t": k_t,
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        }, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    @torch.no_grad()
    def write_samples():
        """A 10x10 grid of G(fixed z) and one of 50 pairs (x, D(x)) of training images, in eval mode."""
        generator.eval(), discriminator.eval()
        grid = torchvision.utils.make_grid(generator(fixed_z), nrow=10, normalize=True, value_range=(-1, 1))
        pairs = torch.stack([fixed_real, discriminator(fixed_real)], 1).flatten(0, 1)  # x_0, D(x_0), x_1, ...
        recon = torchvision.utils.make_grid(pairs, nrow=10, normalize=True, value_range=(-1, 1))
        generator.train(), discriminator.train()
        for tag, suffix, image in [("samples", "", grid), ("reconstructions", "_recon", recon)]:
            torchvision.utils.save_image(image, f"{run_dir}/samples/{iteration:07d}{suffix}.png")
            writer.add_image(tag, image, iteration)

    stop_requested = False  # Ctrl-C: finish the iteration, write a checkpoint, exit
    signal.signal(signal.SIGINT, lambda signum, frame: globals().update(stop_requested=True))

    # ALGO LOGIC: Eq. 4 (BEGAN objective and the k_t proportional control)
    start_time, start_iter = time.time(), iteration
    while iteration < total_iters and not args.eval_only:
        # (1) Update D: descend L_D = L(x) - k_t L(G(z_D)); G(z_D) is generated under no_grad
        real, step = batches.get(step), step + 1
        with torch.no_grad():
            fake = g_train(sample_noise(len(real), args.h_dim, device))
        recon = d_train(torch.cat([real, fake]))  # one pass over both halves (no batch statistics in D)
        real_recon, fake_recon = recon_error(real, recon[:len(real)]), recon_error(fake, recon[len(real):])
        d_loss = real_recon - k_t * fake_recon
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # (2) Update G: descend L_G = L(G(z_G)) with fresh noise z_G; D's weights get no gradient here
        fake_g = g_train(sample_noise(args.batch_size, args.h_dim, device))
        g_loss = recon_error(fake_g, d_train(fake_g))
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
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stop_requested
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "real_recon": real_recon.item(),
                      "fake_recon": fake_recon.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                last = ckpt_path if os.path.exists(ckpt_path) else "not written yet"
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {last}", 1)
            charts = {"d_real": losses["real_recon"], "d_fake": losses["fake_recon"],  # D's output: its L1 error
                      "k_t": k_t.item(), "convergence": m_global.item(), "learning_rate": scheduler.lr}
            for group, values in [("losses", losses), ("charts", charts)]:
                for k, v in values.items():
                    writer.add_scalar(f"{group}/{k}", v, iteration)
            its = (iteration - start_iter) / (time.time() - start_time)
            writer.add_scalar("charts/SPS", int(its * args.batch_size), iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | k_t {k_t.item():.4f} | M_global {m_global.item():.4f} | "
                  f"lr {scheduler.lr:.2e} | {its:.1f} it/s | ETA {(total_iters - iteration) / its:.0f}s", flush=True)
        if iteration % args.sample_interval == 0:
            write_samples()
        if at_checkpoint:
            save_checkpoint()
        if stop_requested:
            print(f"interrupted: checkpoint written to {ckpt_path}", file=sys.stderr)
            sys.exit(130)

    # Final artefacts: grids and samples.npz for the benchmark
    write_samples()
    if args.num_eval_samples > 0:
        generator.eval()
        gen = torch.Generator(device).manual_seed(args.seed + 1)
        with torch.no_grad():
            images = torch.cat([generator(sample_noise(min(1000, args.num_eval_samples - i), args.h_dim, device, gen))
                                for i in range(0, args.num_eval_samples, 1000)])
        images = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        with open(f"{run_dir}/samples.npz.tmp", "wb") as f:
            np.savez_compressed(f, images=images)
        os.replace(f"{run_dir}/samples.npz.tmp", f"{run_dir}/samples.npz")
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
