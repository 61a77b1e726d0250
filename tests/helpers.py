"""Shared test helpers: tiny datasets in the real on-disk formats, running scripts, reading their artefacts."""
import contextlib
import importlib.util
import io
import multiprocessing
import os
import pickle
import runpy
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

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


def run_inprocess(name: str, args, cwd):
    """Run a script's `__main__` in this process (saves the ~3 s interpreter start); returns (code, stdout, stderr)."""
    old_argv, old_cwd = sys.argv, os.getcwd()
    old_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    old_hook = sys.excepthook
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
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        sys.excepthook = old_hook
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
    """In-process run (every script's SIGTERM test launches it as a real process): exit 0, the contract's TensorBoard
    tags, a PNG grid, the npz artefact, a loadable checkpoint. `proc` has returncode, stdout and stderr."""
    code, out, err = run_inprocess(name, [*args, "--num-eval-samples", n_eval], cwd)
    proc = subprocess.CompletedProcess([name, *map(str, args)], code, out, err)
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


# ----------------------------------------------------------------------------- guard rails shared by every script
def _train(name: str, common, cwd, iters: int, extra=()) -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    rc, out, err = run_inprocess(name, [*common, "--max-iters", iters, "--num-eval-samples", 0, *extra], cwd)
    assert rc == 0, err[-3000:]
    return only_run_dir(cwd)


def check_corrupt_resume(name: str, common, tmp_path):
    """`--resume` of a file holding garbage, of a real checkpoint cut to half its size (a partial copy, a full disk),
    of a pickle that is not a dict, and of the real checkpoint with any one of its entries missing (another
    version's file): one line on stderr naming --resume, exit 2, no traceback, no new run folder. An entry the
    script can do without may instead let the run go on (exit 0), never a traceback."""
    ckpt = _train(name, common, tmp_path / "src", 1) / "checkpoint.pt"
    garbage, half, tensor = tmp_path / "garbage.pt", tmp_path / "half.pt", tmp_path / "tensor.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 40)
    data = ckpt.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    torch.save(torch.zeros(3), tensor)
    for i, bad in enumerate([garbage, half, tensor]):
        cwd = tmp_path / f"bad{i}"
        cwd.mkdir()
        check_bad_input(name, [*common, "--resume", bad], cwd, 2, "--resume")
    state = torch.load(ckpt, weights_only=False)
    for key in state:
        cwd, bad = tmp_path / f"without_{key}", tmp_path / f"without_{key}.pt"
        cwd.mkdir()
        torch.save({k: v for k, v in state.items() if k != key}, bad)
        rc, out, err = run_inprocess(name, [*common, "--resume", bad, "--max-iters", 1, "--num-eval-samples", 0], cwd)
        assert "Traceback" not in err and rc in (0, 2), f"without {key!r}: exit {rc}; {err[-2000:]}"
        if rc == 2:
            lines = [line for line in err.strip().splitlines() if line.strip()]
            assert len(lines) == 1 and "--resume" in lines[0], f"without {key!r}: {err[-2000:]}"
            assert not run_dirs(cwd), f"without {key!r}: a run folder was left behind"


class _OnRunDevice:
    """Emulates a GPU run's `torch.load(..., map_location=device)` on a CPU-only machine: when a script asks
    torch.load for any location other than "cpu", the checkpoint's RNG states come back off the CPU (here on the
    "meta" device, as map_location="cuda" puts them on the GPU), so `torch.set_rng_state` fails as it does on a GPU."""

    def __init__(self):
        self.real_load, self.calls = torch.load, []

    def __call__(self, f, *a, map_location=None, **k):
        obj = self.real_load(f, *a, map_location="cpu", **k)
        self.calls.append(map_location)
        if map_location != "cpu" and isinstance(obj, dict) and isinstance(obj.get("rng"), dict):
            obj["rng"] = {key: v.to("meta") if isinstance(v, torch.Tensor) else v for key, v in obj["rng"].items()}
        return obj


# A fork server that has imported torch, torchvision, tyro and TensorBoard once: the SIGTERM tests' training runs are
# forked from it, so each is a real process that gets a real signal, without its own ~5 s interpreter start.
_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["helpers", "torchvision", "tyro", "torch.utils.tensorboard"])


