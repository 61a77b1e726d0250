# Docs: docs/lsgan.md | Paper: Mao et al. 2017, "Least Squares Generative Adversarial Networks", https://arxiv.org/abs/1611.04076
"""LSGAN: least squares losses for D and G (Mao et al., ICCV 2017), with the convolutional nets of Figure 3.

Paper-to-code map
- Eq. 2, min_D 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] ...... `discriminator_loss`, update (1) of the loop
- Eq. 2, min_G 1/2 E[(D(G(z)) - c)^2] ............................... `generator_loss`, update (2) of the loop
- Section 3.2.3, codings: Eq. 9 a=0, b=1, c=1 (the default, used in the paper's experiments);
  Eq. 8 a=-1, b=1, c=0 (b - c = 1, b - a = 2: minimises the Pearson chi^2 divergence) ... `--a --b --c`
- Figure 3(a): fc, BN, 3x3 deconvs (stride 2, 1, 2, 1 at 256 channels, then 128, 64), 3x3 output ... `Generator`
- Figure 3(b): 5x5 stride-2 convs 64-128-256-512, BN but on the first, LeakyReLU, fc, linear ... `Discriminator`
- Section 4.1 / official code: Adam lr 2e-4 (1e-3 for scenes), beta1 0.5, batch 64, z ~ U(-1, 1)^1024 ... `Args`
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
import torchvision.transforms as T
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
    epochs: int = 5
    """passes over the training data"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 64
    """minibatch size (official code: 64)"""
    lr: float = 2e-4
    """learning rate of both networks (Section 4.1: 0.0002 for the characters, 0.001 for the scenes)"""
    beta1: float = 0.5
    """Adam beta1 (Section 4.1, following DCGAN: 0.5)"""
    beta2: float = 0.999
    """Adam beta2"""
    log_interval: int = 100
    """log losses every this many generator updates"""
    sample_interval: int = 500
    """write a sample grid every this many generator updates"""
    checkpoint_interval: int = 2000
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
    """the training set (folder: an ImageFolder tree at --data-dir, e.g. CelebA)"""
    img_size: int = 32
    """side of the square images, 32 or 64 (the network depth follows it; MNIST is resized 28 -> 32)"""
    latent_dim: int = 1024
    """dimension of the noise z (Figure 3: 1024)"""
    ngf: int = 64
    """G width: its layers have 4, 2 and 1 times ngf channels (Figure 3: 256, 128, 64)"""
    ndf: int = 64
    """D width: its convs have 1, 2, 4 and 8 times ndf channels (Figure 3: 64 to 512)"""
    noise: Literal["uniform", "normal"] = "uniform"
    """prior p_z: U(-1, 1) (official code) or N(0, 1)"""
    a: float = 0.0
    """target of D for fake data (Eq. 2; Eq. 9: 0, Eq. 8: -1)"""
    b: float = 1.0
    """target of D for real data (Eq. 2; Eq. 9: 1, Eq. 8: 1)"""
    c: float = 1.0
    """value G wants D to output for fake data (Eq. 2; Eq. 9: 1, Eq. 8: 0)"""
    workers: int = 2
    """DataLoader worker processes for --dataset folder"""


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args):
    for name in ["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "latent_dim",
                 "ngf", "ndf"]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    for name in ["max_iters", "num_eval_samples", "workers"]:
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if args.img_size not in (32, 64):
        fail(f"--img-size must be 32 or 64 (got {args.img_size})")
    if not args.lr > 0:
        fail(f"--lr must be > 0 (got {args.lr})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if not all(np.isfinite([args.a, args.b, args.c])) or args.a == args.b:
        fail(f"--a and --b must be finite and differ (got a={args.a}, b={args.b}, c={args.c})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to generate from)")


# dataset -> (torchvision class, split, what it keeps under --data-dir: the folder/file it reads first)
SOURCES = {
    "mnist": (torchvision.datasets.MNIST, {"train": True}, ["MNIST"]),
    "fashion-mnist": (torchvision.datasets.FashionMNIST, {"train": True}, ["FashionMNIST"]),
    "cifar10": (torchvision.datasets.CIFAR10, {"train": True}, ["cifar-10-batches-py", "cifar-10-python.tar.gz"]),
    "svhn": (torchvision.datasets.SVHN, {"split": "train"}, ["train_32x32.mat"]),
}


def load_images(args: Args) -> torch.Tensor:
    """The whole training set as one uint8 tensor (N, C, img_size, img_size), read with torchvision's own loader
    and resized once (antialiased bilinear) when its side differs from --img-size."""
    cls, split, files = SOURCES[args.dataset]
    paths = [os.path.join(args.data_dir, f) for f in files]
    existed = [os.path.exists(p) for p in paths]
    try:
        data = torch.as_tensor(cls(args.data_dir, download=args.download, **split).data)
    except (RuntimeError, OSError, ImportError) as e:
        for p in [p for p, ex in zip(paths, existed, strict=True) if not ex and os.path.exists(p)]:
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)  # leave nothing half-downloaded behind
        how = "download failed (offline?)" if args.download else "not found"
        fail(f"{args.dataset} {how}: expected {paths[0]} ({type(e).__name__}); pass --data-dir pointing at the folder "
             f"that holds {files[0]}, or run once with --download while online", 1)
    if data.ndim == 3:
        data = data.unsqueeze(1)  # MNIST-like (N, 28, 28)
    elif data.shape[-1] == 3:
        data = data.permute(0, 3, 1, 2)  # CIFAR-10 (N, 32, 32, 3); SVHN is already (N, 3, 32, 32)
    if data.shape[-1] != args.img_size:
        data = torch.cat([F.interpolate(chunk.float(), size=args.img_size, mode="bilinear", antialias=True)
                          .round_().clamp_(0, 255).to(torch.uint8) for chunk in data.split(10000)])
    return data.contiguous()


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)  # uint8 [0, 255] -> float [-1, 1]


