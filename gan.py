# Docs: docs/gan.md | Paper: Goodfellow et al. 2014, "Generative Adversarial Nets", https://arxiv.org/abs/1406.2661
"""Fully connected GAN on MNIST, Algorithm 1 of the paper.

Paper-to-code map
- Section 3, value function V(D, G) .......... `d_loss` (D maximises V) and `g_loss` below
- Section 3, "maximise log D(G(z))" ........... `--g-loss non-saturating` (default); minimax form: `--g-loss saturating`
- Algorithm 1, k discriminator steps ............ the `for _ in range(args.k_steps)` loop
- Section 5 / official pylearn2 code ........... `Generator` (ReLU MLP) and `Discriminator` (maxout MLP with dropout)
- official code's init, N(0, 1) noise, SGD (lr 0.1 / 1.000004 per step, momentum 0.5 -> 0.7), halved D loss ...
  `init_uniform`, `Generator.init_output_bias`, `--optimizer sgd` (default), `discriminator_loss`
- official code's D input dropout acts on pixels in [0, 1] (a dropped pixel is black) ... `Discriminator.forward`
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
    epochs: int = 100
    """passes over the training data"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 100
    """minibatch size m (Algorithm 1; the official code uses 100)"""
    lr: Optional[float] = None
    """learning rate of both networks (default: 0.1 with sgd, the official code's, decayed; 2e-4 with adam)"""
    beta1: float = 0.5
    """SGD's initial momentum (official code: 0.5, rising to 0.7), or Adam's beta1"""
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
    track: bool = False
    """if toggled, also log to Weights and Biases (sync_tensorboard; needs `pip install -r requirements-track.txt`)"""
    wandb_project_name: str = "cleangan"
    """the Weights and Biases project"""
    wandb_entity: Optional[str] = None
    """the Weights and Biases entity (team); None: your default"""

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    """the training set"""
    latent_dim: int = 100
    """dimension of the noise z (official code: 100)"""
    hidden_dim: int = 1200
    """units of each of G's two ReLU layers (official code: 1200)"""
    maxout_units: int = 240
    """units of each of D's two maxout layers (official code: 240)"""
    maxout_pieces: int = 5
    """linear pieces per maxout unit (official code: 5)"""
    k_steps: int = 1
    """k, discriminator steps per generator step (Algorithm 1; the paper uses k = 1)"""
    g_loss: Literal["non-saturating", "saturating"] = "non-saturating"
    """generator objective: maximise log D(G(z)) (Section 3) or minimise log(1 - D(G(z))) (Eq. 1)"""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """sgd with the official code's lr and momentum schedules, or adam (common practice: --lr 2e-4 --beta1 0.5)"""
    label_smoothing: float = 1.0
    """target for real images in D's loss (one-sided smoothing, e.g. 0.9; 1.0 = off)"""
    noise: Literal["normal", "uniform"] = "normal"
    """prior p_z: N(0, 1) (the official Generator's default) or U(-1, 1) (one mnist.yaml: U(-sqrt 3, sqrt 3))"""


def with_lr(args: Args) -> Args:
    """args with --lr set: when not given, the default of --optimizer (sgd: the official code's 0.1; adam: 2e-4)."""
    if args.lr is not None:
        return args
    return dataclasses.replace(args, lr=0.1 if args.optimizer == "sgd" else 2e-4)


def check_args(args: Args):
    check_common(with_lr(args), positive=["latent_dim", "hidden_dim", "maxout_units", "maxout_pieces", "k_steps"])
    if not 0 < args.label_smoothing <= 1:
        fail(f"--label-smoothing must lie in (0, 1] (got {args.label_smoothing})")


def load_images(args: Args) -> torch.Tensor:
    """The whole training set as one uint8 tensor (N, 1, 28, 28), read with torchvision's own loader.
    Deviation: all 60,000 MNIST images; the official mnist.yaml trains on the first 50,000 (docs item 8)."""
    return torchvision_images(args.dataset, args.data_dir, args.download)[0]


def sample_noise(n: int, dim: int, kind: str, device, generator=None) -> torch.Tensor:
    if kind == "uniform":
        return torch.rand(n, dim, device=device, generator=generator) * 2 - 1
    return torch.randn(n, dim, device=device, generator=generator)


