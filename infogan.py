# Docs: docs/infogan.md | Paper: Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by Information Maximizing Generative Adversarial Nets", https://arxiv.org/abs/1606.03657  # noqa: E501
"""InfoGAN on MNIST: a GAN whose generator input holds codes c that an auxiliary network Q must recover from G(z, c).

Paper-to-code map
- Eq. 1, the GAN value function V(D, G) ............ `discriminator_loss`, `generator_loss` (non-saturating)
- Eq. 5, L_I(G, Q) = E[log Q(c|x)] + H(c) .......... `info_loss` (-L_I + H(c): cross-entropy and Gaussian NLL;
  c2, c3 as Gaussians of std 1 with lambda 1, the official code's, by default)
- Eq. 6, min_{G,Q} max_D V(D, G) - lambda L_I ....... the D step (D and Q) and the G step (G) of the training loop
- Section 6 / Appendix C.1, latent: 62 noise + c1 ~ Cat(K=10) + c2, c3 ~ U(-1, 1) ... `sample_latent`
- Appendix C.1 Table 1, MNIST networks ............. `Generator`, `DiscriminatorQ` (D and Q share the body)
- Section 6, Q(c|x): softmax for c1, factored Gaussian for c2, c3  `DiscriminatorQ.forward` (logits, mean, log-var)
- Section 7.2 / Figure 2, code traversals ......... `sweep_latents`, `write_samples` (c2 and c3 swept from -2 to 2)
- Section 7.2, c1 as a classifier of real digits ... `c1_test_error` (codes matched one-to-one to the test labels)
"""
import functools
import math
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
    epochs: int = 11
    """passes over the training data (official code: 50 x 100 updates of 128 images, about 11 passes)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 128
    """minibatch size (official code: 128)"""
    lr: float = 2e-4
    """learning rate of D and Q (Appendix C: 2e-4; official code: Q's layers are D's variables, trained at 2e-4)"""
    beta1: float = 0.5
    """Adam beta1 (official code: 0.5)"""
    beta2: float = 0.999
    """Adam beta2"""
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
    """with --resume: no training, only write the sample grids, samples.npz and c1_test_error"""
    compile: bool = False
    """if toggled, `torch.compile` the networks"""
    eval_interval: int = 0
    """every this many generator updates write samples_{iteration:07d}.npz (quality over time; 0 = off)"""

    # Algorithm specific arguments
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    """the training set"""
    lr_g: float = 1e-3
    """learning rate of G (Appendix C: 1e-3)"""
    noise_dim: int = 62
    """dimension of the incompressible noise z ~ U(-1, 1) (Appendix C.1: 62)"""
    cat_dim: int = 10
    """K of the categorical code c1 ~ Cat(K, p=1/K) (Section 7.2: 10)"""
    cont_dim: int = 2
    """number of continuous codes c2, c3, ... ~ U(-1, 1) (Section 7.2: 2)"""
    lambda_cat: float = 1.0
    """lambda of L_I for the categorical code (Section 6 and official code: 1)"""
    lambda_cont: float = 1.0
    """lambda of L_I for the continuous codes (official MNIST code: 1, with fixed sigma; Section 6: smaller)"""
    continuous_loss: Literal["fixed-sigma", "learnt-sigma"] = "fixed-sigma"
    """Q(c_i|x) for continuous codes: Gaussian of std 1 (official code) or factored Gaussian with learnt variance"""
    num_filters: int = 64
    """channels of D's first conv and G's last hidden upconv; the other convs have twice as many (Table 1: 64)"""
    fc_dim: int = 1024
    """units of the fully connected layers of G and D (Table 1: 1024)"""
    q_dim: int = 128
    """units of Q's hidden layer (Table 1: 128)"""
    leak: float = 0.1
    """negative slope of D's leaky ReLUs (0.1; the official code's default is 0.01)"""


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "noise_dim",
                 "cat_dim", "cont_dim", "num_filters", "fc_dim", "q_dim", "lr", "lr_g"]:
        if not getattr(args, name) > 0:
            fail(f"--{name.replace('_', '-')} must be > 0 (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval", "lambda_cat", "lambda_cont", "leak"]:
        if not getattr(args, name) >= 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def load_data(args: Args):
    """Training images, test images (uint8 (N, 1, 28, 28)) and test labels (int64 (N,)), by torchvision's loader."""
    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}[args.dataset]
    folder = os.path.join(args.data_dir, cls.__name__)
    existed = [p for p in (args.data_dir, folder) if os.path.exists(p)]
    try:
        train, test = (cls(args.data_dir, train=split, download=args.download) for split in (True, False))
        return train.data.unsqueeze(1), test.data.unsqueeze(1), test.targets.long()
    except (RuntimeError, OSError) as e:
        for path in (folder, args.data_dir):  # leave nothing half-downloaded behind, not even an empty folder
            if path not in existed:
                shutil.rmtree(path, ignore_errors=True)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected the IDX files in {os.path.join(folder, 'raw')} "
             f"({type(e).__name__}); pass --data-dir pointing at a folder that holds {cls.__name__}/raw, "
             "or run once with --download while online", 1)


