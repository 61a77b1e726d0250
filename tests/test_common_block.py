"""The common block: one text in all ten scripts, and the five faults of the copies it replaced (issue 33).

1. optimiser states take their parameter's layout after loading (CPU checkpoint -> channels_last weights, fused Adam);
2. a DDP-wrapped network does not broadcast buffers before each forward (pix2pix's BatchNorm D on CUDA);
3. SIGTERM to the whole process group while streaming workers run: checkpoint and exit 143;
4. an abnormal exit while streaming ends within seconds;
5. checkpoints are fsynced before the rename, and the folder after it.
"""
import copy
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
import torchvision
from common_block import IMAGE_SCRIPTS, SCRIPTS, block
from helpers import (
    ROOT,
    load_script,
    only_run_dir,
    run_dirs,
    run_inprocess,
    start_forked,
    wait_for_log_line,
    write_mnist,
)
from torch.utils.tensorboard import SummaryWriter

dcgan = load_script("dcgan")


def test_common_block_is_the_same_text_in_all_ten_scripts_and_the_data_blocks_in_theirs():
    texts = {name: block(name) for name in SCRIPTS}
    assert all(texts.values()), [n for n, t in texts.items() if not t]
    assert len(set(texts.values())) == 1, "differs: " + ", ".join(n for n, t in texts.items() if t != texts["dcgan"])
    images = {name: block(name, "image") for name in IMAGE_SCRIPTS}
    assert all(images.values()) and len(set(images.values())) == 1
    assert block("pix2pix", "image") is None and block("cyclegan", "image") is None
    assert block("pix2pix", "i2i") is not None and block("pix2pix", "i2i") == block("cyclegan", "i2i")
    assert all(block(name, "i2i") is None for name in IMAGE_SCRIPTS)


def test_common_block_comes_after_the_paper_and_before_main():
    for name in SCRIPTS:
        text = (ROOT / f"{name}.py").read_text()
        assert text.index("class Args") < text.index("def train(") < text.index("CleanGAN common block")
        assert text.rstrip().endswith('if __name__ == "__main__":\n    train(tyro.cli(Args))'), name


def test_image_data_block_reads_a_folder_the_same_in_memory_and_streamed(tmp_path):
    """folder_images (dcgan, lsgan, wgan, wgan_gp and began's --dataset folder): every .jpg/.png of any tree, sorted;
    each centre-cropped to a square (a wide image loses its sides, a tall one its top and bottom) and resized. Under
    --in-memory-limit-mb one uint8 tensor, above it the FolderImages themselves, item for item the same images."""
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    wide = torch.zeros(3, 20, 40, dtype=torch.uint8)
    wide[:, :, 10:30] = 200  # the centre square is bright, the sides dark
    tall = torch.full((3, 40, 20), 50, dtype=torch.uint8)
    tall[:, 10:30, :] = 100
    torchvision.io.write_png(wide, str(tmp_path / "a" / "1.png"))
    torchvision.io.write_png(tall, str(tmp_path / "a" / "deeper" / "2.PNG"))
    (tmp_path / "notes.txt").write_text("not an image")
    in_memory = dcgan.folder_images(str(tmp_path), 10, in_memory_limit_mb=1)
    streamed = dcgan.folder_images(str(tmp_path), 10, in_memory_limit_mb=0)
    assert isinstance(in_memory, torch.Tensor) and isinstance(streamed, dcgan.FolderImages)
    assert in_memory.shape == (2, 3, 10, 10) and in_memory.dtype == torch.uint8 and len(streamed) == 2
    assert torch.equal(torch.stack([streamed[0], streamed[1]]), in_memory)
    assert torch.equal(in_memory[0], torch.full((3, 10, 10), 200, dtype=torch.uint8))
    assert torch.equal(in_memory[1], torch.full((3, 10, 10), 100, dtype=torch.uint8))


def tiny_gan(data) -> list:
    """gan.py at a tiny width on the tiny MNIST in `data`, no eval samples: the plumbing tests' run."""
    return ["--data-dir", data, "--no-download", "--no-cuda", "--hidden-dim", 32, "--maxout-units", 8,
            "--num-eval-samples", 0]


