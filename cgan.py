# Docs: docs/cgan.md | Paper: Mirza & Osindero 2014, "Conditional Generative Adversarial Nets", https://arxiv.org/abs/1411.1784
"""Conditional GAN on MNIST: G and D both see the class label y (Section 4.1 of the paper).

Paper-to-code map
- Eq. 2, V(D, G) with D(x|y) and G(z|y) ........ `discriminator_loss`, `generator_loss` (BCE with logits)
- Section 3.2, y fed to both nets as one-hot ... `one_hot`, `Generator.forward(z, y)`, `Discriminator.forward(x, y)`
- Section 4.1, G: z->200, y->1000, ->1200 ->784  `Generator` (ReLU, dropout 0.5; tanh output, images in [-1, 1])
- Section 4.1, D: x->240x5, y->50x5, ->240x4 ..  `Discriminator` (maxout, dropout 0.5; input dropout 0.2)
- no init in the paper: the GAN code's ranges; wider for the z and y layers ... `init_uniform`, `--z-init`
- Section 4.1, SGD, momentum 0.5->0.7, lr 0.1 /1.00004 per step  `--optimizer sgd`, `sgd_schedule`
- Section 4.1, "one sample per label" grids .... `write_samples` (one row per class, fixed noise per column)
"""
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
    """minibatch size (Section 4.1: 100)"""
    lr: Optional[float] = None
    """learning rate of both networks (default: 2e-4 with adam; 0.1 with sgd, the paper's, decayed)"""
    beta1: float = 0.5
    """Adam beta1 (initial momentum with `--optimizer sgd`, Section 4.1: 0.5)"""
    beta2: float = 0.999
    """Adam beta2 (the paper uses SGD)"""
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
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    """the training set"""
    latent_dim: int = 100
    """dimension of the noise z, drawn from U(-1, 1) (Section 4.1: 100, from U(0, 1); a deviation, docs item 2)"""
    z_hidden: int = 200
    """units of G's ReLU layer on z (Section 4.1: 200)"""
    y_hidden: int = 1000
    """units of G's ReLU layer on y (Section 4.1: 1000)"""
    z_init: float = 1.0
    """G's z -> hidden weights start at U(-z_init, z_init) (no value in the paper; GAN code: 0.05; docs item 8)"""
    joint_hidden: int = 1200
    """units of G's joint ReLU layer (Section 4.1: 1200)"""
    maxout_units: int = 240
    """units of D's maxout layer on x and of its joint maxout layer (Section 4.1: 240)"""
    y_maxout_units: int = 50
    """units of D's maxout layer on y (Section 4.1: 50)"""
    maxout_pieces: int = 5
    """pieces per maxout unit of D's layers on x and y (Section 4.1: 5)"""
    joint_pieces: int = 4
    """pieces per maxout unit of D's joint layer (Section 4.1: 4)"""
    dropout: float = 0.5
    """dropout probability in G and D (Section 4.1: 0.5)"""
    input_dropout: float = 0.2
    """dropout on D's image input (GAN paper's official code: 0.2; 0 = off)"""
    optimizer: Literal["adam", "sgd"] = "adam"
    """adam (practice; paper: sgd) or the paper's sgd with momentum beta1 rising to --momentum-final and lr decay"""
    momentum_final: float = 0.7
    """sgd: momentum reached after --momentum-saturate iterations (Section 4.1: 0.7)"""
    momentum_saturate: int = 150000
    """sgd: updates over which momentum rises linearly (250 of our 600-batch epochs; GAN code: epoch 250 x 500)"""
    lr_decay: float = 1.00004
    """sgd: the learning rate is divided by this factor every update (Section 4.1: 1.00004)"""
    min_lr: float = 1e-6
    """sgd: floor of the decayed learning rate (Section 4.1: .000001)"""


DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
N_CLASSES = 10


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "z_hidden", "y_hidden", "joint_hidden", "maxout_units", "y_maxout_units", "maxout_pieces",
                 "joint_pieces", "momentum_saturate"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if args.lr is None:
        args.lr = 2e-4 if args.optimizer == "adam" else 0.1
    if not (args.lr > 0 and args.min_lr > 0 and args.lr_decay >= 1):
        fail(f"--lr and --min-lr must be > 0 and --lr-decay >= 1 (got {args.lr}, {args.min_lr}, {args.lr_decay})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1 and 0 <= args.momentum_final < 1):
        fail(f"--beta1, --beta2 and --momentum-final must lie in [0, 1) (got {args.beta1}, {args.beta2}, "
             f"{args.momentum_final})")
    if not (0 <= args.dropout < 1 and 0 <= args.input_dropout < 1 and args.z_init > 0):
        fail(f"--dropout, --input-dropout in [0, 1) and --z-init > 0 (got {args.dropout}, {args.input_dropout}, "
             f"{args.z_init})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def load_data(args: Args):
    """The whole training set: uint8 images (N, 1, 28, 28) and int64 labels (N,), read with torchvision's loader."""
    cls = DATASETS[args.dataset]
    folder = os.path.join(args.data_dir, cls.__name__)
    existed = [p for p in (args.data_dir, folder) if os.path.exists(p)]
    try:
        ds = cls(args.data_dir, train=True, download=args.download)
        return ds.data.unsqueeze(1), ds.targets.long()
    except (RuntimeError, OSError) as e:
        for path in (folder, args.data_dir):  # leave nothing half-downloaded behind, not even an empty folder
            if path not in existed:
                shutil.rmtree(path, ignore_errors=True)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected the IDX files in {os.path.join(folder, 'raw')} "
             f"({type(e).__name__}); pass --data-dir pointing at a folder that holds {cls.__name__}/raw, "
             "or run once with --download while online", 1)


class EpochBatches:
    """(images, labels) minibatches from tensors on the device; epoch e is a permutation seeded by (seed, e), so the
    data order depends only on the number of batches consumed and a resumed run sees exactly the same batches."""

    def __init__(self, data: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
        self.data, self.labels, self.batch_size, self.seed, self.epoch = data, labels, batch_size, seed, -1
        self.per_epoch = len(data) // batch_size  # the last incomplete batch is dropped

    def get(self, step: int):
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self.perm, self.epoch = torch.randperm(len(self.data), generator=gen).to(self.data.device), epoch
        idx = self.perm[i * self.batch_size:(i + 1) * self.batch_size]
        return self.data[idx].float().div_(127.5).sub_(1.0), self.labels[idx]  # images in [-1, 1], labels int64


def sample_noise(n: int, dim: int, device, generator=None) -> torch.Tensor:
    """z ~ U(-1, 1). Deviation: Section 4.1 draws z "within the unit hypercube", U(0, 1) (docs item 2)."""
    return torch.rand(n, dim, device=device, generator=generator) * 2 - 1


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """y as a one-hot vector (Section 4.1), (B,) int64 -> (B, 10) float."""
    return F.one_hot(labels, N_CLASSES).float()


def init_uniform(module: nn.Module, irange: float):
    """The GAN code's (pylearn2) init: weights ~ U(-irange, irange), biases 0 (not the y layers: docs/cgan.md, 8)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z -> 200 ReLU, y -> 1000 ReLU, concatenated -> 1200 ReLU -> dropout -> 784 tanh (Section 4.1; sigmoid there)."""

    def __init__(self, latent_dim=100, z_hidden=200, y_hidden=1000, joint_hidden=1200, dropout=0.5, z_init=1.0,
                 img_shape=(1, 28, 28)):
        super().__init__()
        self.img_shape = img_shape
        self.z_net = nn.Sequential(nn.Linear(latent_dim, z_hidden), nn.ReLU())
        self.y_net = nn.Sequential(nn.Linear(N_CLASSES, y_hidden), nn.ReLU())
        self.joint = nn.Sequential(
            nn.Linear(z_hidden + y_hidden, joint_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(joint_hidden, int(np.prod(img_shape))), nn.Tanh(),
        )
        init_uniform(self, 0.05)
        self.y_net[0].reset_parameters()  # PyTorch's U(+-1/sqrt(10)): with U(+-0.05) on one-hot y, y is ignored
        nn.init.uniform_(self.z_net[0].weight, -z_init, z_init)  # at 0.05 z is ignored too: every row one style

    @torch.no_grad()
    def init_output_bias(self, images: torch.Tensor):
        """Start at the data's pixel marginals (GAN code); tanh(b) = 2 sigmoid(2b) - 1 so b = logit(mean) / 2."""
        p = (images.float().mean(0) / 255).flatten().clamp(1e-4, 1 - 1e-4)
        self.joint[-2].bias.copy_(torch.logit(p) / 2)

    def forward(self, z, y):  # z (B, latent_dim), y one-hot (B, 10)
        h = torch.cat([self.z_net(z), self.y_net(y)], dim=1)
        return self.joint(h).view(z.shape[0], *self.img_shape)  # (B, 1, 28, 28)


class Maxout(nn.Module):
    """Maxout layer (Goodfellow et al. 2013): the max over `pieces` linear maps."""

    def __init__(self, d_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(d_in, units * pieces)

    def forward(self, x):
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


class Discriminator(nn.Module):
    """x -> maxout 240x5 and y -> maxout 50x5, concatenated -> maxout 240x4 -> logit (Section 4.1), dropout 0.5
    before each layer but the first (input dropout 0.2 on x, as in the GAN code, but on [-1, 1]: docs item 3)."""

    def __init__(self, units=240, y_units=50, pieces=5, joint_pieces=4, dropout=0.5, input_dropout=0.2, x_dim=784):
        super().__init__()
        self.x_net = nn.Sequential(nn.Flatten(), nn.Dropout(input_dropout), Maxout(x_dim, units, pieces))
        self.y_net = Maxout(N_CLASSES, y_units, pieces)
        self.joint = nn.Sequential(
            nn.Dropout(dropout), Maxout(units + y_units, units, joint_pieces),
            nn.Dropout(dropout), nn.Linear(units, 1),  # a logit: the sigmoid lives in BCEWithLogits
        )
        init_uniform(self, 0.005)
        self.y_net.linear.reset_parameters()  # PyTorch's U(+-1/sqrt(10)): U(+-0.005) left D blind to y

    def forward(self, x, y):  # x (B, 1, 28, 28), y one-hot (B, 10)
        return self.joint(torch.cat([self.x_net(x), self.y_net(y)], dim=1)).view(-1)  # (B,)


def discriminator_loss(real_logits, fake_logits):
    """-1/2 [log D(x|y) + log(1 - D(G(z|y)|y))] (Eq. 2, ascended by D; halved as the GAN code), BCE on logits."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def generator_loss(fake_logits):
    """-log D(G(z|y)|y): the non-saturating form of Eq. 2 (GAN paper, Section 3)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def sgd_schedule(args: Args, iteration: int):
    """(lr, momentum) of the paper's SGD after `iteration` updates: lr / decay^t floored at min_lr; momentum rising
    linearly from beta1 to momentum_final (Section 4.1). A function of the iteration only, so resume is exact."""
    lr = max(args.lr / args.lr_decay ** iteration, args.min_lr)
    momentum = args.beta1 + (args.momentum_final - args.beta1) * min(1.0, iteration / args.momentum_saturate)
    return lr, momentum


def save_atomic(path: str, obj=None, **arrays):
    """torch.save(obj), or np.savez_compressed(arrays), to a temporary file, then rename: never half a file."""
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

    # Data: the whole training set on the device as one uint8 tensor; batches are normalised there
    data, labels = (t.to(device) for t in load_data(args))  # (N, 1, 28, 28) uint8, (N,) int64
    n_batches = len(data) // args.batch_size
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {len(data)} training images")
    total_iters = min(args.epochs * n_batches, args.max_iters or sys.maxsize)

    batches = EpochBatches(data, labels, args.batch_size, args.seed)
    generator = Generator(args.latent_dim, args.z_hidden, args.y_hidden, args.joint_hidden, args.dropout,
                          args.z_init).to(device)
    generator.init_output_bias(data)
    discriminator = Discriminator(args.maxout_units, args.y_maxout_units, args.maxout_pieces, args.joint_pieces,
                                  args.dropout, args.input_dropout).to(device)

    def make_optimizer(params):  # fused Adam on CUDA
        if args.optimizer == "adam":
            return torch.optim.Adam(params, lr=args.lr, betas=(args.beta1, args.beta2), fused=device.type == "cuda")
        return torch.optim.SGD(params, lr=args.lr, momentum=args.beta1)
    optimizer_g, optimizer_d = make_optimizer(generator.parameters()), make_optimizer(discriminator.parameters())

    iteration, step, train_seconds = 0, 0, 0.0  # generator updates done, real minibatches consumed, training time
    run_dir = None
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
    if run_dir is None:
        run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"
    os.makedirs(f"{run_dir}/samples", exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                          asdict(args).items()))
    ckpt_path = f"{run_dir}/checkpoint.pt"
    fixed_z = sample_noise(N_CLASSES, args.latent_dim, device, torch.Generator(device).manual_seed(args.seed))
    fixed_z = fixed_z.repeat(N_CLASSES, 1)  # (100, latent_dim)
    fixed_y = one_hot(torch.arange(N_CLASSES, device=device).repeat_interleave(N_CLASSES))  # row i: class i

    def save_checkpoint():
        save_atomic(ckpt_path, {
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "train_seconds": train_seconds + time.time() - start_time - eval_seconds,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        })

    @torch.no_grad()
    def write_samples():
        """10x10 grid: row i = class i, column j = the fixed z_j; G in eval mode (no dropout, no state change)."""
        generator.eval()
        grid = torchvision.utils.make_grid(generator(fixed_z, fixed_y), nrow=10, normalize=True, value_range=(-1, 1))
        generator.train()
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    @torch.no_grad()
    def generate(n: int, gen: torch.Generator):
        """n uint8 samples and their labels 0, 1, ..., 9, 0, ...; G in eval mode, z from `gen`, not the training RNG."""
        generator.eval()
        ys = torch.arange(n, device=device) % N_CLASSES  # balanced classes
        out = torch.cat([generator(sample_noise(len(y), args.latent_dim, device, gen), one_hot(y))
                         for y in ys.split(1000)])
        generator.train()
        return ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy(), ys.cpu().numpy()

    def write_eval_samples():
        """samples_{iteration}.npz (quality over time): 2000 samples and the training seconds so far (not these)."""
        global eval_seconds
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        images, ys = generate(2000, torch.Generator(device).manual_seed(args.seed + 2))
        save_atomic(f"{run_dir}/samples_{iteration:07d}.npz", images=images, labels=ys, iteration=iteration,
                    train_seconds=train_seconds + t0 - start_time - eval_seconds)
        eval_seconds += time.time() - t0

    stop_signal = None

    def on_stop_signal(signum, frame):
        global stop_signal
        stop_signal = signum

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM (preemption, docker stop):
    signal.signal(signal.SIGTERM, on_stop_signal)  # finish the iteration, write a checkpoint, exit 128 + signal

    # ALGO LOGIC: Algorithm 1 of the GAN paper with both players conditioned on y (Eq. 2)
    print(f"cgan.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds = time.time(), iteration, 0.0
    while iteration < total_iters and not args.eval_only:
        if args.optimizer == "sgd":  # Section 4.1: exponential lr decay, momentum 0.5 -> 0.7
            for group in optimizer_g.param_groups + optimizer_d.param_groups:
                group["lr"], group["momentum"] = sgd_schedule(args, iteration)

        # (1) Update D: ascend log D(x|y) + log(1 - D(G(z|y)|y)); fakes use the real batch's labels, G(z|y) detached
        real, y = batches.get(step)
        step, y = step + 1, one_hot(y)
        with torch.no_grad():
            fake = g_train(sample_noise(len(real), args.latent_dim, device), y)
        real_logits, fake_logits = d_train(real, y), d_train(fake, y)
        d_loss = discriminator_loss(real_logits, fake_logits)
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # (2) Update G: descend -log D(G(z|y)|y), labels y from the data's label distribution (this batch's)
        fake_logits_g = d_train(g_train(sample_noise(len(real), args.latent_dim, device), y), y)
        g_loss = generator_loss(fake_logits_g)
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(generator.parameters()))  # no gradients for D's weights
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        stopping = stop_signal  # read once: a signal that lands after this line stops the next iteration
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stopping
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}",
                     1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/d_real", torch.sigmoid(real_logits).mean().item(), iteration)
            writer.add_scalar("charts/d_fake", torch.sigmoid(fake_logits).mean().item(), iteration)
            if args.optimizer == "sgd":
                writer.add_scalar("charts/learning_rate", optimizer_d.param_groups[0]["lr"], iteration)
                writer.add_scalar("charts/momentum", optimizer_d.param_groups[0]["momentum"], iteration)
            its = (iteration - start_iter) / (time.time() - start_time)
            writer.add_scalar("charts/SPS", its * args.batch_size, iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | {its:.1f} it/s | ETA {(total_iters - iteration) / its:.0f}s",
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

    # Final artefacts: grid and samples.npz (class-balanced labels) for the benchmark
    print(f"writing the final sample grid and {args.num_eval_samples} samples to {run_dir}", flush=True)
    write_samples()
    if args.num_eval_samples > 0:
        images, eval_labels = generate(args.num_eval_samples, torch.Generator(device).manual_seed(args.seed + 1))
        save_atomic(f"{run_dir}/samples.npz", images=images, labels=eval_labels)
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
