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


DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "hidden_dim", "maxout_units", "maxout_pieces", "k_steps"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "eval_interval"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if args.lr is None:
        args.lr = 0.1 if args.optimizer == "sgd" else 2e-4
    if not args.lr > 0:
        fail(f"--lr must be > 0 (got {args.lr})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if not 0 < args.label_smoothing <= 1:
        fail(f"--label-smoothing must lie in (0, 1] (got {args.label_smoothing})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


def load_images(args: Args) -> torch.Tensor:
    """The whole training set as one uint8 tensor (N, 1, 28, 28), read with torchvision's own loader.
    Deviation: all 60,000 MNIST images; the official mnist.yaml trains on the first 50,000 (docs item 8)."""
    cls = DATASETS[args.dataset]
    folder = os.path.join(args.data_dir, cls.__name__)
    existed = [p for p in (args.data_dir, folder) if os.path.exists(p)]
    try:
        return cls(args.data_dir, train=True, download=args.download).data.unsqueeze(1)
    except (RuntimeError, OSError) as e:
        for path in (folder, args.data_dir):  # leave nothing half-downloaded behind, not even an empty folder
            if path not in existed:
                shutil.rmtree(path, ignore_errors=True)
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected the IDX files in {os.path.join(folder, 'raw')} "
             f"({type(e).__name__}); pass --data-dir pointing at a folder that holds {cls.__name__}/raw, "
             "or run once with --download while online", 1)


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
        return self.data[idx].float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1]


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
    """z -> 1200 ReLU -> 1200 ReLU -> 784 tanh (official code; tanh instead of sigmoid as images lie in [-1, 1])."""

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


def save_atomic(obj, path: str):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    data = load_images(args).to(device)  # (N, 1, 28, 28) uint8
    n_batches = len(data) // args.batch_size
    if n_batches < args.k_steps:
        fail(f"--batch-size {args.batch_size} x --k-steps {args.k_steps} exceeds the {len(data)} training images")
    iters_per_epoch = n_batches // args.k_steps
    total_iters = args.epochs * iters_per_epoch
    if args.max_iters:
        total_iters = min(total_iters, args.max_iters)

    batches = EpochBatches(data, args.batch_size, args.seed)

    generator = Generator(args.latent_dim, args.hidden_dim).to(device)
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
    fixed_z = sample_noise(100, args.latent_dim, args.noise, device, torch.Generator(device).manual_seed(args.seed))

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
        """A 10x10 grid from the fixed noise batch, G in eval mode so that no state changes."""
        generator.eval()
        grid = torchvision.utils.make_grid(generator(fixed_z), nrow=10, normalize=True, value_range=(-1, 1))
        generator.train()
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    @torch.no_grad()
    def write_eval_samples():
        """samples_{iteration}.npz for quality-over-time curves: 2000 samples from a noise stream of their own (the
        training RNG is untouched) and the training seconds so far, which exclude the time spent here."""
        global eval_seconds
        if device.type == "cuda":  # queued training work counts as training time
            torch.cuda.synchronize()
        t0 = time.time()
        gen = torch.Generator(device).manual_seed(args.seed + 2)
        generator.eval()
        images = torch.cat([generator(sample_noise(1000, args.latent_dim, args.noise, device, gen)) for _ in range(2)])
        generator.train()
        images = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        path = f"{run_dir}/samples_{iteration:07d}.npz"
        seconds = train_seconds + t0 - start_time - eval_seconds
        with open(path + ".tmp", "wb") as f:
            np.savez(f, images=images, iteration=iteration, train_seconds=seconds)
        os.replace(path + ".tmp", path)
        eval_seconds += time.time() - t0

    stop_signal = None

    def on_stop_signal(signum, frame):
        global stop_signal
        stop_signal = signum

    signal.signal(signal.SIGINT, on_stop_signal)  # Ctrl-C and a scheduler's SIGTERM (preemption, docker stop):
    signal.signal(signal.SIGTERM, on_stop_signal)  # finish the iteration, write a checkpoint, exit 128 + signal

    # ALGO LOGIC: Algorithm 1 (minibatch stochastic gradient descent training of GANs). Deviation: D then G in turn,
    # where the official AdversaryCost2 steps both at once from one batch of samples (docs item 1)
    print(f"gan.py: {device}, run folder {run_dir}, iterations {iteration} -> {total_iters}", flush=True)
    start_time, start_iter, eval_seconds = time.time(), iteration, 0.0
    while iteration < total_iters and not args.eval_only:
        if args.optimizer == "sgd":  # official schedule: lr / 1.000004 per update, momentum beta1 -> 0.7 by epoch 250
            for group in optimizer_g.param_groups + optimizer_d.param_groups:
                group["lr"] = max(args.lr / 1.000004**iteration, 1e-6)
                group["momentum"] = args.beta1 + (0.7 - args.beta1) * min(1.0, step // n_batches / 249)
        for _ in range(args.k_steps):
            # (1) Update D: ascend log D(x) + log(1 - D(G(z))); G(z) is detached so G's graph is not built
            real = batches.get(step)
            step += 1
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
            writer.add_scalar("charts/learning_rate", optimizer_g.param_groups[0]["lr"], iteration)
            writer.add_scalar("charts/d_real", torch.sigmoid(real_logits).mean().item(), iteration)
            writer.add_scalar("charts/d_fake", torch.sigmoid(fake_logits).mean().item(), iteration)
            elapsed = time.time() - start_time
            its = (iteration - start_iter) / elapsed
            writer.add_scalar("charts/SPS", its * args.batch_size * args.k_steps, iteration)
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

    # Final artefacts: grid and samples.npz for the benchmark
    print(f"writing the final sample grid and {args.num_eval_samples} samples to {run_dir}", flush=True)
    write_samples()
    if args.num_eval_samples > 0:
        generator.eval()
        gen = torch.Generator(device).manual_seed(args.seed + 1)
        with torch.no_grad():
            images = torch.cat([
                generator(sample_noise(min(1000, args.num_eval_samples - i), args.latent_dim, args.noise, device, gen))
                for i in range(0, args.num_eval_samples, 1000)])
        images = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        with open(f"{run_dir}/samples.npz.tmp", "wb") as f:
            np.savez_compressed(f, images=images)
        os.replace(f"{run_dir}/samples.npz.tmp", f"{run_dir}/samples.npz")
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
