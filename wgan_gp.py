# Docs: docs/wgan_gp.md | Paper: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", https://arxiv.org/abs/1704.00028  # noqa: E501
"""WGAN with gradient penalty (WGAN-GP), Algorithm 1 of the paper, with the official code's MNIST model.

Paper-to-code map
- Eq. 3, L = E[D(x~)] - E[D(x)] + lambda E[(||grad D(x^)||_2 - 1)^2] ... `critic_loss` + `gradient_penalty`
- Algorithm 1, line 6: x^ = eps x + (1 - eps) x~, eps ~ U[0, 1] per sample .. `interpolate`
- Algorithm 1, lines 2-10: n_critic critic steps, Adam(1e-4, 0, 0.9) ...... the `for _ in range(args.n_critic)` loop
- Algorithm 1, lines 11-12: generator step, -E[D(G(z))] .................. `generator_loss`
- Section 4, no BatchNorm in the critic (layer norm as a drop-in) ....... `Critic(norm=...)`, `--critic-norm`
- Official code (igul222/improved_wgan_training, gan_mnist.py / gan_cifar.py) .. `Generator`, `Critic`, `init_tflib`
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


DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
            "cifar10": torchvision.datasets.CIFAR10, "svhn": torchvision.datasets.SVHN}


def fail(msg: str, code: int = 2):  # one line on stderr; 2: bad arguments, 1: missing data or divergence
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "dim", "n_critic", "lr"]:
        if not getattr(args, name) > 0:
            fail(f"--{name.replace('_', '-')} must be > 0 (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval", "in_memory_limit_mb", "num_workers", "lambda_gp"]:
        if not getattr(args, name) >= 0:
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
    """uint8 (N, 1, 28, 28) (MNIST: all 60k, gan_mnist.py 50k) or (N, 3, 32, 32); a folder over the limit streams."""
    if args.dataset == "folder":
        folder = FolderImages(args.data_dir, 32)
        if len(folder) * 3 * 32 * 32 > args.in_memory_limit_mb * 2 ** 20:
            return folder
        data = torch.empty(len(folder), 3, 32, 32, dtype=torch.uint8)
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
    return data.contiguous()


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
        x = x.float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1] (deviation: gan_mnist.py uses [0, 1])
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


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
        self.dim, self.img_size, bn = dim, img_size, img_size == 32  # BatchNorm in gan_cifar.py's G, not gan_mnist.py's
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


def gradient_penalty(critic, real, fake):
    """(||grad_x^ D(x^)||_2 - 1)^2 averaged over the batch (Eq. 3), eps ~ U[0, 1] per sample; create_graph=True lets
    the penalty's gradient reach the critic's weights. Returns (penalty, per-sample gradient norms, x^)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)  # (B, 1, 1, 1)
    x_hat = interpolate(real, fake, eps).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)  # (B,)
    return ((norms - 1) ** 2).mean(), norms, x_hat


def critic_loss(real_scores, fake_scores):
    """E[D(x~)] - E[D(x)], the WGAN part of the critic's loss (Eq. 3)."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss(fake_scores):
    """-E[D(G(z))] (Algorithm 1, line 12)."""
    return -fake_scores.mean()


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
    if n_batches < args.n_critic:
        fail(f"--batch-size {args.batch_size} x --n-critic {args.n_critic} exceeds the {len(data)} training images")
    total_iters = args.epochs * (n_batches // args.n_critic)
    total_iters = min(total_iters, args.max_iters or total_iters)
    data = data if isinstance(data, FolderImages) else data.to(device)  # (N, C, H, W) uint8
    batches = EpochBatches(data, args.batch_size, args.seed, device, args.num_workers)
    channels, img_size = data[0].shape[0], data[0].shape[-1]

    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format  # docs item 12
    generator = Generator(args.latent_dim, args.dim, channels, img_size).to(device, memory_format=memory_format)
    critic = Critic(args.dim, channels, args.critic_norm).to(device, memory_format=memory_format)
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
        """n uint8 samples (CPU) from their own noise, G in eval mode (deviation: tflib's BN uses batch stats)."""
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

    # ALGO LOGIC: Algorithm 1 (WGAN with gradient penalty): critic steps, then G (official loop: G, then critic steps)
    print(f"wgan_gp.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}"
          f"{', streaming the images from disk' if batches.streaming else ''}", flush=True)
    start_time, start_iter, start_step, eval_seconds = time.time(), iteration, step, 0.0
    while iteration < total_iters and not args.eval_only:
        for _ in range(args.n_critic):
            # (1) Update the critic on a fresh real batch; x~ = G(z) generated under no_grad (no wasted G backward)
            real = batches.get(step)
            step += 1
            with torch.no_grad():
                fake = g_train(torch.randn(len(real), args.latent_dim, device=device))
            real_scores, fake_scores = c_train(torch.cat([real, fake])).split(len(real))  # no BatchNorm: one pass
            gp, grad_norms, _ = gradient_penalty(critic, real, fake)  # uncompiled: torch.compile has no double backward
            c_loss = critic_loss(real_scores, fake_scores) + args.lambda_gp * gp  # Eq. 3, with the penalty at x^
            optimizer_c.zero_grad(set_to_none=True)
            c_loss.backward()
            optimizer_c.step()

        # (2) Update the generator: descend -E[D(G(z))] (Algorithm 1, line 12)
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
            losses = {"d_loss": c_loss.item(), "g_loss": g_loss.item(), "gradient_penalty": gp.item(),
                      "wasserstein_estimate": d_real - d_fake}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({losses}); the last good checkpoint is "
                     f"{ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}", 1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/grad_norm", grad_norms.mean().item(), iteration)
            writer.add_scalar("charts/d_real", d_real, iteration)
            writer.add_scalar("charts/d_fake", d_fake, iteration)
            elapsed = time.time() - start_time
            its = (iteration - start_iter) / elapsed
            writer.add_scalar("charts/SPS", (step - start_step) * args.batch_size / elapsed, iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {c_loss.item():.4f} | g_loss "
                  f"{losses['g_loss']:.4f} | gp {losses['gradient_penalty']:.4f} | W {d_real - d_fake:.4f} | "
                  f"{its:.2f} it/s | ETA {(total_iters - iteration) / its:.0f}s", flush=True)
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