class EpochBatches:
    """Minibatches from a uint8 tensor on the device; epoch e is a permutation seeded by (seed, e), so the data
    order depends only on the number of batches consumed and a resumed run sees exactly the same batches."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed, self.epoch, self.n_images = data, batch_size, seed, -1, len(data)
        self.channels = data.shape[1]
        self.per_epoch = len(data) // batch_size  # the last incomplete batch is dropped

    def get(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self.perm, self.epoch = epoch_permutation(len(self.data), self.seed, epoch).to(self.data.device), epoch
        return normalise(self.data[self.perm[i * self.batch_size:(i + 1) * self.batch_size]])


class FolderBatches:
    """--dataset folder: images decoded by DataLoader workers (Resize, CenterCrop), in the same seeded per-epoch
    order as EpochBatches, so the step accounting and exact resume are the same."""

    def __init__(self, root: str, img_size: int, batch_size: int, seed: int, workers: int, device):
        tf = T.Compose([T.Resize(img_size), T.CenterCrop(img_size), T.PILToTensor()])  # uint8 (3, S, S)
        try:
            self.dataset = torchvision.datasets.ImageFolder(root, transform=tf)
        except (FileNotFoundError, OSError) as e:
            fail(f"folder not found or holds no images: expected class subfolders of images in {root} "
                 f"({type(e).__name__}); pass --data-dir pointing at an ImageFolder tree", 1)
        self.batch_size, self.seed, self.workers, self.device = batch_size, seed, workers, device
        self.n_images, self.next_step, self.channels = len(self.dataset), -1, 3
        self.per_epoch = self.n_images // batch_size  # the last incomplete batch is dropped

    def get(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if step != self.next_step or i == 0:  # start (or restart) the epoch's loader at batch i
            perm = epoch_permutation(len(self.dataset), self.seed, epoch)[: self.per_epoch * self.batch_size]
            order = perm.view(self.per_epoch, self.batch_size)[i:].tolist()
            self.it = iter(torch.utils.data.DataLoader(self.dataset, batch_sampler=order, num_workers=self.workers,
                                                       pin_memory=self.device.type == "cuda"))
        self.next_step = step + 1
        return normalise(next(self.it)[0].to(self.device, non_blocking=True))


def sample_noise(n: int, dim: int, kind: str, device, generator=None) -> torch.Tensor:
    if kind == "uniform":
        return torch.rand(n, dim, device=device, generator=generator) * 2 - 1
    return torch.randn(n, dim, device=device, generator=generator)


def init_weights(m: nn.Module):
    """Official code (DCGAN-tensorflow ops): weights from N(0, 0.02), biases 0, BatchNorm scale 1 and shift 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def deconv(c_in: int, c_out: int, stride: int) -> list:
    """3x3 transposed conv ("SAME" padding: stride 2 doubles the side, stride 1 keeps it), then BN and ReLU."""
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride, 1, output_padding=stride - 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(True)]


