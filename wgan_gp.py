# Docs: docs/wgan_gp.md | Paper: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", https://arxiv.org/abs/1704.00028  # noqa: E501
"""WGAN with gradient penalty (WGAN-GP), Algorithm 1 of the paper, with the official code's MNIST model.

Paper-to-code map
- Eq. 3, L = E[D(x~)] - E[D(x)] + lambda E[(||grad D(x^)||_2 - 1)^2] ... `critic_loss` + `gradient_penalty`
- Algorithm 1, line 6: x^ = eps x + (1 - eps) x~, eps ~ U[0, 1] per sample .. `interpolate`
- Algorithm 1, lines 2-10: n_critic critic steps, Adam(1e-4, 0, 0.9) ...... the `for _ in range(args.n_critic)` loop
- Algorithm 1, lines 11-12: generator step, -E[D(G(z))] .................. `generator_loss`
- Section 4, no BatchNorm in the critic (layer norm as a drop-in) ....... `Critic(norm=...)`, `--critic-norm`
- Section 3 / Figure 1: weight clipping, gradient norms per layer .. `--constraint`, `clip_weights`, `layer_grad_norms`
- Official code (igul222/improved_wgan_training, gan_mnist.py / gan_cifar.py) .. `Generator`, `Critic`, `init_tflib`
"""
import atexit
import dataclasses
import datetime
import glob
import hashlib
import itertools
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.distributed as dist
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
    epochs: int = 834
    """passes over the data; MNIST: 834 x 240 = 200,160 generator iterations (official gan_mnist.py: ITERS 200000)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 50
    """minibatch size m (official gan_mnist.py: 50, gan_cifar.py: 64; Algorithm 1 gives no value)"""
    lr: float = 1e-4
    """learning rate alpha of both networks (Algorithm 1: 1e-4)"""
    beta1: float = 0.0
    """Adam beta1 (Algorithm 1: 0; official code: 0.5)"""
    beta2: float = 0.9
    """Adam beta2 (Algorithm 1: 0.9)"""
    log_interval: int = 100
    """log losses every this many generator updates"""
    sample_interval: int = 500
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
    track: bool = False
    """if toggled, also log to Weights and Biases (sync_tensorboard; needs `pip install -r requirements-track.txt`)"""
    wandb_project_name: str = "cleangan"
    """the Weights and Biases project"""
    wandb_entity: Optional[str] = None
    """the Weights and Biases entity (team); None: your default"""

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist", "cifar10", "svhn", "folder"] = "mnist"
    """the training set: MNIST-like at 28x28 (gan_mnist.py model), others at 32x32 (gan_cifar.py model)"""
    in_memory_limit_mb: int = 2048
    """folder: decoded uint8 size (MB) up to which the images are held on the device; larger sets stream from disk"""
    num_workers: int = 4
    """folder, streamed: DataLoader worker processes"""
    latent_dim: int = 128
    """dimension of the noise z ~ N(0, I) (official code: 128)"""
    dim: int = 64
    """DIM, the width of both networks (official gan_mnist.py: 64)"""
    n_critic: int = 5
    """critic steps per generator step (Algorithm 1: 5)"""
    lambda_gp: float = 10.0
    """lambda, penalty weight (Algorithm 1: 10; on [-1, 1] pixels, 10 acts like 5 on gan_mnist.py's [0, 1]: docs)"""
    critic_norm: Literal["none", "layernorm"] = "none"
    """normalisation in the critic: none (official code) or layer norm (Section 4's suggestion); never BatchNorm"""
    constraint: Literal["gradient-penalty", "weight-clipping"] = "gradient-penalty"
    """the critic's Lipschitz constraint: the penalty (Eq. 3) or WGAN's weight clipping (Section 3, Figure 1)"""
    clip_value: float = 0.01
    """c of weight-clipping: critic parameters clamped to [-c, c] after each step (Figure 1b: 0.1, 0.01, 0.001)"""


def check_args(args: Args):
    check_common(args, positive=["latent_dim", "dim", "n_critic"], non_negative=["in_memory_limit_mb", "num_workers"])
    if not args.lambda_gp >= 0:
        fail(f"--lambda-gp must be >= 0 (got {args.lambda_gp})")
    if not 0 < args.clip_value < float("inf"):
        fail(f"--clip-value must be a positive number (got {args.clip_value})")
    clipping, default = args.constraint == "weight-clipping", Args()
    if not clipping and args.clip_value != default.clip_value:
        fail("--clip-value applies to --constraint weight-clipping only")
    if clipping and args.lambda_gp != default.lambda_gp:
        fail("--lambda-gp applies to --constraint gradient-penalty only (weight clipping adds no penalty)")


def load_images(args: Args):
    """uint8 (N, 1, 28, 28) (MNIST: all 60k, gan_mnist.py 50k) or (N, 3, 32, 32); a folder over the limit streams
    (folder_images, image-data block: WGAN's official Scale + CenterCrop region; the WGAN-GP code reads no folder)."""
    if args.dataset != "folder":
        return torchvision_images(args.dataset, args.data_dir, args.download)[0]
    return folder_images(args.data_dir, 32, args.in_memory_limit_mb)


@torch.no_grad()
def init_tflib(m: nn.Module):
    """The official code's init (tflib): uniform with std sqrt(4 / (fan_in + fan_out)) for (transposed) convs, the
    stride-2 side's fan divided by 4; Glorot, std sqrt(2 / (fan_in + fan_out)), for linear layers; zero biases."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        if isinstance(m, nn.Linear):
            std = (2.0 / (m.in_features + m.out_features)) ** 0.5
        else:
            c_in, c_out, k = m.in_channels, m.out_channels, m.kernel_size[0] ** 2
            fan_in, fan_out = (c_in * k, c_out * k / 4) if isinstance(m, nn.Conv2d) else (c_in * k / 4, c_out * k)
            std = (4.0 / (fan_in + fan_out)) ** 0.5
        m.weight.uniform_(-std * 3 ** 0.5, std * 3 ** 0.5)
        nn.init.zeros_(m.bias)


def deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """5x5 transposed conv that doubles the side (tflib Deconv2D's 'SAME' output size; symmetric padding here)."""
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


class Generator(nn.Module):
    """Official code: z (128) -> Linear 4*4*4*DIM -> ReLU -> deconv 2*DIM (8x8) -> ReLU -> deconv DIM -> ReLU -> deconv
    to C -> tanh. 28x28 (gan_mnist.py): the 8x8 map is cropped to 7x7, no BatchNorm; 32x32 (gan_cifar.py): BatchNorm
    after the linear and the first two deconvs. tanh instead of MNIST's sigmoid, as images lie in [-1, 1]."""

    def __init__(self, latent_dim: int, dim: int, channels: int, img_size: int):
        super().__init__()
        self.dim = dim
        self.img_size = img_size
        bn = img_size == 32  # BatchNorm in gan_cifar.py's G, not gan_mnist.py's
        self.fc = nn.Sequential(nn.Linear(latent_dim, 4 * 4 * 4 * dim), nn.BatchNorm1d(4 * 4 * 4 * dim) if bn else
                                nn.Identity(), nn.ReLU())
        self.up1 = nn.Sequential(deconv(4 * dim, 2 * dim), nn.BatchNorm2d(2 * dim) if bn else nn.Identity(), nn.ReLU())
        self.up2 = nn.Sequential(deconv(2 * dim, dim), nn.BatchNorm2d(dim) if bn else nn.Identity(), nn.ReLU(),
                                 deconv(dim, channels), nn.Tanh())
        self.apply(init_tflib)

    def forward(self, z):
        h = self.up1(self.fc(z).view(-1, 4 * self.dim, 4, 4))  # (B, 2*DIM, 8, 8)
        if self.img_size == 28:
            h = h[:, :, :7, :7]  # gan_mnist.py: output[:, :, :7, :7]
        return self.up2(h)  # (B, C, 28, 28) or (B, C, 32, 32)


class Critic(nn.Module):
    """Official code: conv 5x5 s2 DIM -> LeakyReLU(0.2) -> conv 2*DIM -> LReLU -> conv 4*DIM -> LReLU -> linear -> 1.
    No BatchNorm (Section 4: the penalty is per sample); optional layer norm (GroupNorm with one group) where the
    WGAN version had BatchNorm. No sigmoid."""

    def __init__(self, dim: int, channels: int, norm: str = "none"):
        super().__init__()

        def block(c_in, c_out, normed):  # GroupNorm(1, C): layer norm over (C, H, W) with a per-channel affine
            norm_layer = [nn.GroupNorm(1, c_out)] if normed and norm == "layernorm" else []
            return [nn.Conv2d(c_in, c_out, 5, stride=2, padding=2), *norm_layer, nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(*block(channels, dim, False), *block(dim, 2 * dim, True),
                                 *block(2 * dim, 4 * dim, True), nn.Flatten(), nn.Linear(4 * 4 * 4 * dim, 1))
        self.apply(init_tflib)

    def forward(self, x):
        return self.net(x).view(-1)  # (B,)


def interpolate(real, fake, eps):
    """x^ = eps x + (1 - eps) x~ (Algorithm 1, line 6): points on the segments between real and generated samples."""
    return eps * real + (1 - eps) * fake


def gradient_penalty(critic, real, fake, create_graph: bool = True):
    """(||grad_x^ D(x^)||_2 - 1)^2 averaged over the batch (Eq. 3), eps ~ U[0, 1] per sample; create_graph=True lets
    the penalty's gradient reach the critic's weights (False: measured only). Returns (penalty, norms (B,), x^)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)  # (B, 1, 1, 1)
    x_hat = interpolate(real, fake, eps).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=create_graph)
    norms = grad.flatten(1).norm(2, dim=1)  # (B,)
    return ((norms - 1) ** 2).mean(), norms, x_hat


@torch.no_grad()
def clip_weights(critic: nn.Module, c: float):
    """w <- clip(w, -c, c) for every critic parameter (WGAN's Algorithm 1, line 7): Section 3's baseline."""
    for p in critic.parameters():
        p.clamp_(-c, c)


def layer_grad_norms(critic: Critic, real, fake) -> dict:
    """Figure 1b (Section 3.2): the norm of the gradient of the critic loss E[D(x~)] - E[D(x)] with respect to the
    activations entering each conv/linear layer, layer1 = the images ... layer4 = the last hidden layer. A separate
    pass (no weight gradients); under weight clipping it grows or decays exponentially going back."""
    h, inputs = torch.cat([real, fake]).requires_grad_(True), []
    for layer in critic.net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            inputs.append(h)
        h = layer(h)
    real_scores, fake_scores = h.view(-1).split(len(real))
    grads = torch.autograd.grad(critic_loss(real_scores, fake_scores), inputs)
    return {f"charts/critic_grad_norm/layer{i}": g.norm() for i, g in enumerate(grads, 1)}


def critic_loss(real_scores, fake_scores):
    """E[D(x~)] - E[D(x)], the WGAN part of the critic's loss (Eq. 3)."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss(fake_scores):
    """-E[D(G(z))] (Algorithm 1, line 12)."""
    return -fake_scores.mean()


def train(args: Args):
    check_args(args)
    run = Run(args)  # the common block below: seeding, device, and on --resume the checkpoint's model args
    args, device = run.args, run.device
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format  # docs item 12

    # Data (none for --eval-only): on the device as one uint8 tensor (no host copy kept), or a large folder streamed
    channels, img_size = (1, 28) if args.dataset in ("mnist", "fashion-mnist") else (3, 32)
    data, n_batches = None, args.n_critic
    if not args.eval_only:
        data = load_images(args)
        data = data.to(device) if isinstance(data, torch.Tensor) else data  # (N, C, H, W) uint8, or FolderImages
        n_batches = len(data) // args.batch_size  # per epoch; the last incomplete batch is dropped
        if n_batches < args.n_critic:
            fail(f"--batch-size {args.batch_size} x --n-critic {args.n_critic} exceeds the {len(data)} training images")
    total_iters = args.epochs * (n_batches // args.n_critic)
    total_iters = min(total_iters, args.max_iters or total_iters)

    generator = Generator(args.latent_dim, args.dim, channels, img_size).to(device, memory_format=memory_format)
    critic = Critic(args.dim, channels, args.critic_norm).to(device, memory_format=memory_format)
    fused = device.type == "cuda"
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
    optimizer_c = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
    run.restore({"generator": generator, "critic": critic, "optimizer_g": optimizer_g, "optimizer_c": optimizer_c})
    g_train, c_train = run.prepare(generator), run.prepare(critic)
    clipping = args.constraint == "weight-clipping"

    @torch.no_grad()
    def sample(n: int, seed: int) -> torch.Tensor:
        """n uint8 samples (CPU) from their own noise, G in eval mode (deviation: tflib's BN uses batch stats)."""
        gen = torch.Generator(device).manual_seed(seed)
        generator.eval()
        images = torch.cat([generator(torch.randn(min(1000, n - i), args.latent_dim, device=device, generator=gen))
                            for i in range(0, n, 1000)])
        generator.train()
        return to_uint8(images)

    def grid() -> torch.Tensor:
        """A 10x10 grid from the fixed noise batch (seed --seed)."""
        return torchvision.utils.make_grid(sample(100, args.seed), nrow=10).float() / 255

    def samples(n: int, final: bool) -> dict:
        """n samples from their own noise stream (seed + 1 for samples.npz, seed + 2 for the eval files)."""
        return {"images": sample(n, args.seed + (1 if final else 2))}

    run.open(args.dataset, grid, samples)
    batches = run.batches(data, args.batch_size, torch.stack, args.num_workers)  # FolderImages: stack the items
    if data is not None and not isinstance(data, torch.Tensor) and run.rank == 0:
        print(f"wgan_gp.py: streaming the {len(data)} images from disk (over --in-memory-limit-mb)", flush=True)

    # ALGO LOGIC: Algorithm 1 (WGAN with gradient penalty): critic steps, then G (official loop: G, then critic steps)
    for iteration in run.loop(total_iters, n_batches):
        for _ in range(args.n_critic):
            # (1) Update the critic on a fresh real batch; x~ = G(z) generated under no_grad (no wasted G backward)
            # uint8 [0, 255] -> float [-1, 1] (deviation: gan_mnist.py uses [0, 1])
            real = next(batches).float().div_(127.5).sub_(1.0).contiguous(memory_format=memory_format)
            with torch.no_grad():
                fake = g_train(torch.randn(len(real), args.latent_dim, device=device))
            real_scores, fake_scores = c_train(torch.cat([real, fake])).split(len(real))  # no BatchNorm: one pass
            # uncompiled: torch.compile has no double backward; weight clipping only measures the penalty
            gp, grad_norms, _ = gradient_penalty(critic, real, fake, create_graph=not clipping)
            c_loss = critic_loss(real_scores, fake_scores)
            if not clipping:
                c_loss = c_loss + args.lambda_gp * gp  # Eq. 3, with the penalty at x^
            optimizer_c.zero_grad(set_to_none=True)
            c_loss.backward()
            optimizer_c.step()
            if clipping:  # Section 3's baseline: WGAN's clipping after each critic step. Deviation: the official
                clip_weights(critic, args.clip_value)  # 'wgan' mode also has RMSProp(5e-5) and BatchNorm (docs)

        # (2) Update the generator: descend -E[D(G(z))] (Algorithm 1, line 12)
        g_loss = generator_loss(c_train(g_train(torch.randn(len(real), args.latent_dim, device=device))))
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(generator.parameters()))  # no gradients for the critic's weights
        optimizer_g.step()

        d_real, d_fake = real_scores.mean(), fake_scores.mean()
        by_layer = layer_grad_norms(critic, real, fake) if iteration % args.log_interval == 0 else {}  # Figure 1b
        run.log(iteration, {"losses/d_loss": c_loss, "losses/g_loss": g_loss, "losses/gradient_penalty": gp,
                            "losses/wasserstein_estimate": d_real - d_fake, "charts/grad_norm": grad_norms.mean(),
                            "charts/d_real": d_real, "charts/d_fake": d_fake, **by_layer})
    run.finish()


# ========== CleanGAN image-data block: the same text in the eight noise-to-image scripts, TRY NOT TO MODIFY ==========
def torchvision_images(name: str, data_dir: str, download: bool, train: bool = True):
    """mnist, fashion-mnist, cifar10 or svhn as uint8 images (N, C, H, W) and int64 labels. Missing, or a failed
    download: one line, and nothing this call created is left behind (not even --data-dir)."""
    cls = getattr(torchvision.datasets, {"fashion-mnist": "FashionMNIST"}.get(name, name.upper()))
    created = [] if os.path.isdir(data_dir) else [data_dir]
    before = set(os.listdir(data_dir)) if os.path.isdir(data_dir) else set()
    try:
        if name == "svhn":
            split = {"split": "train" if train else "test"}
        else:
            split = {"train": train}
        ds = cls(data_dir, download=download, **split)
    except (RuntimeError, OSError, ImportError) as e:
        if os.path.isdir(data_dir):
            created += [os.path.join(data_dir, entry) for entry in set(os.listdir(data_dir)) - before]
        for path in reversed(created):
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        folder = {"cifar10": "cifar-10-batches-py", "svhn": "train_32x32.mat"}.get(name, cls.__name__)
        fail(f"{name} {'download failed (offline?)' if download else 'not found'}: expected {data_dir}/{folder} "
             f"({type(e).__name__}); pass --data-dir holding it, or run once with --download while online", 1)
    images = torch.as_tensor(ds.data)
    if images.ndim == 3:  # MNIST-like (N, H, W); SVHN is already (N, 3, H, W)
        images = images.unsqueeze(1)
    elif images.shape[-1] == 3:  # CIFAR-10 (N, H, W, 3)
        images = images.permute(0, 3, 1, 2)
    labels = ds.labels if name == "svhn" else ds.targets
    return images.contiguous(), torch.as_tensor(labels, dtype=torch.long)

def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size): antialiased bilinear, rounded, in chunks; once, on load."""
    if images.shape[-2:] == (size, size):
        return images
    return torch.cat([F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
                      .round_().clamp_(0, 255).to(torch.uint8) for chunk in images.split(5000)])


class FolderImages(torch.utils.data.Dataset):
    """--dataset folder: every .jpg/.jpeg/.png under `root` (any tree: class subfolders or none), decoded,
    centre-cropped to a square and resized: uint8 (3, size, size). Read by index, so a large set can stream."""

    def __init__(self, root: str, size: int):
        self.size = size
        self.paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                            if p.lower().endswith((".jpg", ".jpeg", ".png")))

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = torchvision.io.decode_image(self.paths[i], mode=torchvision.io.ImageReadMode.RGB)  # (3, H, W)
        side = min(image.shape[-2:])
        top = (image.shape[-2] - side) // 2
        left = (image.shape[-1] - side) // 2
        return resize_images(image[None, :, top:top + side, left:left + side], self.size)[0]


def folder_images(root: str, size: int, in_memory_limit_mb: int):
    """The folder as one uint8 tensor (N, 3, size, size), filled one image at a time, when it fits
    --in-memory-limit-mb; above it the FolderImages themselves, streamed by run.batches (collate_fn=torch.stack)."""
    folder = FolderImages(root, size)
    if len(folder) == 0:
        fail(f"--dataset folder: no .jpg/.png images under {root}; pass --data-dir pointing at them", 1)
    if len(folder) * 3 * size ** 2 > in_memory_limit_mb * 2 ** 20:
        return folder
    images = torch.empty(len(folder), 3, size, size, dtype=torch.uint8)
    for i in range(len(folder)):
        images[i] = folder[i]
    return images
# ============================================= end of image-data block =============================================


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
