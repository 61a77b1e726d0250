"""Golden losses: each script's logged values for a short seeded CPU run at tiny width, pinned in golden_losses.json.

A refactor must not move a single logged number (losses, charts/d_real, d_fake, k_t, learning rate, ...; only the
wall-clock charts/SPS is left out). `tests/test_golden_losses.py` compares every value of the first TEST_ITERS
iterations (all ITERS of most scripts); regenerate the file only on purpose, and say why in the commit:
`python tests/golden.py --write [SCRIPT ...]`  (`--check` runs and compares the whole pinned runs).
"""
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import only_run_dir, read_scalars, run_inprocess, write_mnist  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden_losses.json"
ITERS = 30
THREADS = 2  # the runs compute with this many threads, whatever the machine or an earlier test set
MNIST = ["--no-download", "--no-cuda", "--num-eval-samples", 0, "--log-interval", 1]  # + --max-iters
# script -> (dataset writer, flags at tiny width; everything else is the script's default)
CONFIGS = {
    "gan": ("mnist", ["--hidden-dim", 64, "--maxout-units", 16, "--batch-size", 16]),
    "cgan": ("mnist", ["--z-hidden", 16, "--y-hidden", 16, "--joint-hidden", 32, "--maxout-units", 16,
                       "--y-maxout-units", 8, "--batch-size", 16]),
    "dcgan": ("mnist", ["--ngf", 8, "--ndf", 8, "--latent-dim", 16, "--batch-size", 16]),
    "lsgan": ("mnist", ["--ngf", 4, "--ndf", 4, "--latent-dim", 16, "--batch-size", 16]),
    "infogan": ("mnist", ["--num-filters", 4, "--fc-dim", 16, "--q-dim", 8, "--noise-dim", 8, "--batch-size", 16]),
    # wgan: 8 iterations (its 25 epochs end inside the 100-critic-step warm-up)
    "wgan": ("mnist", ["--ngf", 4, "--ndf", 4, "--latent-dim", 8, "--batch-size", 8]),
    "wgan_gp": ("mnist", ["--dim", 4, "--latent-dim", 8, "--batch-size", 8]),
    "began": ("mnist", ["--num-filters", 4, "--h-dim", 8, "--batch-size", 8]),
    "pix2pix": ("ab", ["--dataset", "folder", "--img-size", 32, "--ngf", 4, "--ndf", 4]),
    "cyclegan": ("unaligned", ["--img-size", 32, "--ngf", 4, "--ndf", 4, "--n-blocks", 1, "--pool-size", 2,
                               "--lambda-identity", 0.5]),  # pinned with the identity loss on (the default is off)
}
# The test runs the first n iterations of the pinned run (same data, seed and flags, --max-iters n): no script uses
# --max-iters before its last iteration (only to stop there, and write a checkpoint and the final samples), so every
# value logged at iterations 1 .. n is the pinned one. n covers what a longer run would add: an epoch boundary (the
# new shuffle; wgan: 100 critic steps per iteration, past 3 epochs each), several generator steps, cyclegan's full
# pool (swaps from iteration 3). The other scripts run all ITERS: infogan's charts/c1_test_error is logged at the last
# iteration only, and gan, cgan, dcgan, lsgan (an epoch boundary at 17) cost little.
TEST_ITERS = {
    "wgan": 3,  # of its 8 (the costly part: 100 critic steps each, ~2.7 s; all 8 are in the warm-up)
    "wgan_gp": 8,  # 6 iterations an epoch (32 batches, 5 critic steps each)
    "began": 8,  # no epoch boundary in 30 (32 batches an epoch); k_t and the carries change every iteration
    "pix2pix": 6,  # 4 iterations an epoch
    "cyclegan": 8,  # 6 iterations an epoch (max(|A|, |B|) = 6); pool of 2
}


def write_data(kind: str, root: Path) -> Path:
    if kind == "mnist":
        return write_mnist(root)
    if kind == "ab":
        from test_pix2pix import make_ab_dataset
        return make_ab_dataset(root, n_train=4, n_test=2)
    from test_cyclegan import write_unaligned
    write_unaligned(root / "facades_cyclegan")
    return root


def logged_values(name: str, iters: int = ITERS) -> dict:
    """{tag: [[step, value], ...]} of one seeded tiny run of at most `iters` iterations (all scalars but charts/SPS)."""
    kind, flags = CONFIGS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)  # a sum over another thread count differs in the last bits
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(kind, Path(tmp) / "data")
        cwd = Path(tmp) / "run"
        cwd.mkdir()
        code, out, err = run_inprocess(name, ["--data-dir", data, *MNIST, "--max-iters", iters, *flags], cwd)
        assert code == 0, err[-3000:]
        scalars = read_scalars(only_run_dir(cwd))
    torch.set_num_threads(threads)
    return {tag: [[s, v] for s, v in values] for tag, values in sorted(scalars.items()) if tag != "charts/SPS"}


def environment() -> str:
    return f"torch {torch.__version__}, {platform.machine()}, {torch.backends.cpu.get_cpu_capability()}"  # + THREADS


def main(argv) -> int:
    names = [a for a in argv if not a.startswith("--")] or list(CONFIGS)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"environment": environment(), "scripts": {}}
    bad = 0
    for name in names:
        values = logged_values(name)
        if "--write" in argv:
            golden["scripts"][name] = values
            print(f"{name}: {sum(len(v) for v in values.values())} values written")
        else:
            old = golden["scripts"].get(name)
            same = old is not None and all(values.get(tag) == v for tag, v in old.items())  # new tags may be added
            bad += not same
            print(f"{name}: {'same' if same else 'DIFFERENT'}")
            if not same and old:
                for tag in sorted(old):
                    if old.get(tag) != values.get(tag):
                        print(f"  {tag}: golden {str(old.get(tag))[:150]}\n  {' ' * len(tag)}  now    "
                              f"{str(values.get(tag))[:150]}")
    if "--write" in argv:
        golden["environment"] = environment()
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