# ----------------------------------------------------------------------------- fault 1: optimiser state layout
def test_optimiser_states_take_their_parameters_layout_and_fused_adam_steps():
    """A checkpoint written from a contiguous network (CPU run) loaded into a channels_last one (a GPU run): plain
    load_state_dict keeps the saved strides, which fused Adam cannot use (on CUDA it raises; on the CPU it pairs the
    wrong elements); the block's load_state gives every state its parameter's layout, and the step equals plain Adam."""
    torch.manual_seed(0)
    src = dcgan.Generator(8, 4, 1, 32)
    opt = torch.optim.Adam(src.parameters(), lr=1e-3)
    src(torch.randn(4, 8, 1, 1)).square().mean().backward()
    opt.step()
    saved_net, saved_opt = src.state_dict(), opt.state_dict()
    results = []
    for fused in (False, True):
        net = dcgan.Generator(8, 4, 1, 32).to(memory_format=torch.channels_last)
        net.load_state_dict(saved_net)
        fresh = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)
        dcgan.load_state(fresh, copy.deepcopy(saved_opt))  # as read from a file: nothing shared with `opt`
        for p in net.parameters():
            for k in ("exp_avg", "exp_avg_sq"):
                assert fresh.state[p][k].stride() == p.stride(), (k, p.shape)
        torch.manual_seed(1)
        net(torch.randn(4, 8, 1, 1)).square().mean().backward()
        fresh.step()
        results.append([p.detach().clone() for p in net.parameters()])
    for plain, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    weight = [p for p in net.parameters() if p.ndim == 4][1]
    assert not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- fault 2: DDP buffers
def test_ddp_does_not_broadcast_buffers(monkeypatch):
    """Under torchrun, Run.prepare wraps with broadcast_buffers=False: DDP's buffer copy before D's second forward
    would modify the running statistics that cuDNN's BatchNorm backward saved (pytorch/pytorch#175024)."""
    made = []
    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", lambda module, **kw: made.append(kw) or module)
    for name in ("pix2pix", "dcgan"):
        run = load_script(name).Run.__new__(load_script(name).Run)
        run.world, run.args = 2, load_script(name).Args(compile=False)
        d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        assert run.prepare(d) is d and run.prepare(d, ddp=False) is d
    assert made == [{"broadcast_buffers": False}] * 2


# ----------------------------------------------------------------------------- fault 5: durable checkpoints
def test_save_atomic_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(os.readlink(f"/proc/self/fd/{fd}"))))  # (fsync, of a folder?)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", None)) or real_replace(a, b))
    for name in ("dcgan", "cyclegan"):
        events.clear()
        load_script(name).save_atomic({"x": torch.ones(3)}, str(tmp_path / f"{name}.pt"))
        assert events == [("fsync", False), ("replace", None), ("fsync", True)], (name, events)
        assert torch.load(tmp_path / f"{name}.pt")["x"].sum() == 3 and not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_that_cannot_be_written_ends_the_run_in_one_line_and_keeps_the_last_one(tmp_path, monkeypatch):
    """A full disk at the second checkpoint: torch.save raises a RuntimeError with the OSError as its context (as it
    does on a full tmpfs); the run ends with one line naming the file and the cause, exit 1, the partial temporary
    file removed (it would hold the space a rerun needs) and the first checkpoint intact."""
    real_save, calls = torch.save, []

    def save_on_a_disk_that_fills(obj, f):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f)
        f.write(b"the first bytes")
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    writers = []

    class KeptWriter(SummaryWriter):  # in this process the run's writer outlives it: closed below, in its folder
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            writers.append(self)

    monkeypatch.setattr(torch, "save", save_on_a_disk_that_fills)
    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", KeptWriter)
    monkeypatch.chdir(tmp_path)
    data = write_mnist(tmp_path / "data")
    flags = [*tiny_gan(data), "--max-iters", 3, "--checkpoint-interval", 1]
    code, _, err = run_inprocess("gan", flags, tmp_path)
    for writer in writers:
        writer.close()
    run_dir = only_run_dir(tmp_path)
    assert code == 1 and err.strip().splitlines() == [
        f"gan.py: error: cannot write runs/{run_dir.name}/checkpoint.pt ([Errno 28] No space left on device); the "
        "file it would replace is unchanged"], err
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["iteration"] == 1
    assert not list(run_dir.glob("*.tmp"))


