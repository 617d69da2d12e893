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
import yaml

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


def as_user(argv, home):
    env = dict(os.environ, HOME=str(home))
    env.pop("KSCRIBE_HOME", None)
    return unprivileged(argv), env


def serve(home, mode):
    # A home made by `kscribe init` as the same user, and an upstream kubeconfig it can read
    # (nothing listens there: serve does not dial upstream before a request).
    argv, env = as_user([KSCRIBE, "init", "--home", str(home / "k")], home)
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)
    kubeconfig = home / "upstream.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: up\n"
        "clusters:\n- name: up\n  cluster:\n    server: https://127.0.0.1:9\n"
        "    insecure-skip-tls-verify: true\n"
        "users:\n- name: up\n  user:\n    token: fake-test-token\n"
        "contexts:\n- name: up\n  context:\n    cluster: up\n    user: up\n")
    cfg = home / "k" / "config.yaml"
    c = yaml.safe_load(cfg.read_text()) or {}
    c["attribution"] = mode
    c.setdefault("listen", {})["port"] = 0
    c["upstream"] = {"kubeconfig": str(kubeconfig), "context": "up"}
    c.setdefault("metrics", {})["enabled"] = False
    cfg.write_text(yaml.safe_dump(c, sort_keys=False))
    if os.geteuid() == 0:
        for p in (kubeconfig, cfg):
            os.chown(p, NOBODY, NOBODY)
    argv, env = as_user([KSCRIBE, "serve", "--home", str(home / "k"), "--config", str(cfg)], home)
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)


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
