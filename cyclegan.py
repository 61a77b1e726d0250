# Docs: docs/cyclegan.md | Paper: Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks", https://arxiv.org/abs/1703.10593  # noqa: E501
"""CycleGAN: ResNet generators G: A -> B and F: B -> A, 70x70 PatchGAN discriminators D_A and D_B.

Paper-to-code map
- Eq. 1 with the least-squares loss (Section 4) ... `lsgan_loss`, `discriminator_loss` (halved), G step `g_gan_a/b`
- Eq. 2, cycle consistency (L1) .................. `cycle_loss`, weight lambda (`--lambda-cycle` 10)
- Section 5.2, identity mapping loss .............. `identity_loss`, weight lambda * 0.5 (`--lambda-identity`)
- Eq. 3, full objective ........................... `g_loss` in step (1) of the loop; D_A, D_B in step (2)
- Section 4, history of 50 generated images ....... `ImagePool` (official util/image_pool.py)
- Appendix 7.2, architectures ..................... `ResnetGenerator`, `NLayerDiscriminator`, `init_weights`
- Section 4, Adam 2e-4, 100 + 100 epochs, decay .. `linear_decay` (official `--lr_policy linear`)
- official data/unaligned_dataset.py .............. `UnpairedBatches` (independent orders of A and B), `augment`
"""
import os
import random
import shutil
import signal
import sys
import tarfile
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF
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
    """where datasets live (DATA_DIR/<dataset>/trainA ...; with `--dataset folder` the tree itself)"""
    download: bool = True
    """fetch the dataset if it is missing"""
    epochs: int = 200
    """passes over the training data (the paper: 100 at the initial rate + 100 decaying)"""
    max_iters: int = 0
    """stop after this many generator updates (0 = no cap)"""
    batch_size: int = 1
    """(A, B) pairs per update, split across processes under torchrun (Section 4: 1)"""
    lr: float = 2e-4
    """learning rate of both networks"""
    beta1: float = 0.5
    """Adam beta1"""
    beta2: float = 0.999
    """Adam beta2"""
    log_interval: int = 100
    """log losses every this many generator updates"""
    sample_interval: int = 1000
    """write a sample grid every this many generator updates"""
    checkpoint_interval: int = 5000
    """write checkpoint.pt every this many generator updates"""
    num_eval_samples: int = 10000
    """how many test images per direction translations.npz holds (0 = none)"""
    resume: Optional[str] = None
    """continue from this checkpoint file, exactly"""
    eval_only: bool = False
    """with --resume: no training, only write the sample grid and translations.npz"""
    compile: bool = False
    """if toggled, `torch.compile` the networks"""

    # Algorithm specific arguments
    dataset: Literal["facades", "horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo", "maps",
                     "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "iphone2dslr_flower", "folder"] = "facades"
    """the official CycleGAN dataset (downloaded into DATA_DIR), or `folder`: --data-dir is the tree itself"""
    dataset_mode: Literal["unaligned", "aligned"] = "unaligned"
    """unaligned: trainA/ trainB/ testA/ testB/; aligned: an AB tree {train,test}/*.jpg, pairs broken in training"""
    img_size: int = 256
    """crop size the whole pipeline runs at (multiple of 4, >= 24); load size = img_size * 286 / 256"""
    ngf: int = 64
    """filters of the generators' first layer (official --ngf)"""
    ndf: int = 64
    """filters of the discriminators' first layer (official --ndf)"""
    n_blocks: int = 0
    """residual blocks of the generators (0 = 9 at --img-size >= 256, 6 below; Appendix 7.2)"""
    lambda_cycle: float = 10.0
    """lambda, weight of the cycle-consistency loss (Eq. 3, Section 4)"""
    lambda_identity: float = 0.5
    """identity loss weight as a fraction of lambda (Section 5.2; official --lambda_identity 0.5; 0 = off)"""
    pool_size: int = 50
    """history of generated images shown to the discriminators (Section 4; 0 = no history)"""
    epochs_decay: int = 100
    """last epochs over which the rate decays linearly to zero (Section 4: 100)"""
    input_dir: Optional[str] = None
    """with --eval-only: translate every image in this folder and write PNGs into the run folder"""
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    """which generator --input-dir images go through (AtoB: G, BtoA: F)"""
    backend: Optional[Literal["nccl", "gloo"]] = None
    """torch.distributed backend under torchrun (default: nccl on CUDA, gloo on the CPU)"""


CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{}.zip"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz"
AB_SETS = ("facades", "maps")  # also released in the AB layout; their unpaired copies live in DATA_DIR/<name>_cyclegan
IMG_EXT = (".jpg", ".jpeg", ".png")


def fail(msg: str, code: int = 2):
    """End the run with one line on stderr (2: bad arguments, 1: missing data or divergence)."""
    print(f"{os.path.basename(__file__)}: error: {msg}", file=sys.stderr)
    sys.exit(code)


def check_args(args: Args, world: int = 1):
    for i, name in enumerate(["epochs", "batch_size", "log_interval", "sample_interval", "checkpoint_interval", "ngf",
                              "ndf", "lr", "max_iters", "num_eval_samples", "n_blocks", "pool_size", "epochs_decay",
                              "lambda_cycle", "lambda_identity"]):
        if not (getattr(args, name) > 0 if i < 8 else getattr(args, name) >= 0):  # NaN fails too
            fail(f"--{name.replace('_', '-')} must be {'> 0' if i < 8 else '>= 0'} (got {getattr(args, name)})")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        fail(f"--beta1 and --beta2 must lie in [0, 1) (got {args.beta1}, {args.beta2})")
    if args.img_size % 4 or args.img_size < 24:
        fail(f"--img-size must be a multiple of 4 and >= 24 (G halves it twice; got {args.img_size})")
    if args.epochs_decay > args.epochs:
        fail(f"--epochs-decay {args.epochs_decay} exceeds --epochs {args.epochs} (the total)")
    if args.batch_size % world:
        fail(f"--batch-size {args.batch_size} must be divisible by the {world} processes (the batch is split)")
    if args.dataset_mode == "aligned" and args.dataset not in (*AB_SETS, "folder"):
        fail(f"--dataset-mode aligned takes --dataset {', '.join(AB_SETS)} or folder (got {args.dataset})")
    if args.resume is not None and not os.path.isfile(args.resume):
        fail(f"--resume {args.resume}: no such checkpoint file")
    if args.eval_only and args.resume is None:
        fail("--eval-only needs --resume PATH (the checkpoint to translate with)")
    if args.input_dir is not None and not (args.eval_only and os.path.isdir(args.input_dir)):
        fail(f"--input-dir {args.input_dir}: needs --eval-only and an existing folder of images")


def dataset_root(args: Args) -> str:
    suffix = "_cyclegan" if args.dataset_mode == "unaligned" and args.dataset in AB_SETS else ""
    return args.data_dir if args.dataset == "folder" else os.path.join(args.data_dir, args.dataset + suffix)


def list_images(folder: str) -> list:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMG_EXT)) if os.path.isdir(folder) else []