class Generator(nn.Module):
    """Figure 3(a) at side S: z -> fc to (4 ngf, S/16, S/16) -> BN, ReLU -> deconv 3x3 s2 and s1 at 4 ngf, twice ->
    deconv s2 to 2 ngf -> deconv s2 to ngf (all with BN, ReLU) -> deconv 3x3 s1 to C -> tanh."""

    def __init__(self, latent_dim: int = 1024, ngf: int = 64, channels: int = 1, img_size: int = 32):
        super().__init__()
        self.shape = (ngf * 4, img_size // 16, img_size // 16)
        self.fc = nn.Linear(latent_dim, int(np.prod(self.shape)), bias=False)
        self.net = nn.Sequential(
            nn.BatchNorm2d(ngf * 4), nn.ReLU(True),  # (B, 4 ngf, S/16, S/16)
            *deconv(ngf * 4, ngf * 4, 2), *deconv(ngf * 4, ngf * 4, 1),  # (B, 4 ngf, S/8, S/8)
            *deconv(ngf * 4, ngf * 4, 2), *deconv(ngf * 4, ngf * 4, 1),  # (B, 4 ngf, S/4, S/4)
            *deconv(ngf * 4, ngf * 2, 2),  # (B, 2 ngf, S/2, S/2)
            *deconv(ngf * 2, ngf, 2),  # (B, ngf, S, S)
            nn.ConvTranspose2d(ngf, channels, 3, 1, 1), nn.Tanh(),  # (B, C, S, S); no BatchNorm on the output
        )
        self.apply(init_weights)

    def forward(self, z):
        return self.net(self.fc(z).view(z.shape[0], *self.shape))


class Discriminator(nn.Module):
    """Figure 3(b): 5x5 stride-2 convs with ndf, 2, 4, 8 ndf channels, LeakyReLU 0.2, BN except on the first ->
    fc to one linear output (no sigmoid: the least squares loss takes the raw value)."""

    def __init__(self, ndf: int = 64, channels: int = 1, img_size: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 5, 2, 2), nn.LeakyReLU(0.2, True),  # (B, ndf, S/2, S/2)
            nn.Conv2d(ndf, ndf * 2, 5, 2, 2, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 5, 2, 2, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 5, 2, 2, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
            nn.Flatten(), nn.Linear(ndf * 8 * (img_size // 16) ** 2, 1),  # (B, 1)
        )
        self.apply(init_weights)

    def forward(self, x):
        return self.net(x).view(-1)  # (B,)


def least_squares(out: torch.Tensor, target: float) -> torch.Tensor:
    """1/2 E[(D(.) - target)^2]: one term of Eq. 2."""
    return 0.5 * F.mse_loss(out, torch.full_like(out, target))


def discriminator_loss(real_out, fake_out, a: float, b: float):
    """Eq. 2, D's two terms: (1/2 E[(D(x) - b)^2], 1/2 E[(D(G(z)) - a)^2]); D minimises their sum."""
    return least_squares(real_out, b), least_squares(fake_out, a)


def generator_loss(fake_out, c: float):
    """Eq. 2, G's objective: 1/2 E[(D(G(z)) - c)^2]."""
    return least_squares(fake_out, c)


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) in eval mode: BatchNorm uses (and does not update) its running statistics; G goes back to train mode."""
    generator.eval()
    images = generator(z)
    generator.train()
    return images


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
    memory_format = torch.channels_last  # on CUDA and on the CPU (here at ngf 32: 1.8 -> 2.0 it/s)

    # Data: small sets on the device as one uint8 tensor (batches normalised there); image folders via workers
    if args.dataset == "folder":
        batches = FolderBatches(args.data_dir, args.img_size, args.batch_size, args.seed, args.workers, device)
    else:
        batches = EpochBatches(load_images(args).to(device), args.batch_size, args.seed)  # (N, C, S, S) uint8
    n_batches, channels = batches.per_epoch, batches.channels
    if n_batches < 1:
        fail(f"--batch-size {args.batch_size} exceeds the {batches.n_images} training images")
    total_iters = args.epochs * n_batches
    if args.max_iters:
        total_iters = min(total_iters, args.max_iters)

    generator = Generator(args.latent_dim, args.ngf, channels, args.img_size).to(device, memory_format=memory_format)
    discriminator = Discriminator(args.ndf, channels, args.img_size).to(
        device, memory_format=memory_format)
    fused = device.type == "cuda"
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), fused=fused)

    iteration, step = 0, 0  # generator updates done, real minibatches consumed
    run_dir = None
    if args.resume:
        ckpt = torch.load(args.resume, map_location=device, weights_only=False)
        try:
            generator.load_state_dict(ckpt["generator"])
            discriminator.load_state_dict(ckpt["discriminator"])
            optimizer_g.load_state_dict(ckpt["optimizer_g"])
            optimizer_d.load_state_dict(ckpt["optimizer_d"])
        except (KeyError, RuntimeError, ValueError) as e:
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        iteration, step, run_dir = ckpt["iteration"], ckpt["step"], os.path.dirname(os.path.abspath(args.resume))
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
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
    fixed_z = sample_noise(64, args.latent_dim, args.noise, device, torch.Generator(device).manual_seed(args.seed))

    def save_checkpoint():
        save_atomic({
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "optimizer_g": optimizer_g.state_dict(), "optimizer_d": optimizer_d.state_dict(),
            "iteration": iteration, "step": step, "epoch": step // n_batches, "args": asdict(args),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
        }, ckpt_path)

    def write_samples():
        """An 8x8 grid from the fixed noise batch."""
        grid = torchvision.utils.make_grid(generate(generator, fixed_z), nrow=8, normalize=True, value_range=(-1, 1))
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    stop_requested = False

    def on_sigint(signum, frame):
        global stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_sigint)  # Ctrl-C: finish the iteration, write a checkpoint, exit

    # ALGO LOGIC: alternate one D and one G Adam step per minibatch on the least squares objectives of Eq. 2
    start_time, start_iter = time.time(), iteration
    while iteration < total_iters and not args.eval_only:
        real = batches.get(step).contiguous(memory_format=memory_format)  # (B, C, S, S) in [-1, 1]
        step += 1
        fake = g_train(sample_noise(len(real), args.latent_dim, args.noise, device))

        # (1) Update D, Eq. 2: minimise 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]; G(z) detached
        real_out, fake_out = d_train(real), d_train(fake.detach())
        d_loss_real, d_loss_fake = discriminator_loss(real_out, fake_out, args.a, args.b)
        d_loss = d_loss_real + d_loss_fake
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # (2) Update G, Eq. 2: minimise 1/2 E[(D(G(z)) - c)^2], through the updated D
        g_loss = generator_loss(d_train(fake), args.c)
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here)
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stop_requested
        if iteration % args.log_interval == 0 or at_checkpoint:
            losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "d_loss_real": d_loss_real.item(),
                      "d_loss_fake": d_loss_fake.item()}
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in losses.items())});"
                     f" the last good checkpoint is {ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}",
                     1)
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, iteration)
            writer.add_scalar("charts/d_real", real_out.mean().item(), iteration)  # raw D output, target b
            writer.add_scalar("charts/d_fake", fake_out.mean().item(), iteration)  # raw D output, target a
            elapsed = time.time() - start_time
            its = (iteration - start_iter) / elapsed
            writer.add_scalar("charts/SPS", int(its * args.batch_size), iteration)
            print(f"iter {iteration}/{total_iters} | epoch {step // n_batches} | d_loss {losses['d_loss']:.4f} | "
                  f"g_loss {losses['g_loss']:.4f} | {its:.2f} it/s | ETA {(total_iters - iteration) / its:.0f}s",
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
        gen = torch.Generator(device).manual_seed(args.seed + 1)
        images = torch.cat([
            generate(generator, sample_noise(min(1000, args.num_eval_samples - i), args.latent_dim, args.noise,
                                             device, gen)) for i in range(0, args.num_eval_samples, 1000)])
        images = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        with open(f"{run_dir}/samples.npz.tmp", "wb") as f:
            np.savez_compressed(f, images=images)
        os.replace(f"{run_dir}/samples.npz.tmp", f"{run_dir}/samples.npz")
    writer.close()
    print(f"done: {iteration} iterations; artefacts in {run_dir}")
