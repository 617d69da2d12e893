"""Attribution through `kscribe serve` as root: the real BPF program, attached by the daemon.

- `attribution: required` starts as root, attaches sockops to the cgroup v2 root, exports its
  counters and detaches on SIGTERM (exit 0).
- A kubectl run through the proxy is attributed to that kubectl process (its pid, or the child
  the kubectl version dispatcher runs, whose parent it is), with kubectl's exe and comm.
Skips when not root.
"""
import os
import re
import subprocess
import time

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


def test_serve_required_attaches_and_detaches(workdir, apiserver, kscribe_bin):
    before = len(attached_programs())
    proxy = harness.Kscribe(os.path.join(workdir, "kscribe-attach"), apiserver,
                            extra_config={"attribution": "required", "log": {"level": "debug"}})
    try:
        proxy.start()
        log = proxy.log()
        assert "attribution: sockops attached to cgroup" in log, log
        assert len(attached_programs()) == before + 1
    finally:
        rc = proxy.stop()
    assert rc == 0, proxy.log()
    assert "attribution counters: connect=" in proxy.log()
    assert len(attached_programs()) == before, "the bpf_link outlived kscribe"


PROXY = os.path.exists(os.path.join(harness.SOURCE_DIR, "proxy", "server.cc"))


@pytest.mark.skipif(not PROXY, reason="needs the proxy (proxy/server.cc) on main")
def test_kubectl_through_the_proxy_is_attributed_to_kubectl(workdir, apiserver, kscribe_bin):
    proxy = harness.Kscribe(os.path.join(workdir, "kscribe-attr"), apiserver,
                            extra_config={"attribution": "required", "log": {"level": "debug"}})
    try:
        proxy.start()
        kc = harness.Kubectl(proxy.kubeconfig, os.path.join(workdir, "kc-attr"))
        env = kc.env()
        # Only what kubectl opened: start() itself probed the port from this process.
        harness.wait_for(lambda: "attribution: fd" in proxy.log(), 10, "the readiness probe's line")
        skip = len(proxy.log())
        p = subprocess.Popen([harness.KUBECTL, "get", "pods", "-n", "default", "-o", "name"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        time.sleep(0.3)
        log = proxy.log()[skip:]
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