def init_uniform(module: nn.Module, irange: float):
    """The official code's init: weights ~ U(-irange, irange), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z -> 1200 ReLU -> 1200 ReLU -> 784 tanh (official code, with tanh for its sigmoid as images lie in [-1, 1]).
    Deviation (docs item 6): tanh(a) = 2 sigmoid(2a) - 1, so against the official sigmoid net the output layer's init
    acts twice and its SGD steps four times as large; the official parametrisation collapsed at our CPU line."""

    def __init__(self, latent_dim: int, hidden_dim: int, img_shape=(1, 28, 28)):
        super().__init__()
        self.img_shape = img_shape
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, int(np.prod(img_shape))), nn.Tanh(),
        )
        init_uniform(self, 0.05)

    @torch.no_grad()
    def init_output_bias(self, images: torch.Tensor):
        """Start at the data's pixel marginals (official code: init_sigmoid_bias_from_marginals).
        tanh(b) = 2 sigmoid(2b) - 1, so the mean pixel p in [0, 1] needs b = logit(p) / 2."""
        p = (images.float().mean(0) / 255).flatten().clamp(1e-4, 1 - 1e-4)
        self.net[-2].bias.copy_(torch.logit(p) / 2)

    def forward(self, z):
        return self.net(z).view(z.shape[0], *self.img_shape)  # (B, 1, 28, 28)


class Maxout(nn.Module):
    """Maxout layer (Goodfellow et al. 2013): the max over `pieces` linear maps."""

    def __init__(self, d_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(d_in, units * pieces)

    def forward(self, x):
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


class Discriminator(nn.Module):
    """x -> dropout 0.2 -> maxout 240x5 -> dropout 0.5 -> maxout 240x5 -> dropout 0.5 -> logit (official code)."""

    def __init__(self, units: int, pieces: int, img_shape=(1, 28, 28)):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2),
            Maxout(int(np.prod(img_shape)), units, pieces), nn.Dropout(0.5),
            Maxout(units, units, pieces), nn.Dropout(0.5),
            nn.Linear(units, 1),  # a logit: the sigmoid lives in BCEWithLogits
        )
        init_uniform(self, 0.005)

    def forward(self, x):
        # The official code's D sees pixels in [0, 1], where input dropout zeroes a pixel to black, the background.
        # On our [-1, 1] images a zero would be mid-grey speckle on every real image, hiding G's speckle from D.
        return self.net((x + 1) / 2).view(-1)  # (B,)