@functools.lru_cache(maxsize=1)
def epoch_order(n: int, seed: int, epoch: int, device) -> torch.Tensor:
    """Epoch e's order of the n training images, a permutation seeded by (seed, e): a resumed run sees the same."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).to(device)


def sample_latent(n: int, noise_dim: int, cat_dim: int, cont_dim: int, device, generator=None, codes=None):
    """G's input [z, one_hot(c1), c2, c3] with z, c2, c3 ~ U(-1, 1), c1 ~ Cat(K, 1/K) or `codes` (official priors)."""
    z = torch.rand(n, noise_dim, device=device, generator=generator) * 2 - 1
    if codes is None:
        codes = torch.randint(cat_dim, (n,), device=device, generator=generator)
    cont = torch.rand(n, cont_dim, device=device, generator=generator) * 2 - 1
    return torch.cat([z, F.one_hot(codes, cat_dim).float(), cont], dim=1), codes, cont


def sweep_latents(z_rows: torch.Tensor, cat_dim: int, cont_dim: int, index: int, values: torch.Tensor):
    """Figure 2: row r has c1 = r and noise z_rows[r], column j code `index` = values[j], other codes 0 (row-major)."""
    rows, cols = len(z_rows), len(values)
    cont = torch.zeros(rows * cols, cont_dim, device=z_rows.device)
    cont[:, index] = values.repeat(rows)
    codes = torch.arange(rows, device=z_rows.device).repeat_interleave(cols) % cat_dim
    return torch.cat([z_rows.repeat_interleave(cols, dim=0), F.one_hot(codes, cat_dim).float(), cont], dim=1)


