# Docs: docs/wgan_gp.md | Paper: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", https://arxiv.org/abs/1704.00028  # noqa: E501
"""WGAN with gradient penalty (WGAN-GP), Algorithm 1 of the paper, with the official code's MNIST model.

Paper-to-code map
- Eq. 3, L = E[D(x~)] - E[D(x)] + lambda E[(||grad D(x^)||_2 - 1)^2] ... `critic_loss` + `gradient_penalty`
- Algorithm 1, line 6: x^ = eps x + (1 - eps) x~, eps ~ U[0, 1] per sample .. `interpolate`
- Algorithm 1, lines 2-9: n_critic critic steps, Adam(1e-4, 0, 0.9) ....... the `for _ in range(args.n_critic)` loop
- Algorithm 1, lines 11-12: generator step, -E[D(G(z))] .................. `generator_loss`
- Section 4, no BatchNorm in the critic (layer norm as a drop-in) ....... `Critic(norm=...)`, `--critic-norm`
- Official code (igul222/improved_wgan_training, gan_mnist.py / gan_cifar.py) .. `Generator`, `Critic`, `init_tflib`
"""
import glob
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
    epochs: int = 200
    """passes over the training data (official MNIST code: 200k generator iterations = 833 epochs)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 50
    """minibatch size m (official MNIST code: 50; Algorithm 1: 64)"""
    lr: float = 1e-4
    """learning rate alpha of both networks (Algorithm 1: 1e-4)"""
    beta1: float = 0.0
    """Adam beta1 (Algorithm 1: 0)"""
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

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist", "cifar10", "svhn", "folder"] = "mnist"
    """the training set: MNIST-like at 28x28 (gan_mnist.py model), others at 32x32 (gan_cifar.py model)"""
    latent_dim: int = 128
    """dimension of the noise z ~ N(0, I) (official code: 128)"""
    dim: int = 16
    """DIM, the width of both networks (official code: 64; 16 keeps the CPU budget, see docs/wgan_gp.md)"""
    n_critic: int = 5
    """critic steps per generator step (Algorithm 1: 5)"""
    lambda_gp: float = 10.0
    """lambda, weight of the gradient penalty (Algorithm 1: 10)"""
    critic_norm: Literal["none", "layernorm"] = "none"
    """normalisation in the critic: none (official code) or layer norm (Section 4's suggestion); never BatchNorm"""


DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
            "cifar10": torchvision.datasets.CIFAR10, "svhn": torchvision.datasets.SVHN}


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "dim", "n_critic"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if not args.lr > 0:
        fail(f"--lr must be > 0 (got {args.lr})")
    if not args.lambda_gp >= 0:
        fail(f"--lambda-gp must be >= 0 (got {args.lambda_gp})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing, done once on load."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = [F.interpolate(images[i:i + 5000].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False) for i in range(0, len(images), 5000)]
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


def load_folder(folder: str, size: int) -> torch.Tensor:
    """Every .jpg/.png under `folder` (recursive), center-cropped to a square and resized: uint8 (N, 3, size, size)."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                   if p.lower().endswith((".jpg", ".jpeg", ".png")))
    if not paths:
        fail(f"folder: no .jpg/.png images under {folder}; pass --data-dir pointing at them", 1)
    images = []
    for p in paths:
        im = torchvision.io.decode_image(p, mode=torchvision.io.ImageReadMode.RGB)  # (3, H, W) uint8
        side = min(im.shape[1:])
        top, left = (im.shape[1] - side) // 2, (im.shape[2] - side) // 2
        images.append(resize(im[None, :, top:top + side, left:left + side], size))
    return torch.cat(images)


def load_images(args: Args) -> torch.Tensor:
    """The whole training set as one uint8 tensor: (N, 1, 28, 28) MNIST-like, (N, 3, 32, 32) otherwise."""
    if args.dataset == "folder":
        return load_folder(args.data_dir, 32)
    cls = DATASETS[args.dataset]
    where = {"cifar10": "cifar-10-batches-py", "svhn": "train_32x32.mat"}.get(args.dataset, f"{cls.__name__}/raw")
    created = [p for p in [os.path.join(args.data_dir, cls.__name__), os.path.join(args.data_dir, where),
                           os.path.join(args.data_dir, "cifar-10-python.tar.gz")] if not os.path.exists(p)]
    try:
        if args.dataset == "svhn":
            return torch.from_numpy(cls(args.data_dir, split="train", download=args.download).data).contiguous()
        if args.dataset == "cifar10":
            data = cls(args.data_dir, train=True, download=args.download).data
            return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
        return cls(args.data_dir, train=True, download=args.download).data.unsqueeze(1)
    except (RuntimeError, OSError, ImportError) as e:
        for p in created:  # leave nothing half-downloaded behind
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                os.remove(p)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {os.path.join(args.data_dir, where)} ({type(e).__name__}); pass "
             "--data-dir pointing at the folder that holds it, or run once with --download while online", 1)


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
        x = self.data[idx].float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1]
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


@torch.no_grad()
def init_tflib(m: nn.Module):
    """The official code's init (tflib): uniform with std sqrt(4 / (fan_in + fan_out)) for (transposed) convs, the
    stride-2 side's fan divided by 4; Glorot, std sqrt(2 / (fan_in + fan_out)), for linear layers; zero biases."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        if isinstance(m, nn.Linear):
            std = (2.0 / (m.in_features + m.out_features)) ** 0.5
        else:
            k = m.kernel_size[0] ** 2
            c_in, c_out = (m.in_channels, m.out_channels)
            fan_in, fan_out = (c_in * k, c_out * k / 4) if isinstance(m, nn.Conv2d) else (c_in * k / 4, c_out * k)
            std = (4.0 / (fan_in + fan_out)) ** 0.5
        m.weight.uniform_(-std * 3 ** 0.5, std * 3 ** 0.5)
        nn.init.zeros_(m.bias)


def deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """5x5 transposed conv that doubles the side ('SAME' padding as tflib's Deconv2D)."""
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


class Generator(nn.Module):
    """Official code: z (128) -> Linear 4*4*4*DIM -> ReLU -> deconv 2*DIM (8x8) -> ReLU -> deconv DIM -> ReLU -> deconv
    to C -> tanh. 28x28 (gan_mnist.py): the 8x8 map is cropped to 7x7, no BatchNorm; 32x32 (gan_cifar.py): BatchNorm
    after the linear and the first two deconvs. tanh instead of MNIST's sigmoid, as images lie in [-1, 1]."""

    def __init__(self, latent_dim: int, dim: int, channels: int, img_size: int):
        super().__init__()
        self.dim, self.img_size = dim, img_size
        bn = img_size == 32
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

        def block(c_in, c_out, normed):
            layers = [nn.Conv2d(c_in, c_out, 5, stride=2, padding=2)]
            if normed and norm == "layernorm":
                layers.append(nn.GroupNorm(1, c_out))  # layer norm over (C, H, W) with a per-channel affine
            return [*layers, nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(*block(channels, dim, False), *block(dim, 2 * dim, True),
                                 *block(2 * dim, 4 * dim, True), nn.Flatten(), nn.Linear(4 * 4 * 4 * dim, 1))
        self.apply(init_tflib)

    def forward(self, x):
        return self.net(x).view(-1)  # (B,)


def interpolate(real, fake, eps):
    """x^ = eps x + (1 - eps) x~ (Algorithm 1, line 6): points on the segments between real and generated samples."""
    return eps * real + (1 - eps) * fake


def gradient_penalty(critic, real, fake):
    """(||grad_x^ D(x^)||_2 - 1)^2 averaged over the batch (Eq. 3), eps ~ U[0, 1] drawn per sample.
    create_graph=True keeps the gradient differentiable, so the penalty's gradient reaches the critic's weights.
    Returns (penalty, per-sample gradient norms, x^)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)  # (B, 1, 1, 1)
    x_hat = interpolate(real, fake, eps).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)  # (B,)
    return ((norms - 1) ** 2).mean(), norms, x_hat


def critic_loss(real_scores, fake_scores):
    """E[D(x~)] - E[D(x)], the WGAN part of the critic's loss (Eq. 3)."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss(fake_scores):
    """-E[D(G(z))] (Algorithm 1, line 11)."""
    return -fake_scores.mean()


def save_atomic(obj, path: str):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    data = load_images(args).to(device)  # (N, C, H, W) uint8
    n_batches = len(data) // args.batch_size
    if n_batches < args.n_critic:
        fail(f"--batch-size {args.batch_size} x --n-critic {args.n_critic} exceeds the {len(data)} training images")
    iters_per_epoch = n_batches // args.n_critic
    total_iters = args.epochs * iters_per_epoch
    if args.max_iters:
        total_iters = min(total_iters, args.max_iters)

    batches = EpochBatches(data, args.batch_size, args.seed)
    channels, img_size = data.shape[1], data.shape[-1]
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    generator = Generator(args.latent_dim, args.dim, channels, img_size).to(device, memory_format=memory_format)
    critic = Critic(args.dim, channels, args.critic_norm).to(device, memory_format=memory_format)
    fused = device.type == "cuda"
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
    optimizer_c = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)

    iteration, step = 0, 0  # generator updates done, real minibatches consumed
    run_dir = None
    if args.resume:
        ckpt = torch.load(args.resume, map_location=device, weights_only=False)
        try:
            generator.load_state_dict(ckpt["generator"])
            critic.load_state_dict(ckpt["critic"])
            optimizer_g.load_state_dict(ckpt["optimizer_g"])
            optimizer_c.load_state_dict(ckpt["optimizer_c"])
        except (KeyError, RuntimeError, ValueError) as e:
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        iteration, step, run_dir = ckpt["iteration"], ckpt["step"], os.path.dirname(os.path.abspath(args.resume))
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    # the penalty's double backward runs through the uncompiled critic (torch.compile has no double backward)
    g_train, c_train = (torch.compile(generator), torch.compile(critic)) if args.compile else (generator, critic)

    # TRY NOT TO MODIFY: run folder and logging (a resumed run keeps writing into its own folder)
    if run_dir is None:
        run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"
    os.makedirs(f"{run_dir}/samples", exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                          asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"
    fixed_z = torch.randn(100, args.latent_dim, device=device, generator=torch.Generator(device).manual_seed(args.seed))

    def save_checkpoint():
        save_atomic({
            "generator": generator.state_dict(), "critic": critic.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_c": optimizer_c.state_dict(),
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        }, ckpt_path)

    @torch.no_grad()
    def write_samples():
        """A 10x10 grid from the fixed noise batch, G in eval mode so that no BatchNorm statistics change."""
        generator.eval()
        grid = torchvision.utils.make_grid(generator(fixed_z), nrow=10, normalize=True, value_range=(-1, 1))
        generator.train()
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    stop_requested = False

    def on_sigint(signum, frame):
        global stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_sigint)  # Ctrl-C: finish the iteration, write a checkpoint, exit

    # ALGO LOGIC: Algorithm 1 (WGAN with gradient penalty)
    start_time, start_iter = time.time(), iteration
    while iteration < total_iters and not args.eval_only:
        for _ in range(args.n_critic):
            # (1) Update the critic on a fresh real batch; x~ = G(z) generated under no_grad (no wasted G backward)
            real = batches.get(step)
            step += 1
            with torch.no_grad():
                fake = g_train(torch.randn(len(real), args.latent_dim, device=device))
            real_scores, fake_scores = c_train(torch.cat([real, fake])).split(len(real))  # no BatchNorm: one pass
            # Eq. 3 (WGAN-GP): E[D(x~)] - E[D(x)] + lambda * gradient penalty at x^
            gp, grad_norms, _ = gradient_penalty(critic, real, fake)
            wgan_loss = critic_loss(real_scores, fake_scores)
            c_loss = wgan_loss + args.lambda_gp * gp
            optimizer_c.zero_grad(set_to_none=True)
            c_loss.backward()
            optimizer_c.step()

        # (2) Update the generator: descend -E[D(G(z))] (Algorithm 1, line 11)
        g_loss = generator_loss(c_train(g_train(torch.randn(args.batch_size, args.latent_dim, device=device))))
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stop_requested
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": c_loss.item(), "g_loss": g_loss.item(), "gradient_penalty": gp.item(),
                      "wasserstein_estimate": -wgan_loss.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}",
                     1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/grad_norm", grad_norms.mean().item(), iteration)
            writer.add_scalar("charts/d_real", real_scores.mean().item(), iteration)
            writer.add_scalar("charts/d_fake", fake_scores.mean().item(), iteration)
            elapsed = time.time() - start_time
            its = (iteration - start_iter) / elapsed
            writer.add_scalar("charts/SPS", int(its * args.batch_size * args.n_critic), iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | gp {losses['gradient_penalty']:.4f} | W "
                  f"{losses['wasserstein_estimate']:.4f} | {its:.2f} it/s | ETA {(total_iters - iteration) / its:.0f}s",
                  flush=True)
        if iteration % args.sample_interval == 0:
            write_samples()
        if at_checkpoint:
            save_checkpoint()
        if stop_requested:
            print(f"interrupted: checkpoint written to {ckpt_path}", file=sys.stderr)
            sys.exit(130)

    # Final artefacts: grid and samples.npz for the benchmark
    write_samples()
    if args.num_eval_samples > 0:
        generator.eval()
        gen = torch.Generator(device).manual_seed(args.seed + 1)
        with torch.no_grad():
            images = torch.cat([
                generator(torch.randn(min(1000, args.num_eval_samples - i), args.latent_dim, device=device,
                                      generator=gen))
                for i in range(0, args.num_eval_samples, 1000)])
        images = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        with open(f"{run_dir}/samples.npz.tmp", "wb") as f:
            np.savez_compressed(f, images=images)
        os.replace(f"{run_dir}/samples.npz.tmp", f"{run_dir}/samples.npz")
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
