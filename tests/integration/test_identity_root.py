"""Verified agent identity through `kscribe serve` as root, with the real BPF attribution.

An agent's kubeconfig works only from a process that matches the agent's selectors (uid, cgroup,
pod namespace); the same kubeconfig from another uid or another cgroup gets a 403 Status saying
the credential does not belong to this workload; `identity.on_mismatch: record` lets it through.
Skips when not root.
"""
import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

import harness

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: attaches the BPF program and makes cgroups")

DENIED = "kscribe: credential does not belong to this workload"
NOBODY = 65534


def cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    pytest.skip("no cgroup v2 mount")


class Cgroups:
    """Test cgroups under the cgroup2 root; remove() moves leftovers out and rmdirs, deepest
    first."""

    def __init__(self):
        self.root = cgroup2_root()
        self.made = []

    def make(self, rel):
        path = os.path.join(self.root, rel.strip("/"))
        parts = rel.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = os.path.join(self.root, *parts[:i])
            if not os.path.isdir(p):
                os.mkdir(p)
                self.made.append(p)
        return path

    def remove(self):
        for p in reversed(self.made):
            try:
                with open(os.path.join(p, "cgroup.procs")) as f:
                    pids = [l.strip() for l in f if l.strip()]
                for pid in pids:
                    try:
                        with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                            f.write(pid)
                    except OSError:
                        pass
                os.rmdir(p)
            except OSError:
                pass
        self.made = []


@pytest.fixture
def cgroups():
    c = Cgroups()
    try:
        yield c
    finally:
        c.remove()


@pytest.fixture(autouse=True)
def no_node_name(monkeypatch):
    # The pod directory lists every pod of the test server when no node is named.
    monkeypatch.delenv("NODE_NAME", raising=False)