# ----------------------------------------------------------------------------- faults 3 and 4: streaming workers
def write_folder(root, n=24, size=40):
    """An ImageFolder tree (one class) of n RGB PNGs."""
    (root / "c").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        torchvision.io.write_png(torch.randint(0, 255, (3, size, size), dtype=torch.uint8, generator=g),
                                 str(root / "c" / f"{i}.png"))
    return root


def streamed_run(name, tmp_path):
    """(flags, cwd) of a run that streams its data through 2 DataLoader workers."""
    if name == "cyclegan":
        from test_cyclegan import write_unaligned
        data = write_unaligned(tmp_path / "data" / "facades_cyclegan", counts=(8, 8, 2, 2)).parent
        flags = ["--data-dir", data, "--img-size", 32, "--ngf", 4, "--ndf", 4, "--n-blocks", 1,
                 "--in-memory-limit-mb", 0, "--num-workers", 2]
    elif name == "pix2pix":
        from test_pix2pix import make_ab_dataset
        flags = ["--dataset", "folder", "--data-dir", make_ab_dataset(tmp_path / "ab", n_train=8), "--img-size", 32,
                 "--ngf", 4, "--ndf", 4, "--in-memory-limit-mb", 0, "--num-workers", 2]
    elif name == "began":
        flags = ["--dataset", "folder", "--data-dir", write_folder(tmp_path / "imgs"), "--img-size", 16,
                 "--num-filters", 4, "--h-dim", 8, "--batch-size", 4, "--in-memory-limit-mb", 0, "--num-workers", 2]
    else:  # dcgan
        flags = ["--dataset", "folder", "--data-dir", write_folder(tmp_path / "imgs"), "--ngf", 4, "--ndf", 4,
                 "--latent-dim", 8, "--batch-size", 4, "--in-memory-limit-mb", 0, "--workers", 2]
    cwd = tmp_path / "work"
    cwd.mkdir()
    return [*flags, "--no-cuda", "--num-eval-samples", 0, "--log-interval", 1], cwd