def init_weights(m: nn.Module):
    """N(0, 0.02) weights, zero biases, BN scale N(1, 0.02); deviation: the official D convs use a truncated normal."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """FC 1024 BN ReLU -> FC 7x7x128 BN ReLU -> upconv 64 4x4 s2 BN ReLU -> upconv 1 4x4 s2 tanh (Table 1)."""

    def __init__(self, latent_dim=74, nf=64, fc_dim=1024):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(latent_dim, fc_dim), nn.BatchNorm1d(fc_dim), nn.ReLU(),
                                nn.Linear(fc_dim, 2 * nf * 7 * 7), nn.BatchNorm1d(2 * nf * 7 * 7), nn.ReLU(),
                                nn.Unflatten(1, (2 * nf, 7, 7)))  # (B, 128, 7, 7)
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(2 * nf, nf, 4, 2, 1), nn.BatchNorm2d(nf), nn.ReLU(),  # (B, 64, 14, 14)
            nn.ConvTranspose2d(nf, 1, 4, 2, 1), nn.Tanh(),  # (B, 1, 28, 28)
        )
        self.apply(init_weights)

    def forward(self, latent):
        return self.conv(self.fc(latent))


class DiscriminatorQ(nn.Module):
    """D and Q share conv 64 4x4 s2 lReLU -> conv 128 4x4 s2 BN lReLU -> FC 1024 BN lReLU (Table 1). D's head: FC 1
    logit; Q's head: FC 128 BN lReLU -> FC to c1's logits and a mean and a log-variance per continuous code."""

    def __init__(self, cat_dim=10, cont_dim=2, nf=64, fc_dim=1024, q_dim=128, leak=0.1):
        super().__init__()
        self.cat_dim, self.cont_dim = cat_dim, cont_dim
        self.body = nn.Sequential(
            nn.Conv2d(1, nf, 4, 2, 1), nn.LeakyReLU(leak),  # (B, 64, 14, 14)
            nn.Conv2d(nf, 2 * nf, 4, 2, 1), nn.BatchNorm2d(2 * nf), nn.LeakyReLU(leak),  # (B, 128, 7, 7)
            nn.Flatten(), nn.Linear(2 * nf * 7 * 7, fc_dim), nn.BatchNorm1d(fc_dim), nn.LeakyReLU(leak),
        )
        self.d_head = nn.Linear(fc_dim, 1)
        self.q_head = nn.Sequential(nn.Linear(fc_dim, q_dim), nn.BatchNorm1d(q_dim), nn.LeakyReLU(leak),
                                    nn.Linear(q_dim, cat_dim + 2 * cont_dim))
        self.apply(init_weights)

    def forward(self, x):
        """Returns D's logit (B,), Q's categorical logits (B, K), continuous means and log-variances (B, cont_dim)."""
        h = self.body(x)
        q = self.q_head(h)  # (B, K + 2 * cont_dim)
        mean, logvar = q[:, self.cat_dim:].split(self.cont_dim, dim=1)
        return self.d_head(h).view(-1), q[:, :self.cat_dim], mean, logvar


def discriminator_loss(real_logits, fake_logits):
    """-[log D(x) + log(1 - D(G(z, c)))] (Eq. 1, ascended by D), as binary cross-entropy on logits."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits):
    """-log D(G(z, c)): the non-saturating generator loss (GAN paper, Section 3; the official InfoGAN code)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def info_loss(cat_logits, mean, logvar, codes, cont, lambda_cat=1.0, lambda_cont=1.0, kind="fixed-sigma"):
    """lambda-weighted -L_I(G, Q) + H(c) (Eq. 5): E[-log Q(c1|x)] and the continuous codes' Gaussian NLL, with std 1
    (`fixed-sigma`, official code): sum_i (c_i - mu_i)^2 / 2, or with Q's log-variance (`learnt-sigma`, unbounded
    below as sigma -> 0): sum_i [log(2 pi sigma_i^2) + (c_i - mu_i)^2 / sigma_i^2] / 2. Returns (total, cat, cont)."""
    # F.cross_entropy written out: its CUDA kernel (nll_loss) is nondeterministic
    cat = -(F.log_softmax(cat_logits, dim=1) * F.one_hot(codes, cat_logits.shape[1])).sum(1).mean()
    if kind == "learnt-sigma":
        cont_loss = (0.5 * (math.log(2 * math.pi) + logvar + (cont - mean).pow(2) * torch.exp(-logvar))).sum(1).mean()
    else:
        cont_loss = 0.5 * (cont - mean).pow(2).sum(1).mean()
    return lambda_cat * cat + lambda_cont * cont_loss, cat, cont_loss


def c1_test_error(codes: np.ndarray, labels: np.ndarray, cat_dim: int, n_classes: int = 10) -> float:
    """Section 7.2: Q's c1 (argmax) as a classifier of real digits, each code matched to a different class (or none):
    the error of the best one-to-one matching, exact by dynamic programming over the sets of classes taken (2^10)."""
    counts = np.zeros((cat_dim, n_classes))
    np.add.at(counts, (codes, labels), 1)
    best = {0: 0.0}  # bit set of the classes taken -> most digits the codes so far classify right
    for row in counts:
        for taken, right in list(best.items()):  # this code takes a free class c, or none
            for c in (c for c in range(n_classes) if not taken >> c & 1):
                best[taken | 1 << c] = max(best.get(taken | 1 << c, 0.0), right + row[c])
    return 1.0 - max(best.values()) / len(codes)


def save_atomic(obj: dict, path: str):
    """torch.save, or np.savez_compressed for a .npz path, into a temporary file that then replaces `path`."""
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
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # Data: the whole training set on the device as one uint8 tensor; batches are normalised there
    data, test_images, test_labels = load_data(args)
    data = data.to(device)  # (N, 1, 28, 28) uint8
    n_batches = len(data) // args.batch_size
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {len(data)} training images")
    total_iters = args.epochs * n_batches
    if args.max_iters:
        total_iters = min(total_iters, args.max_iters)

    latent_batch = lambda n, gen=None, codes=None: sample_latent(n, args.noise_dim, args.cat_dim, args.cont_dim,
                                                                 device, gen, codes)
    generator = Generator(args.noise_dim + args.cat_dim + args.cont_dim, args.num_filters, args.fc_dim)
    generator = generator.to(device, memory_format=memory_format)
    discriminator = DiscriminatorQ(args.cat_dim, args.cont_dim, args.num_filters, args.fc_dim, args.q_dim, args.leak)
    discriminator = discriminator.to(device, memory_format=memory_format)
    fused = device.type == "cuda"
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2), fused=fused)
    # D, Q's head and their shared body in one optimiser at D's rate: the official code's d_net scope holds them all
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)

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
    # Figure 2: one fixed noise vector per row (row r: c1 = r), a continuous code swept from -2 to 2 across columns
    fixed_z = latent_batch(args.cat_dim, torch.Generator(device).manual_seed(args.seed))[0][:, :args.noise_dim]
    sweep_values = torch.linspace(-2, 2, 10, device=device)

    def save_checkpoint():
        save_atomic({
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "train_seconds": train_seconds + time.time() - start_time - eval_seconds,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        }, ckpt_path)

    @torch.no_grad()
    def write_samples():
        """Code traversals, c1 down the rows: c2 swept (samples) and c3 swept (samples_c3); G in eval mode."""
        generator.eval()
        for index, suffix in list(enumerate(["", "_c3"]))[:args.cont_dim]:
            x = generator(sweep_latents(fixed_z, args.cat_dim, args.cont_dim, index, sweep_values))
            grid = torchvision.utils.make_grid(x, nrow=len(sweep_values), normalize=True, value_range=(-1, 1))
            torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}{suffix}.png")
            writer.add_image(f"samples{suffix}", grid, iteration)
        generator.train()

    @torch.no_grad()
    def generate_balanced(n: int, seed: int):
        """{images: n uint8 samples, codes: 0, 1, ..., K - 1, 0, ...}, from a noise stream of their own; G in eval."""
        gen = torch.Generator(device).manual_seed(seed)
        codes = torch.arange(n, device=device) % args.cat_dim
        generator.eval()
        images = torch.cat([generator(latent_batch(len(c), gen, c)[0]) for c in codes.split(1000)])
        generator.train()
        images = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return {"images": images.cpu().numpy(), "codes": codes.cpu().numpy()}

    def write_eval_samples():
        """samples_{iteration}.npz: 2000 samples and the training seconds so far (excluding the time spent here)."""
        global eval_seconds
        if device.type == "cuda":
            torch.cuda.synchronize()  # the queued training kernels belong to the training time
        t0 = time.time()
        samples = {**generate_balanced(2000, args.seed + 2), "iteration": iteration,
                   "train_seconds": train_seconds + t0 - start_time - eval_seconds}
        save_atomic(samples, f"{run_dir}/samples_{iteration:07d}.npz")
        eval_seconds += time.time() - t0

    stop_signal = None

    def on_stop_signal(signum, frame):
        global stop_signal
        stop_signal = signum

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM (preemption, docker stop):
    signal.signal(signal.SIGTERM, on_stop_signal)  # finish the iteration, write a checkpoint, exit 128 + signal

    # ALGO LOGIC: Eq. 6, min_{G,Q} max_D V(D, G) - lambda L_I(G, Q), one D/Q step and one G step per iteration
    print(f"infogan.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds = time.time(), iteration, 0.0
    while iteration < total_iters and not args.eval_only:
        # (1) Update D and Q: ascend V(D, G) (Eq. 1) and L_I (Eq. 5) on the same fakes; G(z, c) detached
        epoch, i = divmod(step, n_batches)  # the last incomplete batch of an epoch is dropped
        idx = epoch_order(len(data), args.seed, epoch, device)[i * args.batch_size:(i + 1) * args.batch_size]
        real, step = data[idx].float().div_(127.5).sub_(1.0).contiguous(memory_format=memory_format), step + 1
        latent, codes, cont = latent_batch(len(real))
        with torch.no_grad():
            fake = g_train(latent)
        real_logits = d_train(real)[0]
        fake_logits, cat_logits, mean, logvar = d_train(fake)
        d_loss = discriminator_loss(real_logits, fake_logits)
        dq_loss = d_loss + info_loss(cat_logits, mean, logvar, codes, cont, args.lambda_cat, args.lambda_cont,
                                     args.continuous_loss)[0]
        optimizer_d.zero_grad(set_to_none=True)
        dq_loss.backward()
        optimizer_d.step()

        # (2) Update G: descend -log D(G(z, c)) - lambda L_I(G, Q) (Eq. 6)
        latent, codes, cont = latent_batch(args.batch_size)
        fake_logits_g, cat_logits, mean, logvar = d_train(g_train(latent))
        g_loss = generator_loss(fake_logits_g)
        info, info_cat, info_cont = info_loss(cat_logits, mean, logvar, codes, cont, args.lambda_cat,
                                              args.lambda_cont, args.continuous_loss)
        optimizer_g.zero_grad(set_to_none=True)
        (g_loss + info).backward(inputs=list(generator.parameters()))  # none for D's and Q's weights
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        stopping = stop_signal  # read once: a signal that lands after this line stops the next iteration
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stopping
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "info_loss": info.item(),
                      "info_loss_cat": info_cat.item(), "info_loss_cont": info_cont.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}",
                     1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/d_real", torch.sigmoid(real_logits).mean().item(), iteration)
            writer.add_scalar("charts/d_fake", torch.sigmoid(fake_logits).mean().item(), iteration)
            writer.add_scalar("charts/q_accuracy", (cat_logits.argmax(1) == codes).float().mean().item(), iteration)
            its = (iteration - start_iter) / (time.time() - start_time)
            writer.add_scalar("charts/SPS", its * args.batch_size, iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | info_loss {losses['info_loss']:.4f} | {its:.2f} it/s | "
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

    discriminator.eval()  # Section 7.2's metric: Q's c1 classifies the real test digits, matched one-to-one to labels
    with torch.no_grad():
        test_codes = torch.cat([discriminator(x.to(device).float().div_(127.5).sub_(1.0))[1].argmax(1).cpu()
                                for x in test_images.split(1000)])
    c1_error = c1_test_error(test_codes.numpy(), test_labels.numpy(), args.cat_dim)
    writer.add_scalar("charts/c1_test_error", c1_error, iteration)
    print(f"c1_test_error {c1_error:.4f} (Q's c1 on the {len(test_labels)} real test digits, matched one-to-one)")

    # Final artefacts: traversal grids and samples.npz (balanced categorical codes) for the benchmark
    print(f"writing the final sample grids and {args.num_eval_samples} samples to {run_dir}", flush=True)
    write_samples()
    if args.num_eval_samples > 0:
        save_atomic(generate_balanced(args.num_eval_samples, args.seed + 1), f"{run_dir}/samples.npz")
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