def read_rgb(path: str, size: int, half: Optional[int] = None) -> torch.Tensor:
    """uint8 (3, size, size): the image (or its left / right half) resized, antialiased bicubic as the official PIL."""
    img = torchvision.io.decode_image(path, mode=torchvision.io.ImageReadMode.RGB)
    img = img if half is None else img.chunk(2, dim=-1)[half]
    return TF.resize(img, [size, size], TF.InterpolationMode.BICUBIC, antialias=True)


def download(args: Args, root: str):  # the official archive unpacked into root; nothing left behind on failure
    url = (CYCLEGAN_URL if args.dataset_mode == "unaligned" else PIX2PIX_URL).format(args.dataset)
    tmp, archive = root + ".download", os.path.join(root + ".download", os.path.basename(url))
    try:
        os.makedirs(tmp, exist_ok=True)
        print(f"downloading {url}", flush=True)
        with urllib.request.urlopen(url, timeout=60) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
        (zipfile.ZipFile(archive) if url.endswith(".zip") else tarfile.open(archive)).extractall(tmp)
        os.replace(os.path.join(tmp, args.dataset), root)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
        print(f"download failed: {type(e).__name__}: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_dataset(args: Args):
    """(train_a, train_b, test_a, test_b, paired): uint8 (N, 3, L, L) training images at the load size L, (N, 3, S, S)
    test images at --img-size (official test: load size = crop size); paired: test_a[i] and test_b[i] match."""
    root = dataset_root(args)
    subdirs = ["trainA", "trainB", "testA", "testB"] if args.dataset_mode == "unaligned" else ["train", "test"]
    missing = lambda: [d for d in subdirs if not list_images(os.path.join(root, d))]
    if missing() and args.download and args.dataset != "folder" and not os.path.exists(root):
        download(args, root)
    if missing():
        fail(f"{args.dataset} ({args.dataset_mode}) not found: expected images in {os.path.join(root, missing()[0])}; "
             f"pass --data-dir pointing at the folder that holds {os.path.basename(root)}/ (the tree itself with "
             "--dataset folder), or run once with --download while online", 1)
    big, small = round(args.img_size * 286 / 256), args.img_size  # official --load_size 286 for --crop_size 256
    read = lambda d, size, half=None: torch.stack([read_rgb(os.path.join(root, d, f), size, half)
                                                   for f in list_images(os.path.join(root, d))])
    if args.dataset_mode == "aligned":  # A | B side by side: the left half is A, the right half B
        return read("train", big, 0), read("train", big, 1), read("test", small, 0), read("test", small, 1), True
    paired = list_images(os.path.join(root, "testA")) == list_images(os.path.join(root, "testB"))
    return read("trainA", big), read("trainB", big), read("testA", small), read("testB", small), paired


class UnpairedBatches:
    """Each epoch a seeded permutation of A and an independent one of B (repeated up to max(n_a, n_b), the official
    length): pairs change every epoch, the order depends only on the step (exact resume); rank r takes slice r."""
    def __init__(self, n_a: int, n_b: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.length, self.batch_size, self.seed = (n_a, n_b), max(n_a, n_b), batch_size, seed
        self.local, self.rank, self.epoch = batch_size // world, rank, -1
        self.per_epoch = self.length // batch_size  # the last incomplete batch is dropped

    def get(self, step: int):
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            gens = [torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 2 + d) for d in (0, 1)]
            self.perms = [torch.cat([torch.randperm(n, generator=g) for _ in range(-(-self.length // n))])[:self.length]
                          for n, g in zip(self.n, gens, strict=True)]
            self.epoch = epoch
        lo = i * self.batch_size + self.rank * self.local
        return self.perms[0][lo:lo + self.local].tolist(), self.perms[1][lo:lo + self.local].tolist()


def augment(data: torch.Tensor, idx: list, size: int) -> torch.Tensor:
    """Random size x size crop of each load-size image and a random horizontal flip (official `resize_and_crop` +
    flip), on the device; crop offsets and flips come from the global torch RNG (saved in the checkpoint)."""
    offsets = torch.randint(0, data.shape[-1] - size + 1, (len(idx), 2)).tolist()
    flips = (torch.rand(len(idx)) < 0.5).tolist()
    crops = [data[j, :, y:y + size, x:x + size] for j, (y, x) in zip(idx, offsets, strict=True)]
    return normalize(torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flips, strict=True)]))


def normalize(x: torch.Tensor) -> torch.Tensor:  # uint8 [0, 255] -> float [-1, 1]; float images pass through
    return x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x


class ImagePool:
    """History of generated images (Section 4; official util/image_pool.py): until full, store and return each image;
    then with probability 0.5 swap it for a stored one, else return it. Python's global RNG (in the checkpoint)."""
    def __init__(self, size: int):
        self.size, self.images = size, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(img)
            elif random.uniform(0, 1) > 0.5:  # return a stored image, keep the new one in its place
                j = random.randint(0, self.size - 1)
                self.images[j], img = img, self.images[j]
            out.append(img)
        return torch.cat(out)


def init_weights(m: nn.Module):  # N(0, 0.02) weights, zero biases (official init_type normal, init_gain 0.02)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """R_k: two 3x3 convolutions with reflection padding and InstanceNorm, plus the skip connection."""
    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.block(x)


class ResnetGenerator(nn.Sequential):
    """c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3, tanh (Appendix 7.2; Johnson et al. 2016)."""
    def __init__(self, ngf: int = 64, n_blocks: int = 9, channels: int = 3):
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for mult in (1, 2):  # d128, d256: (B, ngf*mult*2, H/2^k, W/2^k)
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]  # (B, 4 ngf, H/4, W/4)
        for mult in (4, 2):  # u128, u64: fractionally strided convolutions
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]  # (B, C, H, W) in [-1, 1]
        super().__init__(*layers)
        self.apply(init_weights)