def start(name, flags, cwd):
    """The script as its own process group (as under torchrun, Slurm or docker), stdout and stderr to files."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out, err = open(cwd / "stdout", "w"), open(cwd / "stderr", "w")
    return subprocess.Popen([sys.executable, str(ROOT / f"{name}.py"), *map(str, flags)], cwd=cwd, stdout=out,
                            stderr=err, env=env, start_new_session=True)


@pytest.mark.parametrize("name", ["cyclegan", "dcgan", "began", "pix2pix"])
def test_sigterm_to_the_whole_process_group_while_streaming_checkpoints_and_exits_143(name, tmp_path):
    """The run is forked from the tests' fork server (torch already imported) into its own session, as
    `start_new_session=True`; its DataLoader workers fork from it into the same process group."""
    flags, cwd = streamed_run(name, tmp_path)
    log = tmp_path / "run"
    proc = start_forked(name, [*flags, "--max-iters", 100000, "--checkpoint-interval", 100000], cwd, log,
                        new_session=True)
    try:
        wait_for_log_line(proc, log, "iter 2/")
        os.killpg(proc.pid, signal.SIGTERM)  # the main process AND its DataLoader workers, as torchrun's shutdown does
        proc.join(timeout=60)
    finally:
        if proc.is_alive():
            os.killpg(proc.pid, signal.SIGKILL)
    err = log.with_suffix(".err").read_text()
    assert proc.exitcode == 143, f"exit {proc.exitcode}: {err[-2000:]}"
    assert "Traceback" not in err and "killed by signal" not in err and "stopped by SIGTERM" in err, err[-2000:]
    ckpt = torch.load(only_run_dir(cwd) / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] >= 2


def test_abnormal_exit_while_streaming_ends_within_seconds(tmp_path):
    """A non-finite loss (lambda_l1 = 1e39 overflows) while 2 workers stream: one line, exit 1, no hang at exit (the
    workers ignore SIGTERM, so multiprocessing's exit hook would wait for them forever if nothing ended them)."""
    flags, cwd = streamed_run("pix2pix", tmp_path)
    t0 = time.time()
    proc = start("pix2pix", [*flags, "--lambda-l1", 1e39, "--max-iters", 50], cwd)
    try:
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = (cwd / "stderr").read_text()
    assert code == 1 and "non-finite loss" in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert time.time() - t0 < 60


# ----------------------------------------------------------------------------- stop signals outside the loop
def test_ctrl_c_outside_the_training_loop_ends_the_run_at_once(tmp_path):
    """--eval-only (like reading the data and writing the final samples) has nothing new to checkpoint: Ctrl-C there
    ends the run within seconds, one line, exit 130. The copies before noted the signal and read it only in the
    training loop, so a Ctrl-C during a long --eval-only (or a stalled data read) was ignored to the end."""
    data = write_mnist(tmp_path / "data")
    cwd = tmp_path / "work"
    cwd.mkdir()
    flags = ["--data-dir", data, "--no-download", "--no-cuda", "--max-iters", 1, "--num-eval-samples", 0]
    code, _, err = run_inprocess("gan", flags, cwd)  # gan at its full width: 200,000 samples take ~20 s here
    assert code == 0, err
    ckpt = only_run_dir(cwd) / "checkpoint.pt"
    log = tmp_path / "eval"
    proc = start_forked("gan", ["--resume", ckpt, "--eval-only", "--no-cuda", "--num-eval-samples", 200_000], cwd,
                        log)
    try:
        wait_for_log_line(proc, log, "writing the final sample grid")
        os.kill(proc.pid, signal.SIGINT)
        t0 = time.time()
        proc.join(timeout=60)
    finally:
        if proc.is_alive():
            proc.kill()
    err = log.with_suffix(".err").read_text()
    assert proc.exitcode == 130 and time.time() - t0 < 10, f"exit {proc.exitcode} after {time.time() - t0:.0f} s"
    assert err.strip().splitlines() == ["stopped by SIGINT outside the training loop"], err[-2000:]
    assert not (ckpt.parent / "samples.npz").exists()


# ----------------------------------------------------------------------------- run folders
def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    """A sweep (a Slurm array, `for lr in ...; do python gan.py --lr $lr & done`) starts runs of one name and seed in
    the same second: runs/{dataset}__{exp_name}__{seed}__{unix time} must not be shared, or one run's checkpoint and
    events would overwrite the other's. Here every second's folder of the next minute is taken already."""
    data = write_mnist(tmp_path / "data")
    cwd = tmp_path / "work"
    now = int(time.time())
    taken = [cwd / "runs" / f"mnist__gan__1__{stamp}" for stamp in range(now - 1, now + 60)]
    for path in taken:
        path.mkdir(parents=True)
    flags = [*tiny_gan(data), "--max-iters", 1]
    code, _, err = run_inprocess("gan", flags, cwd)
    assert code == 0, err
    new = [p for p in run_dirs(cwd) if p not in taken]
    assert [p.name for p in new] == [f"mnist__gan__1__{now + 60}"] and (new[0] / "checkpoint.pt").exists()
    assert not any(any(p.iterdir()) for p in taken)


# ----------------------------------------------------------------------------- --track (W&B, offline)
def test_track_writes_an_offline_wandb_run(tmp_path):
    pytest.importorskip("wandb")
    data = write_mnist(tmp_path / "data")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    flags = ["--track", *tiny_gan(data), "--batch-size", 16, "--max-iters", 2]
    proc = subprocess.run([sys.executable, str(ROOT / "gan.py"), *map(str, flags)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, proc.stdout[-2000:]
    records = b"".join(p.read_bytes() for p in runs[0].rglob("*.wandb"))
    assert records, "no offline run file"
    assert b"losses/d_loss" in records and b"losses/g_loss" in records, "the TensorBoard scalars did not reach W&B"
