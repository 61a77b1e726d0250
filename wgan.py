# Docs: docs/wgan.md | Paper: Arjovsky et al. 2017, "Wasserstein GAN", https://arxiv.org/abs/1701.07875
"""Wasserstein GAN with weight clipping and a DCGAN critic/generator, Algorithm 1 of the paper.

Paper-to-code map
- Eq. 3, critic objective max_w E[f_w(x)] - E[f_w(g(z))] .... `critic_loss` (its negative is minimised)
- Algorithm 1, lines 2-8: n_critic critic steps ....... the `critic_steps(...)` loop, one fresh real batch each
- Algorithm 1, line 7: w <- clip(w, -c, c) ................. `clip_weights` after every critic step (docs item 2)
- Algorithm 1, lines 9-11: generator step ................. `generator_loss` = -E[f_w(g(z))], RMSProp(5e-5)
- Official code (martinarjovsky/WassersteinGAN) ........... `critic_steps` (100 critic steps for the first 25 and every
  500th generator iteration), `Critic`/`Generator` (its DCGAN_D / DCGAN_G), N(0, 0.02) init
- Figure 3, the Wasserstein estimate E[f(x)] - E[f(g(z))] ... `losses/wasserstein_estimate`
"""
import atexit
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
import torchvision
import torchvision.transforms.v2.functional as TF
import tyro
from torch.utils.data import DataLoader, Dataset
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
    eval_interval: int = 0
    """every this many generator updates write samples_{iteration:07d}.npz (quality over time; 0 = off)"""

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist", "cifar10", "svhn", "folder"] = "mnist"
    """the training set (folder: every .jpg/.png under --data-dir, center-cropped)"""
    in_memory_limit_mb: int = 2048
    """folder: decoded uint8 size (MB) up to which the images are held on the device; larger sets stream from disk"""
    num_workers: int = 4
    """folder, streamed: DataLoader worker processes (official code: --workers 2)"""
    img_size: Literal[32, 64] = 32
    """image side; MNIST-like sets are resized to it once on load (official code: 64, for LSUN and CIFAR-10)"""
    latent_dim: int = 100
    """dimension of the noise z ~ N(0, I) (official code: nz = 100)"""
    ngf: int = 64
    """generator width (official code: 64)"""
    ndf: int = 64
    """critic width (official code: 64)"""
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


def fail(msg: str, code: int = 2):  # one line on stderr; 2: bad arguments, 1: missing data or divergence
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "ngf", "ndf", "n_critic", "lr", "clip_value"]:
        if not getattr(args, name) > 0:
            fail(f"--{name.replace('_', '-')} must be > 0 (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval", "in_memory_limit_mb", "num_workers"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


class FolderImages(Dataset):
    """Every .jpg/.png under `folder` (recursive), each decoded, its shorter side resized to `size` and center-cropped
    on its own: uint8 (3, size, size). Read by index, so a set larger than memory can stream from disk."""

    def __init__(self, folder: str, size: int):
        self.size = size
        self.paths = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                            if p.lower().endswith((".jpg", ".jpeg", ".png")))
        if not self.paths:
            fail(f"folder: no .jpg/.png images under {folder}; pass --data-dir pointing at them", 1)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        im = torchvision.io.decode_image(self.paths[i], mode=torchvision.io.ImageReadMode.RGB)  # (3, H, W) uint8
        return TF.center_crop(TF.resize(im, self.size, antialias=True), self.size)  # official: Scale, CenterCrop


def load_images(args: Args):
    """The training set as uint8 (N, C, img_size, img_size), or a folder above --in-memory-limit-mb to stream."""
    if args.dataset == "folder":
        folder = FolderImages(args.data_dir, args.img_size)
        if len(folder) * 3 * args.img_size ** 2 > args.in_memory_limit_mb * 2 ** 20:
            return folder
        data = torch.empty(len(folder), 3, args.img_size, args.img_size, dtype=torch.uint8)
        for i in range(len(folder)):  # one image at a time into the preallocated tensor
            data[i] = folder[i]
        return data
    cls = DATASETS[args.dataset]
    where = {"cifar10": "cifar-10-batches-py", "svhn": "train_32x32.mat"}.get(args.dataset, f"{cls.__name__}/raw")
    created = [p for p in [args.data_dir, os.path.join(args.data_dir, cls.__name__), os.path.join(args.data_dir, where),
                           os.path.join(args.data_dir, "cifar-10-python.tar.gz")] if not os.path.exists(p)]
    split = {"split": "train"} if args.dataset == "svhn" else {"train": True}
    try:
        data = torch.as_tensor(cls(args.data_dir, **split, download=args.download).data)
    except (RuntimeError, OSError, ImportError) as e:
        for p in created:  # leave nothing half-downloaded behind, not even an empty --data-dir
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                os.remove(p)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {os.path.join(args.data_dir, where)} ({type(e).__name__}); pass "
             "--data-dir pointing at the folder that holds it, or run once with --download while online", 1)
    # MNIST-like (N, H, W), CIFAR-10 (N, H, W, C), SVHN (N, C, H, W)
    data = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2) if args.dataset == "cifar10" else data
    return TF.resize(data.contiguous(), [args.img_size] * 2, antialias=True)  # bilinear on uint8, once on load


