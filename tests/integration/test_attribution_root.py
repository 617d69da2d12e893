"""Attribution through `kscribe serve` as root: the real BPF program, attached by the daemon.

- `attribution: required` starts as root, attaches sockops to the cgroup v2 root, exports its
  counters and detaches on SIGTERM (exit 0).
- A kubectl run through the proxy is attributed to that kubectl process (its pid, or the child
  the kubectl version dispatcher runs, whose parent it is), with kubectl's exe and comm.
Skips when not root.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import shutil

import pytest

import harness

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: loads and attaches the BPF program")


def attached_programs():
    """sockops programs attached to the cgroup v2 root, per bpftool."""
    with open("/proc/mounts") as f:
        root = next(l.split()[1] for l in f if l.split()[2] == "cgroup2")
    out = subprocess.run(["bpftool", "cgroup", "show", root], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if "sock_ops" in l and "kscribe_sockops" in l]


def test_serve_required_attaches_and_detaches(kscribe_bin):
    home = tempfile.mkdtemp(prefix="kscribe-attr-root-")
    try:
        cfg = os.path.join(home, "config.yaml")
        with open(cfg, "w") as f:
            f.write("attribution: required\nlisten:\n  port: 0\nmetrics:\n  enabled: false\n"
                    "log:\n  level: debug\n")
        before = len(attached_programs())
        proc = subprocess.Popen([kscribe_bin, "serve", "--home", home, "--config", cfg],
                                stderr=subprocess.PIPE, text=True)
        lines = []
        threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
        try:
            harness.wait_for(lambda: "serving" in "".join(lines) or proc.poll() is not None, 20,
                             "kscribe serve to start")
            log = "".join(lines)
            assert proc.poll() is None, log
            assert "attribution: sockops attached to cgroup" in log, log
            assert len(attached_programs()) == before + 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            time.sleep(0.2)
            assert "attribution counters: connect=" in "".join(lines)
            assert len(attached_programs()) == before, "the bpf_link outlived kscribe"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(home, ignore_errors=True)


PROXY = os.path.exists(os.path.join(harness.SOURCE_DIR, "proxy", "server.cc"))


@pytest.mark.skipif(not PROXY, reason="needs the proxy (proxy/server.cc) on main")
def test_kubectl_through_the_proxy_is_attributed_to_kubectl(workdir, apiserver, kscribe_bin):
    proxy = harness.Kscribe(os.path.join(workdir, "kscribe-attr"), apiserver,
                            extra_config={"attribution": "required", "log": {"level": "debug"}})
    try:
        proxy.start()
        kc = harness.Kubectl(proxy.kubeconfig, os.path.join(workdir, "kc-attr"))
        env = kc.env()
        p = subprocess.Popen([harness.KUBECTL, "get", "pods", "-n", "default", "-o", "name"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        time.sleep(0.3)
        log = proxy.log()
        seen = [dict(re.findall(r"(\w+)=(\S*)", l)) for l in log.splitlines()
                if "attribution: fd" in l and "tgid=" in l]
        assert seen, "no attributed connection in the kscribe log:\n" + log
        assert "unattributed" not in log, log
        for a in seen:
            assert a["tgid"] == str(p.pid) or a["ppid"] == str(p.pid), (p.pid, a)
            assert os.path.basename(a["exe"]).startswith("kubectl"), a
            assert a["uid"] == "0"
    finally:
        rc = proxy.stop()
        if rc not in (0, None):
            harness.dump_logs(proxy)