class _PicklingDataLoader(torch.utils.data.DataLoader):
    """A DataLoader whose workers' arguments (dataset, collate_fn, worker_init_fn) must survive pickling, as when they
    start by spawn or forkserver (macOS, Windows; Linux from Python 3.14): the SIGTERM child forks its workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.num_workers > 0:
            pickle.loads(pickle.dumps((self.dataset, self.collate_fn, self.worker_init_fn)))


def _script_child(name: str, args, cwd: str, log: str, threads: int, env: Optional[dict] = None,
                  new_session: bool = False):
    """In the forked child: `env` added to the environment, its own session and process group if `new_session` (as
    `start_new_session=True`: torchrun, Slurm, docker), stdout and stderr to `log` + .out/.err (line-buffered), then
    the script as __main__; its SystemExit code becomes the process's exit code."""
    os.environ.update(env or {})
    if new_session:
        os.setsid()
    # as in `python script.py`: DataLoader workers start by the interpreter's default method (fork on Linux up to
    # Python 3.13), not by the fork server's, which would start a fresh interpreter (~5 s) for each worker; what
    # such a start pickles is still pickled
    multiprocessing.set_start_method(None, force=True)
    torch.utils.data.DataLoader = _PicklingDataLoader
    for fd, suffix in ((1, ".out"), (2, ".err")):
        os.dup2(os.open(log + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout, sys.stderr = open(1, "w", buffering=1), open(2, "w", buffering=1)
    torch.set_num_threads(threads)
    os.chdir(cwd)
    sys.argv = [script_path(name), *map(str, args)]
    runpy.run_path(script_path(name), run_name="__main__")


def start_forked(name: str, args, cwd, log, threads: int = 1, env: Optional[dict] = None, new_session: bool = False):
    """`python NAME.py ARGS` in `cwd` as a real process forked from the fork server (see _script_child), started."""
    proc = _FORKSERVER.Process(target=_script_child, args=(name, args, str(cwd), str(log), threads, env, new_session))
    proc.start()
    return proc


def start_ranks(name: str, args, cwd, log, world: int = 2) -> list:
    """`torchrun --standalone --nproc-per-node WORLD NAME.py ARGS`, started without torchrun's own interpreter (~3 s)
    and the ranks' (~5 s each): WORLD processes forked from the fork server with the environment torchrun gives its
    ranks, one thread each; rank r logs to `log`_r.out/.err. The test of torchrun's shutdown still starts torchrun."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(start_forked(name, args, cwd, f"{log}_{rank}", 1, env))
    return procs


def join_ranks(procs: list, log, timeout: float = 300) -> tuple:
    """Wait for start_ranks' processes (killed after `timeout` s): (exit codes, stdout of all ranks, stderr of all)."""
    deadline = time.time() + timeout
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.time()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    out, err = ("".join(Path(f"{log}_{rank}{suffix}").read_text() for rank in range(len(procs)))
                for suffix in (".out", ".err"))
    return [proc.exitcode for proc in procs], out, err


def wait_for_log_line(proc, log: Path, needle: str, timeout: float = 120) -> str:
    """Wait until the child's stdout (`log`.out) has a line containing `needle`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = log.with_suffix(".out").read_text().splitlines() if log.with_suffix(".out").exists() else []
        found = [line for line in lines if needle in line]
        if found:
            return found[0]
        if not proc.is_alive():
            break
        time.sleep(0.05)
    proc.kill()
    out, err = (log.with_suffix(s).read_text()[-2000:] for s in (".out", ".err"))
    raise AssertionError(f"never printed {needle!r}; stdout: {out}; stderr: {err}")


def check_sigterm_and_exact_resume(name: str, common, tmp_path, monkeypatch, nets=("generator", "discriminator"),
                                   tags=("losses/d_loss", "losses/g_loss"), extra_iters: int = 2):
    """SIGTERM (a scheduler's preemption) during training: the run finishes its iteration, writes checkpoint.pt and
    exits 143. `--resume` from it, with torch.load emulating a GPU run (see _OnRunDevice), continues exactly: the
    logged `tags` and the final weights of `nets` equal those of one uninterrupted run to the same iteration.
    Returns (checkpoint iteration, the resumed run's folder)."""
    work, full = tmp_path / "preempted", tmp_path / "full"
    work.mkdir(), full.mkdir()
    # the child computes with as many threads as this process, which runs the resumed and the uninterrupted parts:
    # a convolution summed over another thread count differs in the last bits
    args = [*common, "--max-iters", 100000, "--num-eval-samples", 0, "--log-interval", 1, "--checkpoint-interval",
            100000]
    log = tmp_path / "preempted_run"
    proc = _FORKSERVER.Process(target=_script_child, args=(name, args, str(work), str(log), torch.get_num_threads()))
    proc.start()
    try:
        wait_for_log_line(proc, log, "iter ")
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout=120)
    finally:
        if proc.is_alive():
            proc.kill()
    err = log.with_suffix(".err").read_text()
    assert proc.exitcode == 143, f"exit {proc.exitcode}; stderr: {err[-2000:]}"
    assert "Traceback" not in err and "checkpoint" in err, err[-2000:]
    run = only_run_dir(work)
    assert not list(run.glob("*.tmp"))
    stopped_at = torch.load(run / "checkpoint.pt", weights_only=False)["iteration"]
    assert stopped_at >= 1
    n = stopped_at + extra_iters
    fake_gpu_load = _OnRunDevice()
    with monkeypatch.context() as m:
        m.setattr(torch, "load", fake_gpu_load)
        rc, out, err = run_inprocess(name, [*common, "--max-iters", n, "--num-eval-samples", 0, "--log-interval", 1,
                                            "--resume", run / "checkpoint.pt"], work)
    assert rc == 0, err[-3000:]
    assert fake_gpu_load.calls and all(c == "cpu" for c in fake_gpu_load.calls), fake_gpu_load.calls
    rc, out, err = run_inprocess(name, [*common, "--max-iters", n, "--num-eval-samples", 0, "--log-interval", 1], full)
    assert rc == 0, err[-3000:]
    a, b = losses(only_run_dir(full), tags), losses(run, tags)
    a = {t: [v for v in vals if v[0] > stopped_at] for t, vals in a.items()}
    b = {t: [v for v in vals if v[0] > stopped_at] for t, vals in b.items()}
    assert [s for s, _ in a[tags[0]]] == list(range(stopped_at + 1, n + 1))
    assert a == b  # the resumed iterations log exactly what the uninterrupted run logged
    ca = torch.load(only_run_dir(full) / "checkpoint.pt", weights_only=False)
    cb = torch.load(run / "checkpoint.pt", weights_only=False)
    for net in nets:
        assert all(torch.equal(ca[net][k], cb[net][k]) for k in ca[net]), net
    return stopped_at, run


def check_eval_interval(name: str, common, tmp_path, nets=("generator", "discriminator"), n: int = 4,
                        every: int = 2) -> list:
    """`--eval-interval` writes samples_{iteration:07d}.npz with `iteration` and `train_seconds` (rising), and leaves
    training untouched: the final weights of `nets` equal those of a run without it. Returns the loaded npz files."""
    plain = _train(name, common, tmp_path / "plain", n)
    evald = _train(name, common, tmp_path / "eval", n, ["--eval-interval", every])
    ca = torch.load(plain / "checkpoint.pt", weights_only=False)
    cb = torch.load(evald / "checkpoint.pt", weights_only=False)
    for net in nets:
        assert all(torch.equal(ca[net][k], cb[net][k]) for k in ca[net]), net
    files = sorted(evald.glob("samples_*.npz"))
    assert [f.name for f in files] == [f"samples_{i:07d}.npz" for i in range(every, n + 1, every)]
    assert not list(plain.glob("samples_*.npz"))
    loaded = [dict(np.load(f)) for f in files]
    assert [int(d["iteration"]) for d in loaded] == list(range(every, n + 1, every))
    seconds = [float(d["train_seconds"]) for d in loaded]
    assert all(s > 0 for s in seconds) and seconds == sorted(seconds)
    return loaded


def check_failed_download_leaves_nothing(name: str, args, tmp_path, monkeypatch, must_mention: str = "download"):
    """With the network down, `--download` into a folder that does not exist yet ends with one line (exit 1) and
    leaves no folder behind, not even an empty one."""
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    target = tmp_path / "fresh" / "data"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    check_bad_input(name, [*args, "--data-dir", target, "--download"], cwd, 1, must_mention)
    assert not target.exists(), f"{target} was left behind"


def record_download_timeouts(monkeypatch) -> list:
    """Patch urllib so that every urlopen call appends its timeout to the returned list (and still reads the URL),
    and urlretrieve, which has no timeout (a stalled mirror would hang the run), fails the test."""
    import urllib.request

    real_urlopen, timeouts = urllib.request.urlopen, []

    def urlopen(url, *a, **k):
        timeouts.append(k.get("timeout"))
        return real_urlopen(url, *a, **k)

    def no_timeout(*a, **k):
        raise AssertionError("urlretrieve has no timeout")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(urllib.request, "urlretrieve", no_timeout)
    return timeouts


def scalar_means(run_dir, tags, last: int) -> dict:
    """Mean of the last `last` logged values of each tag."""
    scalars = read_scalars(run_dir)
    return {t: float(np.mean([v for _, v in scalars[t][-last:]])) for t in tags}


def scores_on_checkpoint(name: str, run_dir, real, score, real_labels=None):
    """D's verdict taken apart from the run's own bookkeeping: the network rebuilt from checkpoint.pt by the test's
    `score(module, ckpt, x, labels)` (x on [-1, 1]) on the training images `real` (uint8) and on the run's final
    samples (samples.npz, drawn as the script draws them). The logged d_real / d_fake come from the same variables
    as D's loss, so a swap of real and fake at D's forward passes would swap them too; these scores would not.
    Returns (mean score on real, mean score on fake)."""
    module, ckpt = load_script(name), torch.load(Path(run_dir) / "checkpoint.pt", weights_only=False)
    samples = np.load(Path(run_dir) / "samples.npz")
    n = min(len(real), len(samples["images"]))
    fake_labels = torch.as_tensor(samples["labels"][:n]) if "labels" in samples else None
    real_labels = None if real_labels is None else torch.as_tensor(real_labels[:n])
    with torch.no_grad():
        on_real = score(module, ckpt, torch.as_tensor(real[:n]).float() / 127.5 - 1, real_labels)
        on_fake = score(module, ckpt, torch.as_tensor(samples["images"][:n]).float() / 127.5 - 1, fake_labels)
    return on_real.float().mean().item(), on_fake.float().mean().item()
