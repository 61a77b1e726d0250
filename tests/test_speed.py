"""benchmarks/speed.py: each script's speed alone, one run at a time; the busy-machine guard; run.py's hook."""
import json
import os
import shlex
import sys
import time

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT))
from benchmarks import run as bench  # noqa: E402
from benchmarks import speed  # noqa: E402

TOP_FIELDS = {"threads", "cpu", "cores", "torch", "commit", "measured", "load_before", "forced", "scripts"}
ENTRY_FIELDS = {"it_per_s", "images_per_s", "warmup_iters", "timed_iters", "seconds", "command", "started",
                "finished"}


@pytest.fixture
def quiet(monkeypatch):
    """A quiet machine: low load average, no other process using the CPU (no 2 s samples either; the machine's busy
    time during a run unknown, as where there is no /proc/stat)."""
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.2, 0.3))
    monkeypatch.setattr(speed, "busy_cores", lambda seconds=2.0: 0.0)
    monkeypatch.setattr(speed, "cpu_busy_seconds", lambda: None)


def test_measures_scripts_alone_one_at_a_time(quiet, mnist_root, tmp_path, monkeypatch):
    """gan's CPU line on tiny MNIST, a real run of 2 warm-up + 3 timed iterations; then cgan's, whose run (another
    ~5 s interpreter start) is stood in for by a timed pause that reports the window the same flags give: its entry
    (command, flags, images per iteration) is still built by speed.py, and the two runs' spans must not overlap."""
    real_measure, measured = speed.measure, []

    def measure(script, flags, warmup, threads, work, tag):
        measured.append(script)
        if script == "gan":
            return real_measure(script, flags, warmup, threads, work, tag)
        started = time.time()
        time.sleep(0.2)
        timed = int(bench.flag_value(flags, "--max-iters")) - warmup
        return {"it_per_s": timed / 0.2, "warmup_iters": warmup, "timed_iters": timed, "seconds": 0.2,
                "logged_points": timed + 1, "started": started, "finished": time.time(), "other_cpu_s": None}

    monkeypatch.setattr(speed, "measure", measure)
    out = tmp_path / "speed.json"
    args = speed.Args(data_dir=str(mnist_root), scripts=("gan", "cgan"), warmup=2, iters=3, wait=0, out=str(out))
    assert speed.main(args, ["--epochs", "1000"]) == 0  # tiny MNIST: 2 batches an epoch
    assert measured == ["gan", "cgan"]  # --iters: no probe runs
    result = json.loads(out.read_text())
    assert TOP_FIELDS <= set(result) and result["threads"] == 1 and result["cores"] >= 1
    assert result["load_before"] == [0.1, 0.2, 0.3] and result["forced"] is False and not result["warnings"]
    assert result["commit"] and result["cpu"] and result["torch"] and result["measured"]
    assert list(result["scripts"]) == ["gan", "cgan"]
    for name, batch in [("gan", 100), ("cgan", 50)]:
        entry = result["scripts"][name]
        assert ENTRY_FIELDS <= set(entry), entry
        assert entry["warmup_iters"] == 2 and entry["timed_iters"] == 3 and entry["seconds"] > 0
        assert entry["it_per_s"] == pytest.approx(3 / entry["seconds"])
        assert entry["images_per_s"] == pytest.approx(entry["it_per_s"] * batch)
        cmd = shlex.split(entry["command"])
        assert cmd[:4] == ["OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "python", f"{name}.py"]
        # the CPU line first (its --max-iters replaced), then the measurement's flags
        line = bench.without(bench.CPU_LINES[name].flags, ["--max-iters"])
        assert cmd[4:4 + len(line)] == line
        for flag, value in [("--max-iters", "5"), ("--eval-interval", "0"), ("--log-interval", "1"),
                            ("--num-eval-samples", "0"), ("--sample-interval", speed.BIG),
                            ("--checkpoint-interval", speed.BIG), ("--epochs", "1000")]:
            assert bench.flag_value(cmd, flag) == value, flag
        assert "--no-download" in cmd and "--no-cuda" in cmd
        assert speed.minutes(name, 6000, out) == pytest.approx(6000 / entry["it_per_s"] / 60)
    spans = sorted((e["started"], e["finished"]) for e in result["scripts"].values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans  # never two at once


def test_busy_machine_is_refused_unless_forced(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 1.5, 1.0))
    monkeypatch.setattr(speed, "busy_cores", lambda seconds=2.0: 0.0)
    ran = []

    def fake_measure(script, args, extra, work):
        ran.append(script)
        return {"it_per_s": 10.0, "images_per_s": 1000.0, "warmup_iters": 20, "timed_iters": 200, "seconds": 20.0,
                "command": f"python {script}.py", "started": 1.0, "finished": 2.0, "run_seconds": 40.0,
                "other_cpu_s": 0.0 if script == "gan" else 9.0}

    monkeypatch.setattr(speed, "measure_script", fake_measure)
    out = tmp_path / "speed.json"
    args = speed.Args(scripts=("gan",), wait=0, out=str(out))
    assert speed.main(args) == 2
    assert not ran and not out.exists()
    assert "load average 2.00" in capsys.readouterr().err

    assert speed.main(speed.Args(scripts=("gan",), wait=0, out=str(out), force=True)) == 0
    result = json.loads(out.read_text())
    assert ran == ["gan"] and result["forced"] is True and result["load_before"] == [2.0, 1.5, 1.0]
    assert "load average" in result["warnings"][0]
    assert result["scripts"]["gan"]["load_before"] == [2.0, 1.5, 1.0]

    # a load that falls while it waits: measured, not forced
    loads = iter([(2.0, 1.5, 1.0), (0.3, 1.4, 1.0)])
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    monkeypatch.setattr(speed.time, "sleep", lambda s: None)
    assert speed.main(speed.Args(scripts=("cgan",), wait=60, out=str(out))) == 0
    result = json.loads(out.read_text())
    assert ran == ["gan", "cgan"] and result["forced"] is False and result["load_before"] == [0.3, 1.4, 1.0]
    assert set(result["scripts"]) == {"gan", "cgan"}  # the earlier entry is kept (same thread count)
    # other processes took 9 CPU seconds of cgan's 40: recorded and warned about
    assert result["scripts"]["cgan"]["other_cpu_s"] == 9.0 and "not alone" in result["warnings"][0]
    # a machine busy before a later script (other processes on the CPU, whatever the load average)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(speed, "busy_cores", lambda seconds=2.0: 0.0 if len(ran) < 3 else 1.0)
    assert speed.main(speed.Args(scripts=("gan", "dcgan"), wait=0, out=str(out))) == 2
    assert ran[2:] == ["gan"] and "other processes use 1.00 cores" in capsys.readouterr().err


def test_a_failed_script_is_reported(quiet, monkeypatch, tmp_path):
    out = tmp_path / "speed.json"
    out.write_text(json.dumps({"threads": 1, "scripts": {"gan": {"it_per_s": 1.0}, "cgan": {"it_per_s": 2.0}}}))

    def broken(*args, **kwargs):
        raise RuntimeError("gan.py exited 2: bad flag")

    monkeypatch.setattr(speed, "measure", broken)
    assert speed.main(speed.Args(scripts=("gan",), wait=0, out=str(out))) == 3
    result = json.loads(out.read_text())
    assert result["failed"] == {"gan": "gan.py exited 2: bad flag"}
    assert result["scripts"] == {"cgan": {"it_per_s": 2.0}}  # no stale speed for the failed script


def test_window_plan():
    assert speed.plan("gan", 40.0, speed.Args()) == (20, 800, 10)  # 20 s at 40 it/s, 4 logged points a second
    assert speed.plan("wgan", 8.0, speed.Args(warmup=5)) == (30, 160, 2)  # past WGAN's 25 100-critic-step iterations
    assert speed.plan("wgan", 100.0, speed.Args()) == (50, 450, 25)  # and short of its 501st
    assert speed.plan("cyclegan", 0.3, speed.Args()) == (20, speed.MIN_TIMED, 1)
    assert speed.plan("dcgan", 13.0, speed.Args(warmup=21)) == (21, 261, 3)  # whole log intervals
    assert speed.plan("gan", None, speed.Args(iters=7)) == (20, 7, 1)


def test_images_per_iteration_and_minutes():
    def flags(name):
        return list(bench.CPU_LINES[name].flags)

    assert speed.images_per_iter("gan", flags("gan")) == 100
    assert speed.images_per_iter("cgan", flags("cgan")) == 50
    assert speed.images_per_iter("wgan", flags("wgan")) == 64 * 5  # a fresh batch per critic step
    assert speed.images_per_iter("wgan_gp", [*flags("wgan_gp"), "--n-critic", "3"]) == 50 * 3
    assert speed.images_per_iter("cyclegan", flags("cyclegan")) == 1
    measured = {"scripts": {"gan": {"it_per_s": 20.0, "command": "python gan.py"},
                            "wgan": {"it_per_s": 6.0, "command": "python wgan.py --n-critic 5"}}}
    assert speed.minutes("gan", 6000, measured) == pytest.approx(5.0)
    # WGAN: iterations 1-25, 501, 1001, 1501 take 100 critic steps: (100 + 1) / (5 + 1) ordinary iterations each
    assert speed.minutes("wgan", 2000, measured) == pytest.approx((2000 + 28 * 95 / 6) / 6.0 / 60)
    measured["scripts"]["wgan"]["command"] += " --no-critic-warmup"
    assert speed.minutes("wgan", 2000, measured) == pytest.approx(2000 / 6.0 / 60)


def test_run_py_speed_only_calls_speed(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(speed, "main", lambda args, extra=(): calls.append((args, list(extra))) or 0)
    args = bench.Args(speed_only=True, scripts=("gan", "dcgan"), data_dir="D", results_dir=str(tmp_path))
    assert bench.main(args, ["--epochs", "3"]) == 0
    (got, extra), = calls
    assert got.scripts == ("gan", "dcgan") and got.data_dir == "D" and got.out == str(tmp_path / "speed.json")
    assert extra == ["--epochs", "3"] and not (tmp_path / "metrics.json").exists()
    with pytest.raises(SystemExit) as e:
        bench.main(bench.Args(preset="smoke", speed_only=True), [])
    assert e.value.code == 2