def discriminator_loss(real_logits, fake_logits, real_target: float = 1.0):
    """-1/2 [log D(x) + log(1 - D(G(z)))] (Algorithm 1, ascended by D; the official code halves it, which matters
    for SGD's step size only), with optional one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def generator_loss(fake_logits, kind: str = "non-saturating"):
    """non-saturating: -log D(G(z)) (Section 3); saturating: log(1 - D(G(z))) (Eq. 1, Algorithm 1)."""
    if kind == "non-saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)


@torch.no_grad()
def generate_uint8(generator: nn.Module, n: int, args: Args, device, gen: torch.Generator) -> torch.Tensor:
    """n samples as uint8 (n, 1, 28, 28) on the CPU, from the noise stream `gen` (not the training RNG), in chunks of
    1000, G in eval mode (G has no dropout nor BatchNorm: the same maps), then back in train mode."""
    generator.eval()
    images = torch.cat([generator(sample_noise(min(1000, n - i), args.latent_dim, args.noise, device, gen))
                        for i in range(0, n, 1000)])
    generator.train()
    return to_uint8(images)


def train(args: Args):
    check_args(args)
    run = Run(args)  # the common block below: seeding, device, and on --resume the checkpoint's model args
    run.args = with_lr(run.args)  # after Run: an --lr left unset takes the checkpoint's on --resume
    args, device = run.args, run.device

    # Data (none for --eval-only): the whole training set on the device as one uint8 tensor
    data, n_batches = None, 1
    if not args.eval_only:
        data = load_images(args).to(device)  # (N, 1, 28, 28) uint8
        n_batches = len(data) // args.batch_size  # per epoch; the last incomplete batch is dropped
        if n_batches < args.k_steps:
            fail(f"--batch-size {args.batch_size} x --k-steps {args.k_steps} exceeds the {len(data)} training images")
    iters_per_epoch = n_batches // args.k_steps
    total_iters = min(args.epochs * iters_per_epoch, args.max_iters or args.epochs * iters_per_epoch)

    generator = Generator(args.latent_dim, args.hidden_dim).to(device)
    if data is not None:  # --eval-only: the checkpoint's bias
        generator.init_output_bias(data)
    discriminator = Discriminator(args.maxout_units, args.maxout_pieces).to(device)
    if args.optimizer == "adam":
        fused = device.type == "cuda"
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
        optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                       fused=fused)
    else:
        optimizer_g = torch.optim.SGD(generator.parameters(), lr=args.lr, momentum=args.beta1)
        optimizer_d = torch.optim.SGD(discriminator.parameters(), lr=args.lr, momentum=args.beta1)
    run.restore({"generator": generator, "discriminator": discriminator, "optimizer_g": optimizer_g,
                 "optimizer_d": optimizer_d})
    g_train, d_train = run.prepare(generator), run.prepare(discriminator)

    def grid() -> torch.Tensor:
        """A 10x10 grid from a fixed noise batch, G in eval mode so that no state changes."""
        gen = torch.Generator(device).manual_seed(args.seed)
        generator.eval()
        with torch.no_grad():
            images = generator(sample_noise(100, args.latent_dim, args.noise, device, gen))
        generator.train()
        return torchvision.utils.make_grid(images, nrow=10, normalize=True, value_range=(-1, 1))

    def samples(n: int, final: bool) -> dict:
        """n samples from their own noise stream (seed + 1 for samples.npz, seed + 2 for the eval files)."""
        gen = torch.Generator(device).manual_seed(args.seed + (1 if final else 2))
        return {"images": generate_uint8(generator, n, args, device, gen)}

    run.open(args.dataset, grid, samples)
    batches = run.batches(data, args.batch_size)

    # ALGO LOGIC: Algorithm 1 (minibatch stochastic gradient descent training of GANs). Deviation: D then G in turn,
    # where the official AdversaryCost2 steps both at once from one batch of samples (docs item 1)
    for iteration in run.loop(total_iters, n_batches):
        if args.optimizer == "sgd":  # official schedule: lr / 1.000004 per update, momentum beta1 -> 0.7 by epoch 250
            for group in optimizer_g.param_groups + optimizer_d.param_groups:
                group["lr"] = max(args.lr / 1.000004**(iteration - 1), 1e-6)
                group["momentum"] = args.beta1 + (0.7 - args.beta1) * min(1.0, run.step // n_batches / 249)
        for _ in range(args.k_steps):
            # (1) Update D: ascend log D(x) + log(1 - D(G(z))); G(z) is detached so G's graph is not built
            real = next(batches).float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1]
            with torch.no_grad():
                fake = g_train(sample_noise(len(real), args.latent_dim, args.noise, device))
            real_logits, fake_logits = d_train(real), d_train(fake)
            d_loss = discriminator_loss(real_logits, fake_logits, args.label_smoothing)
            optimizer_d.zero_grad(set_to_none=True)
            d_loss.backward()
            optimizer_d.step()

        # (2) Update G: descend -log D(G(z)) (non-saturating) or log(1 - D(G(z))) (saturating)
        fake_logits_g = d_train(g_train(sample_noise(args.batch_size, args.latent_dim, args.noise, device)))
        g_loss = generator_loss(fake_logits_g, args.g_loss)
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(generator.parameters()))  # no gradients for D's weights
        optimizer_g.step()

        run.log(iteration, {"losses/d_loss": d_loss, "losses/g_loss": g_loss,
                            "charts/learning_rate": optimizer_g.param_groups[0]["lr"],
                            "charts/d_real": torch.sigmoid(real_logits).mean(),
                            "charts/d_fake": torch.sigmoid(fake_logits).mean()})
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
