"""`kscribe serve` and the attribution modes when BPF cannot run (here: as an unprivileged user).

`required` refuses to start and says what is missing (exit 1); `optional` starts and marks every
connection unavailable; `off` never tries. As root the tests drop to nobody (setpriv) so the BPF
side really cannot start; as a non-root user they run as that user.
"""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

SRC = pathlib.Path(os.environ.get("KSCRIBE_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
KSCRIBE = os.environ.get("KSCRIBE_BIN", str(SRC / "build" / "kscribe"))
NOBODY = 65534


@pytest.fixture
def home():
    # Readable and writable by nobody: pytest's tmp_path sits under a root-only directory.
    d = pathlib.Path(tempfile.mkdtemp(prefix="kscribe-attr-", dir="/tmp"))
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        os.chown(d, NOBODY, NOBODY)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def unprivileged(args):
    if os.geteuid() == 0:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--inh-caps=-all", *args]
    return args


def serve(home, mode):
    cfg = home / "config.yaml"
    cfg.write_text(f"attribution: {mode}\nlisten:\n  port: 0\nmetrics:\n  enabled: false\n")
    if os.geteuid() == 0:
        os.chown(cfg, NOBODY, NOBODY)
    env = dict(os.environ, HOME=str(home))
    return subprocess.Popen(unprivileged([KSCRIBE, "serve", "--home", str(home), "--config", str(cfg)]),
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for(proc, text, timeout=15):
    """stderr of proc until `text` shows up, proc exits, or timeout."""
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and text not in "".join(lines):
        time.sleep(0.05)
    return "".join(lines)


def test_required_refuses_without_root_and_says_which(home):
    proc = serve(home, "required")
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "attribution: required" in err
    assert "not root" in err and "CAP_BPF" in err, err
    assert "serving" not in err


@pytest.mark.parametrize("mode,expect", [("optional", "attribution: unavailable"),
                                         ("off", "attribution: off")])
def test_serve_runs_without_bpf(home, mode, expect):
    proc = serve(home, mode)
    try:
        err = wait_for(proc, "serving")
        assert proc.poll() is None, err
        assert expect in err, err
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.returncode == 0
    finally:
        proc.kill()