def ignore_stop_signals(worker_id: int):  # DataLoader workers leave Ctrl-C and SIGTERM to the main process,
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (which stops them at exit: EpochBatches.get)


class EpochBatches:
    """Batch `step` of epoch e's permutation, seeded by (seed, e), the last incomplete batch dropped: a resumed run sees
    exactly the same batches. `data` is a uint8 tensor on the device, or a Dataset streamed from disk by ONE DataLoader
    for the run, whose batch sampler is infinite and starts at the first step asked for (the resumed one)."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device, workers: int = 0):
        self.data, self.batch_size, self.seed, self.device, self.workers = data, batch_size, seed, device, workers
        self.per_epoch, self.epoch, self.next_step = len(data) // batch_size, -1, None
        self.streaming = not isinstance(data, torch.Tensor)

    def order(self, step: int):
        while True:
            epoch, i = divmod(step, self.per_epoch)
            if epoch != self.epoch:
                gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                perm = torch.randperm(len(self.data), generator=gen)
                self.perm, self.epoch = perm if self.streaming else perm.to(self.device), epoch
            idx = self.perm[i * self.batch_size:(i + 1) * self.batch_size]
            yield idx.tolist() if self.streaming else idx
            step += 1

    def get(self, step: int) -> torch.Tensor:
        if step != self.next_step and not self.streaming:  # the first get (step 0 or the resumed one) starts the order
            self.batches = self.order(step)
        elif step != self.next_step:  # ONE DataLoader, with its own generator: the global RNG stays untouched
            self.batches = iter(DataLoader(self.data, batch_sampler=self.order(step), num_workers=self.workers,
                                           persistent_workers=self.workers > 0, pin_memory=self.device.type == "cuda",
                                           generator=torch.Generator().manual_seed(self.seed),
                                           worker_init_fn=ignore_stop_signals))
            atexit.register(vars(self).pop, "batches", None)  # stops the workers before multiprocessing's exit hook
        self.next_step = step + 1
        x = next(self.batches).to(self.device, non_blocking=True) if self.streaming else self.data[next(self.batches)]
        return x.float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)  # [0, 255] -> [-1, 1]


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
        width, size = ngf * img_size // 8, 4  # 4ngf at 4x4 for 32x32, 8ngf for 64x64; halved at every doubling
        layers = [nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
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


def save_atomic(path: str, obj=None, **arrays):  # torch.save(obj) or np.savez_compressed(arrays), never half-written
    with open(path + ".tmp", "wb") as f:
        if arrays:
            np.savez_compressed(f, **arrays)
        else:
            torch.save(obj, f)
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint onto the CPU, whatever device wrote it: RNG states must stay CPU ByteTensors, and
    load_state_dict moves weights and optimiser states to the run's device. An unreadable file ends in one line."""
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

    # Data: on the device as one uint8 tensor (no host copy kept), or a large folder streamed from disk
    data = load_images(args)
    n_batches = len(data) // args.batch_size
    total_iters = iterations_for_batches(args.epochs * n_batches, args.n_critic, args.critic_warmup)
    if total_iters == 0:
        fail(f"--epochs {args.epochs} x {n_batches} batches of --batch-size {args.batch_size} ({len(data)} images) "
             "are too few real batches for one generator iteration")
    total_iters = min(total_iters, args.max_iters or total_iters)
    data = data if isinstance(data, FolderImages) else data.to(device)  # (N, C, img_size, img_size) uint8
    batches, channels = EpochBatches(data, args.batch_size, args.seed, device, args.num_workers), data[0].shape[0]

    memory_format = torch.channels_last  # on every device: faster on CUDA and, measured, on the CPU (docs item 10)
    generator = Generator(args.latent_dim, args.ngf, channels, args.img_size).to(device, memory_format=memory_format)
    critic = Critic(args.ndf, channels, args.img_size).to(device, memory_format=memory_format)
    if args.optimizer == "rmsprop":
        optimizer_g = torch.optim.RMSprop(generator.parameters(), lr=args.lr)
        optimizer_c = torch.optim.RMSprop(critic.parameters(), lr=args.lr)
    else:
        fused = device.type == "cuda"
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
        optimizer_c = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)

    iteration, step, train_seconds = 0, 0, 0.0  # generator updates done, real minibatches consumed, training time
    run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        try:
            generator.load_state_dict(ckpt["generator"])
            critic.load_state_dict(ckpt["critic"])
            load_optimizer(optimizer_g, ckpt["optimizer_g"])
            load_optimizer(optimizer_c, ckpt["optimizer_c"])
            iteration, step, train_seconds = ckpt["iteration"], ckpt["step"], ckpt.get("train_seconds", 0.0)
            random.setstate(ckpt["rng"]["python"])
            np.random.set_state(ckpt["rng"]["numpy"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as e:  # another script's file, no dict
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        run_dir = os.path.dirname(os.path.abspath(args.resume))
    g_train, c_train = (torch.compile(generator), torch.compile(critic)) if args.compile else (generator, critic)

    # TRY NOT TO MODIFY: run folder and logging (a resumed run keeps writing into its own folder)
    os.makedirs(f"{run_dir}/samples", exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                          asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"

    def save_checkpoint():
        save_atomic(ckpt_path, {
            "generator": generator.state_dict(), "critic": critic.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_c": optimizer_c.state_dict(),
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "train_seconds": train_seconds + time.time() - start_time - eval_seconds,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        })

    @torch.no_grad()
    def sample(n: int, seed: int) -> torch.Tensor:
        """n uint8 samples (CPU) from their own noise, G in eval mode (deviation: the official code's is in train)."""
        gen = torch.Generator(device).manual_seed(seed)
        generator.eval()
        images = torch.cat([generator(torch.randn(min(1000, n - i), args.latent_dim, device=device, generator=gen))
                            for i in range(0, n, 1000)])
        generator.train()
        return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()

    def write_samples():  # a 10x10 grid from the fixed noise batch (seed --seed)
        grid = torchvision.utils.make_grid(sample(100, args.seed), nrow=10).float() / 255
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    def write_eval_samples():
        """samples_{iteration}.npz (quality over time): 2000 samples, training seconds so far (not counting these)."""
        global eval_seconds
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        save_atomic(f"{run_dir}/samples_{iteration:07d}.npz", images=sample(2000, args.seed + 2).numpy(),
                    iteration=iteration, train_seconds=train_seconds + t0 - start_time - eval_seconds)
        eval_seconds += time.time() - t0

    stop_signal = None

    def on_stop_signal(signum, frame):
        global stop_signal
        stop_signal = signum

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM (preemption, docker stop):
    signal.signal(signal.SIGTERM, on_stop_signal)  # finish the iteration, write a checkpoint, exit 128 + signal

    # ALGO LOGIC: Algorithm 1 (WGAN)
    print(f"wgan.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}"
          f"{', streaming the images from disk' if batches.streaming else ''}", flush=True)
    start_time, start_iter, start_step, eval_seconds = time.time(), iteration, step, 0.0
    while iteration < total_iters and not args.eval_only:
        for _ in range(critic_steps(iteration, args.n_critic, args.critic_warmup)):
            # (1) Update the critic: ascend E[f(x)] - E[f(g(z))] (Eq. 3) on a fresh batch, across epoch ends (docs)
            real = batches.get(step)
            step += 1
            with torch.no_grad():
                fake = g_train(torch.randn(len(real), args.latent_dim, device=device))
            real_scores, fake_scores = c_train(real), c_train(fake)
            c_loss = critic_loss(real_scores, fake_scores)
            optimizer_c.zero_grad(set_to_none=True)
            c_loss.backward()
            optimizer_c.step()
            clip_weights(critic, args.clip_value)  # Algorithm 1 line 7 (official: before each critic step; docs)

        # (2) Update the generator: descend -E[f(g(z))] (Algorithm 1, line 10)
        g_loss = generator_loss(c_train(g_train(torch.randn(args.batch_size, args.latent_dim, device=device))))
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(generator.parameters()))  # no gradients for the critic's weights
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        stopping = stop_signal  # read once: a signal that lands after this line stops the next iteration
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stopping
        if iteration % args.log_interval == 0 or at_checkpoint:
            d_real, d_fake = real_scores.mean().item(), fake_scores.mean().item()
            losses = {"d_loss": c_loss.item(), "g_loss": g_loss.item(), "wasserstein_estimate": d_real - d_fake}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({losses}); the last good checkpoint is "
                     f"{ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}", 1)
            for k, v in losses.items():  # wasserstein_estimate: Figure 3's E[f(x)] - E[f(g(z))]
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/d_real", d_real, iteration)
            writer.add_scalar("charts/d_fake", d_fake, iteration)
            elapsed = time.time() - start_time
            its = (iteration - start_iter) / elapsed
            writer.add_scalar("charts/SPS", (step - start_step) * args.batch_size / elapsed, iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | W {losses['wasserstein_estimate']:.4f} | {its:.2f} it/s | "
                  f"ETA {(total_iters - iteration) / its:.0f}s", flush=True)
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
        save_atomic(f"{run_dir}/samples.npz", images=sample(args.num_eval_samples, args.seed + 1).numpy())
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
