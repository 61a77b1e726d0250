# Docs: docs/wgan.md | Paper: Arjovsky et al. 2017, "Wasserstein GAN", https://arxiv.org/abs/1701.07875
"""Wasserstein GAN with weight clipping and a DCGAN critic/generator, Algorithm 1 of the paper.

Paper-to-code map
- Eq. 3, critic objective max_w E[f_w(x)] - E[f_w(g(z))] .... `critic_loss` (its negative is minimised)
- Algorithm 1, lines 2-8: n_critic critic steps ....... the `critic_steps(...)` loop, one fresh real batch each
- Algorithm 1, line 7: w <- clip(w, -c, c) ................. `clip_weights` after every critic step
- Algorithm 1, lines 9-11: generator step ................. `generator_loss` = -E[f_w(g(z))], RMSProp(5e-5)
- Official code (martinarjovsky/WassersteinGAN) ........... `critic_steps` (100 critic steps for the first 25 and every
  500th generator iteration), `Critic`/`Generator` (its DCGAN_D / DCGAN_G), N(0, 0.02) init
- Figure 3, the Wasserstein estimate E[f(x)] - E[f(g(z))] ... `losses/wasserstein_estimate`
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
    epochs: int = 25
    """passes over the training data (official code: 25)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 64
    """minibatch size m (Algorithm 1: 64)"""
    lr: float = 5e-5
    """learning rate alpha of both networks (Algorithm 1: 5e-5)"""
    beta1: float = 0.5
    """Adam beta1 (only with `--optimizer adam`)"""
    beta2: float = 0.999
    """Adam beta2 (only with `--optimizer adam`)"""
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
    """the training set (folder: every .jpg/.png under --data-dir, center-cropped)"""
    img_size: Literal[32, 64] = 32
    """image side; MNIST-like sets are resized to it once on load"""
    latent_dim: int = 100
    """dimension of the noise z ~ N(0, I) (official code: nz = 100)"""
    ngf: int = 16
    """generator width (official code: 64; 16 keeps the CPU budget, see docs/wgan.md)"""
    ndf: int = 16
    """critic width (official code: 64; 16 keeps the CPU budget, see docs/wgan.md)"""
    n_critic: int = 5
    """critic steps per generator step (Algorithm 1: 5)"""
    clip_value: float = 0.01
    """c, critic weights are clipped to [-c, c] after every critic step (Algorithm 1: 0.01)"""
    critic_warmup: bool = True
    """100 critic steps for the first 25 and every 500th generator iteration (official code)"""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """RMSProp (Algorithm 1) or Adam with --beta1/--beta2 (Section 3: unstable with momentum)"""


DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
            "cifar10": torchvision.datasets.CIFAR10, "svhn": torchvision.datasets.SVHN}


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "ngf", "ndf", "n_critic"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if not args.lr > 0:
        fail(f"--lr must be > 0 (got {args.lr})")
    if not args.clip_value > 0:
        fail(f"--clip-value must be > 0 (got {args.clip_value})")
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
    """The whole training set as one uint8 tensor (N, C, img_size, img_size), read with torchvision's loaders."""
    if args.dataset == "folder":
        return load_folder(args.data_dir, args.img_size)
    cls = DATASETS[args.dataset]
    where = {"cifar10": "cifar-10-batches-py", "svhn": "train_32x32.mat"}.get(args.dataset, f"{cls.__name__}/raw")
    created = [p for p in [os.path.join(args.data_dir, cls.__name__), os.path.join(args.data_dir, where),
                           os.path.join(args.data_dir, "cifar-10-python.tar.gz")] if not os.path.exists(p)]
    try:
        if args.dataset == "svhn":
            data = torch.from_numpy(cls(args.data_dir, split="train", download=args.download).data)
        elif args.dataset == "cifar10":
            data = torch.from_numpy(cls(args.data_dir, train=True, download=args.download).data).permute(0, 3, 1, 2)
        else:
            data = cls(args.data_dir, train=True, download=args.download).data.unsqueeze(1)
    except (RuntimeError, OSError, ImportError) as e:
        for p in created:  # leave nothing half-downloaded behind
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                os.remove(p)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {os.path.join(args.data_dir, where)} ({type(e).__name__}); pass "
             "--data-dir pointing at the folder that holds it, or run once with --download while online", 1)
    return resize(data.contiguous(), args.img_size)


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
        return x.contiguous(memory_format=torch.channels_last)  # on the CPU too: ~20% faster here


def critic_steps(iteration: int, n_critic: int, warmup: bool) -> int:
    """Official code: 100 critic steps while gen_iterations < 25 or gen_iterations % 500 == 0, else n_critic."""
    return 100 if warmup and (iteration < 25 or iteration % 500 == 0) else n_critic


def iterations_for_batches(n_batches: int, n_critic: int, warmup: bool) -> int:
    """How many generator iterations fit into `n_batches` real batches under the critic schedule."""
    iteration = 0
    while n_batches >= critic_steps(iteration, n_critic, warmup):
        n_batches -= critic_steps(iteration, n_critic, warmup)
        iteration += 1
    return iteration


