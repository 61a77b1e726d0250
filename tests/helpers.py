"""Shared test helpers: tiny datasets in the real on-disk formats, running scripts, reading their artefacts."""
import contextlib
import gzip  # noqa: F401  (kept for users who want .gz variants)
import importlib.util
import io
import os
import runpy
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- datasets
def _write_idx(path: Path, array: np.ndarray):
    """IDX format (LeCun): magic 0x0000 08 ndim, big-endian dims, uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, seed: int = 0, size: int = 28):
    """Class-dependent images: class c is a bright bar at an angle/position set by c, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.zeros((n, size, size), np.float32)
    for i, c in enumerate(labels):
        angle = np.pi * c / 10
        d = np.abs((xx - size / 2) * np.sin(angle) - (yy - size / 2) * np.cos(angle))
        images[i] = np.clip(1.5 - d / 2, 0, 1) * (0.7 + 0.3 * rng.random())
    images = np.clip(images * 255 + rng.normal(0, 8, images.shape), 0, 255)
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 256, n_test: int = 100):
    """torchvision's raw layout: ROOT/{MNIST,FashionMNIST}/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in [("train", n_train, 0), ("t10k", n_test, 1)]:
        images, labels = synthetic_digits(n, seed)
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return Path(root)


# ----------------------------------------------------------------------------- running scripts
def script_path(name: str) -> str:
    return str(ROOT / f"{name}.py")


def load_script(name: str):
    """Import a model script as a module (nothing under `__main__` runs)."""
    spec = importlib.util.spec_from_file_location(f"cleangan_{name}", script_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_subprocess(name: str, args, cwd, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, script_path(name), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_inprocess(name: str, args, cwd):
    """Run a script's `__main__` in this process (saves the ~3 s interpreter start); returns (code, stdout, stderr)."""
    old_argv, old_cwd, old_handler = sys.argv, os.getcwd(), signal.getsignal(signal.SIGINT)
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [script_path(name), *map(str, args)]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(script_path(name), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        signal.signal(signal.SIGINT, old_handler)
    return code, out.getvalue(), err.getvalue()


def run_dirs(cwd) -> list:
    runs = Path(cwd) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def only_run_dir(cwd) -> Path:
    dirs = run_dirs(cwd)
    assert len(dirs) == 1, f"expected one run folder, found {dirs}"
    return dirs[0]


def read_scalars(run_dir) -> dict:
    """{tag: [(step, value), ...]} from all TensorBoard event files of a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_tags(run_dir) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc.Tags()


# ----------------------------------------------------------------------------- contract checks
def check_smoke(name: str, args, cwd, scalar_tags, artefact: str = "samples.npz", n_eval: int = 20):
    """Subprocess run: exit 0, the contract's TensorBoard tags, a PNG grid, the npz artefact, a loadable checkpoint."""
    proc = run_subprocess(name, [*args, "--num-eval-samples", n_eval], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(cwd)
    tags = read_tags(run)
    for tag in ["losses/d_loss", "losses/g_loss", "charts/d_real", "charts/d_fake", "charts/SPS", *scalar_tags]:
        assert tag in tags["scalars"], f"missing scalar {tag}: {tags['scalars']}"
    assert "samples" in tags["images"]
    assert "hyperparameters/text_summary" in tags["tensors"]
    assert list((run / "samples").glob("*.png")), "no sample grid PNG"
    data = np.load(run / artefact)
    assert (run / "checkpoint.pt").exists() and not list(run.glob("*.tmp"))
    return run, data, proc


def check_bad_input(name: str, args, cwd, code: int, must_mention: str):
    """The script ends with `code`, one line on stderr naming `must_mention`, and no run folder."""
    rc, out, err = run_inprocess(name, args, cwd)
    assert rc == code, f"exit {rc} != {code}; stderr: {err[-2000:]}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err[-2000:]}"
    assert must_mention in lines[0], lines[0]
    assert "Traceback" not in err
    assert not run_dirs(cwd), "a run folder was left behind"
    return lines[0]


def losses(run_dir, tags=("losses/d_loss", "losses/g_loss")) -> dict:
    scalars = read_scalars(run_dir)
    return {t: scalars[t] for t in tags}


def check_exact_resume(name: str, common, tmp_path, nets=("generator", "discriminator"),
                       tags=("losses/d_loss", "losses/g_loss"), n: int = 6):
    """n iterations in one go vs n/2, then `--resume` to n: the logged values of `tags` must be identical, value for
    value, and so must the final weights of `nets` (BatchNorm statistics included). Returns both checkpoints and the
    uninterrupted run's values for further checks."""
    full, half = tmp_path / "full", tmp_path / "half"
    full.mkdir(), half.mkdir()
    assert run_inprocess(name, [*common, "--max-iters", n], full)[0] == 0
    assert run_inprocess(name, [*common, "--max-iters", n // 2], half)[0] == 0
    run = only_run_dir(half)
    rc, out, err = run_inprocess(name, [*common, "--max-iters", n, "--resume", run / "checkpoint.pt"], half)
    assert rc == 0, err
    a, b = losses(only_run_dir(full), tags), losses(run, tags)
    assert [s for s, _ in a[tags[0]]] == list(range(1, n + 1))
    assert a == b  # same seed: identical values; n/2 + resumed n/2 == n in one go
    ca = torch.load(only_run_dir(full) / "checkpoint.pt", weights_only=False)
    cb = torch.load(run / "checkpoint.pt", weights_only=False)
    for net in nets:
        assert all(torch.equal(ca[net][k], cb[net][k]) for k in ca[net]), net
    return ca, cb, a


def check_eval_only(name: str, common, tmp_path, n_samples: int, train_iters: int = 2) -> dict:
    """Train `train_iters` iterations, then `--resume ... --eval-only --num-eval-samples n_samples`: exit 0 and the
    checkpoint is not rewritten (no training happened). Returns samples.npz's arrays for further checks."""
    assert run_inprocess(name, [*common, "--max-iters", train_iters, "--num-eval-samples", 0], tmp_path)[0] == 0
    run = only_run_dir(tmp_path)
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    rc, out, err = run_inprocess(name, [*common, "--resume", run / "checkpoint.pt", "--eval-only",
                                        "--num-eval-samples", n_samples], tmp_path)
    assert rc == 0, err
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before  # no training happened
    return dict(np.load(run / "samples.npz"))