class NLayerDiscriminator(nn.Sequential):
    """70x70 PatchGAN (n_layers 3): C64 (no norm) - C128 - C256 - C512 (stride 1) - 1 channel, 4x4 convolutions,
    LeakyReLU 0.2, InstanceNorm; raw scores per patch for the least-squares loss (Appendix 7.2)."""
    def __init__(self, ndf: int = 64, n_layers: int = 3, channels: int = 3):
        layers, mult = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]  # (B, 1, H/8 - 2, W/8 - 2): 30x30 patches at 256
        super().__init__(*layers)
        self.apply(init_weights)


class CycleGenerators(nn.Module):
    """G: A -> B and F: B -> A in one module, so that one forward (and one DDP wrapper) covers the whole G step."""
    def __init__(self, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        self.g_ab, self.g_ba = ResnetGenerator(ngf, n_blocks), ResnetGenerator(ngf, n_blocks)

    def forward(self, real_a, real_b):
        """G(a), F(b), F(G(a)), G(F(b)), F(a), G(b); InstanceNorm is per image, so batching calls changes nothing."""
        fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
        rec_a, idt_a = self.g_ba(torch.cat([fake_b, real_a])).chunk(2)
        rec_b, idt_b = self.g_ab(torch.cat([fake_a, real_b])).chunk(2)
        return fake_b, fake_a, rec_a, rec_b, idt_a, idt_b


def lsgan_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Section 4, Mao et al. 2017): mean (D(x) - 1)^2 for real, mean D(x)^2 for fake."""
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


def discriminator_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """0.5 [(D(y) - 1)^2 + D(G(x))^2]: halved to slow D relative to G (Section 4)."""
    return 0.5 * (lsgan_loss(real_pred, True) + lsgan_loss(fake_pred, False))


def cycle_loss(rec: torch.Tensor, real: torch.Tensor, lambda_cycle: float) -> torch.Tensor:
    """lambda ||F(G(x)) - x||_1 (Eq. 2, one direction), mean over pixels as the official L1Loss."""
    return lambda_cycle * F.l1_loss(rec, real)


def identity_loss(idt: torch.Tensor, real: torch.Tensor, lambda_cycle: float, lambda_identity: float):
    """lambda * lambda_idt ||F(x) - x||_1 (Section 5.2; official: lambda_identity times lambda_A/B)."""
    return lambda_cycle * lambda_identity * F.l1_loss(idt, real)


def linear_decay(epochs: int, epochs_decay: int):
    """LambdaLR factor of epoch e: 1, then linear down to 1/(epochs_decay + 1) (official `--lr_policy linear`)."""
    return lambda e: 1.0 - max(0, e + 1 - (epochs - epochs_decay)) / float(epochs_decay + 1)


if __name__ == "__main__":
    args = tyro.cli(Args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    check_args(args, world)
    distributed, rank = world > 1, 0
    use_cuda = torch.cuda.is_available() and args.cuda
    if distributed:  # launched by torchrun: one process per device, the batch split across them
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(args.backend or ("nccl" if use_cuda else "gloo"))
        rank = dist.get_rank()

    # TRY NOT TO MODIFY: seeding (per rank: augmentation and image pool differ, DDP broadcasts rank 0's weights)
    random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    torch.manual_seed(args.seed + rank)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu")
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # Data: decoded once into uint8 tensors on the device; crops, flips and normalisation happen there per batch
    if args.input_dir is None:
        *tensors, paired = load_dataset(args)
        train_a, train_b, test_a, test_b = (t.to(device) for t in tensors)
        batches = UnpairedBatches(len(train_a), len(train_b), args.batch_size, args.seed, rank, world)
        if batches.per_epoch == 0:
            fail(f"--batch-size {args.batch_size} exceeds the {batches.length} training images")
        total_iters = min(args.epochs * batches.per_epoch, args.max_iters or float("inf"))

    n_blocks = args.n_blocks or (9 if args.img_size >= 256 else 6)  # Appendix 7.2: 6 blocks at 128, 9 at 256
    g_nets = CycleGenerators(args.ngf, n_blocks).to(device, memory_format=fmt)
    d_nets = nn.ModuleDict({"d_a": NLayerDiscriminator(args.ndf), "d_b": NLayerDiscriminator(args.ndf)})
    d_nets.to(device, memory_format=fmt)  # D_A judges domain A (a vs F(b)), D_B domain B (b vs G(a))
    optimizer_g, optimizer_d = (torch.optim.Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                                                 fused=device.type == "cuda") for net in (g_nets, d_nets))
    scheduler_g, scheduler_d = (torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(args.epochs, args.epochs_decay))
                                for opt in (optimizer_g, optimizer_d))
    pool_a, pool_b = ImagePool(args.pool_size), ImagePool(args.pool_size)  # F(b) for D_A, G(a) for D_B
    nets = {"g_ab": g_nets.g_ab, "g_ba": g_nets.g_ba, "d_a": d_nets.d_a, "d_b": d_nets.d_b}
    states = dict(optimizer_g=optimizer_g, optimizer_d=optimizer_d, scheduler_g=scheduler_g, scheduler_d=scheduler_d)

    iteration, step, run_dir = 0, 0, None  # generator updates done, (A, B) batches consumed
    if args.resume:
        try:
            ckpt = torch.load(args.resume, map_location=device, weights_only=False)
            for name, obj in [*nets.items(), *(states.items() if not args.eval_only else [])]:
                obj.load_state_dict(ckpt[name])
            if not args.eval_only:
                if len(ckpt["ranks"]) != world:
                    raise ValueError(f"written by {len(ckpt['ranks'])} process(es), resumed with {world}")
                own = ckpt["ranks"][rank]  # this rank's image pools and RNG states
                pool_a.images, pool_b.images = ([t.to(device) for t in own[k]] for k in ("pool_a", "pool_b"))
                for key, set_state in [("python", random.setstate), ("numpy", np.random.set_state),
                                       ("torch", torch.set_rng_state), ("cuda", torch.cuda.set_rng_state)]:
                    if own["rng"][key] is not None and (key != "cuda" or device.type == "cuda"):
                        set_state(own["rng"][key])
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            fail(f"--resume {args.resume} does not match this model and flags ({str(e).splitlines()[0][:200]})")
        iteration, step, run_dir = ckpt["iteration"], ckpt["step"], os.path.dirname(os.path.abspath(args.resume))
    # the G step runs D outside DDP (frozen, nothing to sync); the D step through DDP when distributed
    trained = [g_nets, d_nets.d_a, d_nets.d_b]
    trained = [nn.parallel.DistributedDataParallel(m) for m in trained] if distributed else trained
    g_train, d_train_a, d_train_b, d_a, d_b = [torch.compile(m) if args.compile else m for m in
                                               [*trained, d_nets.d_a, d_nets.d_b]]

    # TRY NOT TO MODIFY: run folder and logging, rank 0 only (a resumed run keeps writing into its own folder)
    if run_dir is None:
        run_dir = f"runs/{args.dataset}__{args.exp_name}__{args.seed}__{int(time.time())}"
    writer, ckpt_path = None, f"{run_dir}/checkpoint.pt"
    if rank == 0:
        os.makedirs(f"{run_dir}/samples", exist_ok=True)
        writer = SummaryWriter(run_dir)
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in
                                                                              asdict(args).items()))

    @torch.no_grad()
    def translate(net: nn.Module, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:  # eval mode, chunks, [-1, 1]
        net.eval()
        out = torch.cat([net(normalize(x[i:i + chunk])) for i in range(0, len(x), chunk)])
        net.train()
        return out

    if args.input_dir is not None:  # --eval-only --input-dir: translate a folder of single-domain images
        files = list_images(args.input_dir)
        if not files:
            fail(f"--input-dir {args.input_dir}: no {'/'.join(IMG_EXT)} images found", 1)
        net, out_dir = (g_nets.g_ab if args.direction == "AtoB" else g_nets.g_ba), f"{run_dir}/{args.direction}"
        os.makedirs(out_dir, exist_ok=True)
        for f in files:
            y = translate(net, read_rgb(os.path.join(args.input_dir, f), args.img_size)[None].to(device))
            torchvision.utils.save_image((y + 1) / 2, f"{out_dir}/{os.path.splitext(f)[0]}.png")
        print(f"done: {len(files)} images translated {args.direction} into {out_dir}")
        sys.exit(0)

    def save_checkpoint():  # all ranks take part (their image pools and RNG states are gathered); rank 0 writes
        own = {"pool_a": [t.cpu() for t in pool_a.images], "pool_b": [t.cpu() for t in pool_b.images],
               "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}}
        ranks = [own] * world
        if distributed:
            dist.all_gather_object(ranks, own)
        if rank == 0:
            torch.save({**{k: v.state_dict() for k, v in {**nets, **states}.items()}, "iteration": iteration,
                        "step": step, "epoch": step // batches.per_epoch, "args": asdict(args), "ranks": ranks},
                       ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)  # atomic

    fixed_a, fixed_b = (t[:min(4, len(test_a), len(test_b))] for t in (test_a, test_b))  # a fixed test batch

    def write_samples():  # rows: a | G(a) | F(G(a)) | b | F(b) | G(F(b)) from the fixed test batch
        fake_b, fake_a = translate(g_nets.g_ab, fixed_a), translate(g_nets.g_ba, fixed_b)
        rec_a, rec_b = translate(g_nets.g_ba, fake_b), translate(g_nets.g_ab, fake_a)
        rows = torch.stack([normalize(fixed_a), fake_b, rec_a, normalize(fixed_b), fake_a, rec_b], 1).flatten(0, 1)
        grid = torchvision.utils.make_grid(rows, nrow=6, normalize=True, value_range=(-1, 1))
        torchvision.utils.save_image(grid, f"{run_dir}/samples/{iteration:07d}.png")
        writer.add_image("samples", grid, iteration)

    stop_requested = False  # Ctrl-C: finish the iteration, write a checkpoint, exit
    signal.signal(signal.SIGINT, lambda signum, frame: globals().update(stop_requested=True))

    # ALGO LOGIC: Section 4 training loop (one iteration = one update of G and F, then of D_A and D_B)
    start_time, start_iter = time.time(), iteration
    while iteration < total_iters and not args.eval_only:
        idx_a, idx_b = batches.get(step)
        step += 1
        real_a = augment(train_a, idx_a, args.img_size).contiguous(memory_format=fmt)
        real_b = augment(train_b, idx_b, args.img_size).contiguous(memory_format=fmt)

        # (1) Update G and F: minimise Eq. 3 = LSGAN terms + lambda * cycle (Eq. 2) + lambda * lambda_idt * identity
        d_nets.requires_grad_(False)
        fake_b, fake_a, rec_a, rec_b, idt_a, idt_b = g_train(real_a, real_b)
        g_gan_a, g_gan_b = lsgan_loss(d_a(fake_a), True), lsgan_loss(d_b(fake_b), True)  # (D_A(F(b)) - 1)^2, ...
        lam, lam_idt = args.lambda_cycle, args.lambda_identity
        cycle_loss_a, cycle_loss_b = cycle_loss(rec_a, real_a, lam), cycle_loss(rec_b, real_b, lam)  # F(G(a)), G(F(b))
        identity_loss_a = identity_loss(idt_a, real_a, lam, lam_idt)  # lambda * lambda_idt * ||F(a) - a||_1
        identity_loss_b = identity_loss(idt_b, real_b, lam, lam_idt)  # lambda * lambda_idt * ||G(b) - b||_1
        g_loss = g_gan_a + g_gan_b + cycle_loss_a + cycle_loss_b + identity_loss_a + identity_loss_b
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()

        # (2) Update D_A and D_B: minimise 0.5 [(D(y) - 1)^2 + D(G(x))^2] with fakes from the image history
        d_nets.requires_grad_(True)
        n = len(real_a)
        out_a = d_train_a(torch.cat([real_a, pool_a.query(fake_a)]))  # real and pooled fakes in one batch
        out_b = d_train_b(torch.cat([real_b, pool_b.query(fake_b)]))
        d_loss_a, d_loss_b = discriminator_loss(out_a[:n], out_a[n:]), discriminator_loss(out_b[:n], out_b[n:])
        d_loss = d_loss_a + d_loss_b
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()
        iteration += 1

        # TRY NOT TO MODIFY: logging, divergence check and checkpoints (host syncs only here; ranks agree on stops)
        stop = stop_requested and not distributed  # under torchrun the ranks agree on a stop at the next log
        at_checkpoint = iteration % args.checkpoint_interval == 0 or iteration == total_iters or stop
        if iteration % args.log_interval == 0 or at_checkpoint:
            terms = {"g_gan": (g_gan_a, g_gan_b), "cycle_loss": (cycle_loss_a, cycle_loss_b),
                     "identity_loss": (identity_loss_a, identity_loss_b), "d_loss": (d_loss_a, d_loss_b)}
            values = {"losses/g_loss": g_loss, **{f"losses/{k}": a + b for k, (a, b) in terms.items()},
                      **{f"losses/{k}_{d}": v for k, pair in terms.items() for d, v in zip("ab", pair, strict=True)},
                      "charts/d_real": torch.cat([out_a[:n], out_b[:n]]).mean(),
                      "charts/d_fake": torch.cat([out_a[n:], out_b[n:]]).mean(),
                      "stop": torch.tensor(float(stop_requested), device=device)}
            stacked = torch.stack([v.detach().float() for v in values.values()])
            if distributed:  # mean over ranks: every rank logs, checks and stops on the same values
                dist.all_reduce(stacked)
                stacked /= world
            losses = dict(zip(values, stacked.tolist(), strict=True))
            stop = losses.pop("stop") > 0
            at_checkpoint = at_checkpoint or stop
            if not all(np.isfinite(v) for v in losses.values()):
                fail(f"non-finite loss at iteration {iteration} ("
                     f"{', '.join(f'{k[7:]}={v:.4g}' for k, v in losses.items() if k.startswith('losses/'))}); the "
                     f"last good checkpoint is {ckpt_path if os.path.exists(ckpt_path) else 'not written yet'}", 1)
            its = (iteration - start_iter) / (time.time() - start_time)
            if rank == 0:  # SPS: A and B training images per second
                for k, v in {**losses, "charts/SPS": int(its * 2 * args.batch_size),
                             "charts/learning_rate": optimizer_g.param_groups[0]["lr"]}.items():
                    writer.add_scalar(k, v, iteration)
                shown = " | ".join(f"{k[7:]} {losses[k]:.4f}" for k in list(losses)[:5])
                print(f"iter {iteration}/{total_iters} | epoch {step // batches.per_epoch} | {shown} | {its:.2f} it/s "
                      f"| ETA {(total_iters - iteration) / its:.0f}s", flush=True)
        if iteration % args.sample_interval == 0 and rank == 0:
            write_samples()
        if step % batches.per_epoch == 0:  # linear decay, stepped at the end of each epoch (official)
            scheduler_g.step(), scheduler_d.step()
        if at_checkpoint:
            save_checkpoint()
        if stop:
            print(f"interrupted: checkpoint written to {ckpt_path}", file=sys.stderr)
            sys.exit(130)

    # Final artefacts (rank 0): grid and translations.npz over the test split in both directions
    if rank == 0:
        write_samples()
        if args.num_eval_samples > 0:
            arrays, m = {}, args.num_eval_samples
            to_uint8 = lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
            for d, src, tgt, net, back in [("a2b", test_a, test_b, g_nets.g_ab, g_nets.g_ba),
                                           ("b2a", test_b, test_a, g_nets.g_ba, g_nets.g_ab)]:
                out = translate(net, src[:m])
                arrays.update({f"{d}_inputs": src[:m].cpu().numpy(), f"{d}_outputs": to_uint8(out),
                               f"{d}_cycle": to_uint8(translate(back, out))})  # F(G(a)) / G(F(b))
                arrays.update({f"{d}_targets": tgt[:m].cpu().numpy()} if paired else {})
            with open(f"{run_dir}/translations.npz.tmp", "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(f"{run_dir}/translations.npz.tmp", f"{run_dir}/translations.npz")
        writer.close()
    checksum = sum(v.double().sum().item() * (i + 1) for i, v in enumerate(g_nets.state_dict().values()))
    print(f"done: {iteration} iterations; artefacts in {run_dir}; rank {rank} generator checksum {checksum!r}")
    if distributed:  # every rank waits for rank 0's artefacts, then all tear down together
        dist.barrier()
        dist.destroy_process_group()