def init_weights(m: nn.Module):
    """Official code's weights_init: conv N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """DCGAN_G of the official code: z -> 4x4 -> ... -> img_size, transposed convs 4x4 with BatchNorm + ReLU, tanh."""

    def __init__(self, latent_dim: int, ngf: int, channels: int, img_size: int):
        super().__init__()
        width = ngf * img_size // 8  # 4ngf at 4x4 for 32x32, 8ngf for 64x64; halved at every doubling
        layers = [nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        size = 4
        while size < img_size // 2:  # state size: width x size x size
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                       nn.ReLU()]
            width, size = width // 2, size * 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z):
        return self.net(z.view(z.shape[0], -1, 1, 1))  # (B, C, img_size, img_size)


class Critic(nn.Module):
    """DCGAN_D of the official code: strided 4x4 convs, BatchNorm + LeakyReLU(0.2), a 4x4 conv to one score.
    No sigmoid: f_w(x) is a real-valued score, not a probability (Section 3)."""

    def __init__(self, ndf: int, channels: int, img_size: int):
        super().__init__()
        layers, width, size = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)], ndf, img_size // 2
        while size > 4:  # state size: width x size x size
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2)]
            width, size = width * 2, size // 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x):
        return self.net(x).view(-1)  # (B,)


def critic_loss(real_scores, fake_scores):
    """-(E[f(x)] - E[f(g(z))]): the critic ascends the Wasserstein estimate (Eq. 3, Algorithm 1 line 5)."""
    return -(real_scores.mean() - fake_scores.mean())


def generator_loss(fake_scores):
    """-E[f(g(z))] (Algorithm 1, line 10)."""
    return -fake_scores.mean()


@torch.no_grad()
def clip_weights(critic: nn.Module, c: float):
    """w <- clip(w, -c, c) for every critic parameter (Algorithm 1, line 7; the official code clips all of them)."""
    for p in critic.parameters():
        p.clamp_(-c, c)


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
    data = load_images(args).to(device)  # (N, C, img_size, img_size) uint8
    n_batches = len(data) // args.batch_size
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {len(data)} training images")
    total_iters = iterations_for_batches(args.epochs * n_batches, args.n_critic, args.critic_warmup)
    if total_iters == 0:
        fail(f"--epochs {args.epochs} x {n_batches} batches is too few real batches for one generator iteration")
    if args.max_iters:
        total_iters = min(total_iters, args.max_iters)

    batches = EpochBatches(data, args.batch_size, args.seed)
    channels = data.shape[1]
    memory_format = torch.channels_last  # CUDA and this CPU alike (4.2-4.8 -> 5.2-5.6 it/s without warm-up)
    generator = Generator(args.latent_dim, args.ngf, channels, args.img_size).to(device, memory_format=memory_format)
    critic = Critic(args.ndf, channels, args.img_size).to(device, memory_format=memory_format)
    if args.optimizer == "rmsprop":
        optimizer_g = torch.optim.RMSprop(generator.parameters(), lr=args.lr)
        optimizer_c = torch.optim.RMSprop(critic.parameters(), lr=args.lr)
    else:
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

    # ALGO LOGIC: Algorithm 1 (WGAN)
    start_time, start_iter, start_step = time.time(), iteration, step
    while iteration < total_iters and not args.eval_only:
        for _ in range(critic_steps(iteration, args.n_critic, args.critic_warmup)):
            # (1) Update the critic: ascend E[f(x)] - E[f(g(z))] (Eq. 3) on a fresh real batch; g(z) under no_grad
            real = batches.get(step)
            step += 1
            with torch.no_grad():
                fake = g_train(torch.randn(len(real), args.latent_dim, device=device))
            real_scores, fake_scores = c_train(real), c_train(fake)
            c_loss = critic_loss(real_scores, fake_scores)
            optimizer_c.zero_grad(set_to_none=True)
            c_loss.backward()
            optimizer_c.step()
            clip_weights(critic, args.clip_value)  # Algorithm 1, line 7

        # (2) Update the generator: descend -E[f(g(z))] (Algorithm 1, line 10)
        g_loss = generator_loss(c_train(g_train(torch.randn(args.batch_size, args.latent_dim, device=device))))
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stop_requested
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": c_loss.item(), "g_loss": g_loss.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}",
                     1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("losses/wasserstein_estimate", -losses["d_loss"], iteration)  # Figure 3
            writer.add_scalar("charts/d_real", real_scores.mean().item(), iteration)
            writer.add_scalar("charts/d_fake", fake_scores.mean().item(), iteration)
            elapsed = time.time() - start_time
            its = (iteration - start_iter) / elapsed
            writer.add_scalar("charts/SPS", int((step - start_step) * args.batch_size / elapsed), iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | W {-losses['d_loss']:.4f} | {its:.2f} it/s | "
                  f"ETA {(total_iters - iteration) / its:.0f}s", flush=True)
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