class Serve:
    """`kscribe serve` with attribution required and agents added with selectors."""

    def __init__(self, workdir, apiserver, agents, identity=None, extra=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.home = harness.KscribeHome(os.path.join(workdir, "home"))
        self.home.init()
        self.port = harness.free_port()
        self.settings = {
            "listen": {"address": "127.0.0.1", "port": self.port},
            "upstream": {"kubeconfig": apiserver.kubeconfig, "context": "kscribe-test"},
            "attribution": "required",
            "metrics": {"enabled": False},
            "log": {"level": "debug"},
        }
        self.settings.update(extra or {})
        self.home.configure(**self.settings)
        self.kubeconfigs = {}
        for name, flags in agents.items():
            self.home.run("agent", "add", name, "--home", self.home.path, *flags)
            self.kubeconfigs[name] = os.path.join(self.home.path, "agents", name, "kubeconfig")
        self.home.configure(**self.settings)
        if identity:
            # Only the given keys: the agents `agent add` wrote stay as they are.
            with open(self.home.config) as f:
                cfg = yaml.safe_load(f)
            cfg.setdefault("identity", {}).update(identity)
            with open(self.home.config, "w") as f:
                yaml.safe_dump(cfg, f, sort_keys=False)
        self.process = harness.Process([self.home.bin, "serve", "--config", self.home.config],
                                       os.path.join(workdir, "kscribe.log"))

        def ready():
            if not self.process.alive():
                raise RuntimeError("kscribe serve exited: " + self.process.output())
            return self._connects()
        harness.wait_for(ready, 30, "kscribe serve to listen")

    def _connects(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def log(self):
        return self.process.output()

    def stop(self):
        rc = self.process.stop(30)
        if rc not in (0, None):
            harness.dump_logs(self.process)
        return rc


def run_kubectl(kubeconfig, home, args, cgroup=None, uid=None, timeout=60):
    """kubectl `args` with `kubeconfig`, optionally inside cgroup dir `cgroup` and as `uid`."""
    kc = harness.Kubectl(kubeconfig, home)
    env = kc.env()
    argv = [harness.KUBECTL, *args]
    if uid is not None:
        os.chown(home, uid, uid)
        argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"] + argv

    def enter():
        if cgroup:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
    p = subprocess.run(argv, env=env, capture_output=True, timeout=timeout,
                       preexec_fn=enter if cgroup else None)
    return harness.Result(args, p.returncode, p.stdout.decode(errors="replace"),
                          p.stderr.decode(errors="replace"))


def readable_copy(kubeconfig, name):
    """A copy of `kubeconfig` that user nobody can read (the home and workdir are root's 0700);
    the caller removes the returned directory."""
    d = harness.tmpdir("kscribe-it-%s-" % name)
    os.chmod(d, 0o755)
    dst = os.path.join(d, "kubeconfig")
    shutil.copy(kubeconfig, dst)
    os.chmod(dst, 0o644)
    home = os.path.join(d, "home")
    os.makedirs(home)
    return d, dst, home


def audit_lines(serve):
    path = os.path.join(serve.home.path, "audit", "audit.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


GET = ["get", "pods", "-n", "default", "-o", "name"]
# Refusals are checked with --raw: kubectl's discovery client drops a 403 Status's message
# ("Error from server (Forbidden): unknown"); a raw GET prints it.
RAW = ["get", "--raw", "/api/v1/namespaces/default/pods"]
# /usr/bin/kubectl may be a link (here into google-cloud-sdk); BPF sees the real file.
KUBECTL_EXE = os.path.realpath(harness.KUBECTL)


def allowed(serve, kubeconfig, home, **kw):
    """kubectl lists the pods through kscribe."""
    r = run_kubectl(kubeconfig, home, GET, **kw)
    assert r.rc == 0, r.stderr + serve.log()
    assert "pod/web-0" in r.stdout, r.stdout
    return r


def refused(kubeconfig, home, reason, **kw):
    """kscribe answers 403 with the identity refusal, naming `reason`."""
    r = run_kubectl(kubeconfig, home, RAW, **kw)
    assert r.rc != 0, r.stdout
    assert DENIED in r.stderr and reason in r.stderr, r.stderr
    return r


def test_uid_selector_allows_root_and_refuses_another_uid(workdir, apiserver, kscribe_bin):
    serve = Serve(os.path.join(workdir, "uid"), apiserver, {"agent-a": ["--uid", "0"]})
    try:
        kcfg = serve.kubeconfigs["agent-a"]
        allowed(serve, kcfg, os.path.join(workdir, "uid", "kc-root"))

        tmp, shared, home = readable_copy(kcfg, "nobody")
        try:
            bad = refused(shared, home, "uid 65534", uid=NOBODY)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        assert "identity: refused agent agent-a" in serve.log(), serve.log()
        assert "Forbidden" in bad.stderr or "403" in bad.stderr, bad.stderr
        time.sleep(1.5)  # the audit log is synced on sessions.sync_interval
        denied = [l for l in audit_lines(serve)
                  if str(l.get("status")) == "403" or l.get("decision") in ("denied", "refused")]
        assert denied, audit_lines(serve)
    finally:
        serve.stop()


def test_exe_selector(workdir, apiserver, kscribe_bin):
    serve = Serve(os.path.join(workdir, "exe"), apiserver,
                  {"agent-k": ["--exe", os.path.dirname(KUBECTL_EXE) + "/kubectl*"], "agent-x": ["--exe", "/opt/*"]})
    try:
        allowed(serve, serve.kubeconfigs["agent-k"], os.path.join(workdir, "exe", "k"))
        refused(serve.kubeconfigs["agent-x"], os.path.join(workdir, "exe", "x"), "exe")
    finally:
        serve.stop()


def test_cgroup_selector(workdir, apiserver, kscribe_bin, cgroups):
    a = cgroups.make("kscribe-test-a")
    b = cgroups.make("kscribe-test-b")
    serve = Serve(os.path.join(workdir, "cg"), apiserver,
                  {"agent-c": ["--cgroup", "/kscribe-test-a*"]})
    try:
        kcfg = serve.kubeconfigs["agent-c"]
        allowed(serve, kcfg, os.path.join(workdir, "cg", "a"), cgroup=a)
        refused(kcfg, os.path.join(workdir, "cg", "b"), "/kscribe-test-b", cgroup=b)
        # Not in any test cgroup (the runner's own) is refused too.
        refused(kcfg, os.path.join(workdir, "cg", "o"), "")
    finally:
        serve.stop()


def test_on_mismatch_record_lets_it_through(workdir, apiserver, kscribe_bin, cgroups):
    b = cgroups.make("kscribe-test-rb")
    serve = Serve(os.path.join(workdir, "rec"), apiserver,
                  {"agent-r": ["--cgroup", "/kscribe-test-a*"]},
                  identity={"on_mismatch": "record"})
    try:
        with open(serve.home.config) as f:
            cfg = yaml.safe_load(f)
        assert cfg["identity"]["on_mismatch"] == "record"
        assert [a["name"] for a in cfg["identity"]["agents"]] == ["agent-r"]
        r = allowed(serve, serve.kubeconfigs["agent-r"], os.path.join(workdir, "rec", "b"),
                    cgroup=b)
        assert DENIED not in r.stderr
    finally:
        serve.stop()


def test_sessions_keyed_by_workload(workdir, apiserver, kscribe_bin, cgroups):
    a = cgroups.make("kscribe-test-sa")
    b = cgroups.make("kscribe-test-sb")
    serve = Serve(os.path.join(workdir, "sess"), apiserver,
                  {"agent-s": ["--cgroup", "/kscribe-test-s*"]})
    try:
        kcfg = serve.kubeconfigs["agent-s"]
        for _ in range(3):
            allowed(serve, kcfg, os.path.join(workdir, "sess", "a"), cgroup=a)
        allowed(serve, kcfg, os.path.join(workdir, "sess", "b"), cgroup=b)
    finally:
        serve.stop()
    sessions = os.path.join(serve.home.path, "sessions")
    ids = {}
    for dirpath, _, files in os.walk(sessions):
        for fn in files:
            if not fn.endswith(".jsonl"):
                continue
            with open(os.path.join(dirpath, fn)) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    sid = rec.get("session_id") or rec.get("session")
                    text = json.dumps(rec)
                    for tag in ("/kscribe-test-sa", "/kscribe-test-sb"):
                        if tag in text and sid:
                            ids.setdefault(tag, set()).add(sid)
    assert len(ids.get("/kscribe-test-sa", ())) == 1, ids
    assert len(ids.get("/kscribe-test-sb", ())) == 1, ids
    assert ids["/kscribe-test-sa"] != ids["/kscribe-test-sb"], ids


def test_k8s_namespace_selector(workdir, apiserver, kscribe_bin, kubectl_direct, cgroups):
    uid = kubectl_direct.run("get", "pod", "web-0", "-n", "default", "-o",
                             "jsonpath={.metadata.uid}", check=True).stdout.strip()
    assert harness.UID_RE.fullmatch(uid), uid
    pod = cgroups.make("kubepods/burstable/pod%s/%s" % (uid, "ab" * 32))
    serve = Serve(os.path.join(workdir, "k8s"), apiserver,
                  {"agent-ns": ["--k8s-namespace", "default"],
                   "agent-other": ["--k8s-namespace", "other"]})
    try:
        allowed(serve, serve.kubeconfigs["agent-ns"], os.path.join(workdir, "k8s", "ns"),
                cgroup=pod)
        refused(serve.kubeconfigs["agent-other"], os.path.join(workdir, "k8s", "o"),
                'pod namespace "default"', cgroup=pod)
        # The same credential from a host process: not a pod, refused.
        refused(serve.kubeconfigs["agent-ns"], os.path.join(workdir, "k8s", "h"), "")
    finally:
        serve.stop()
