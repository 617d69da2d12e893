"""`kscribe serve` shipping to a real single-node OpenStack Swift (s3api, tempauth, loopback).

- End to end: the real kubectl through kscribe against the test API server (two agents); sessions
  close on a short idle timeout and ship; with the AWS CLI, every closed session's JSONL and
  manifest is in the bucket with the local files' bytes, under
  <prefix>/<cluster>/<node>/<agent>/<date>/<session id>.jsonl, and the audit head object holds
  the local chain's last hash (schemas/audit-head.schema.json); SIGTERM exits 0.
- Spool full under on_spool_full: reject, Swift stopped so nothing drains: new requests get 503
  with a Kubernetes Status saying the spool is full (raw HTTPS and kubectl), /readyz fails on
  "spool", kscribe_spool_accepting is 0, the refusals are audited; the entries serve spooled
  validate against schemas/spool-entry.schema.json. Swift started again: the spool drains,
  requests succeed, and every recorded session arrives with identical bytes.
- SIGTERM with sessions open: they close ("shutdown") and ship before the process exits; with
  storage down, the last upload pass stops at shipping.final_upload_timeout and the spool keeps
  the session for the next start.
Credentials come from a temporary shared credentials file (shipping.credentials_file); the
environment's AWS_* variables are removed for kscribe.
"""

import http.client
import json
import os
import re
import time
import uuid

import pytest

import harness
import kscribe_schemas
import swift_util

BUCKET = "kscribe-serve"
PROXY = os.path.join(harness.SOURCE_DIR, "proxy", "server.cc")
pytestmark = pytest.mark.skipif(not os.path.exists(PROXY) or not harness.kscribe_bin(),
                                reason="needs the proxy (proxy/server.cc) and the kscribe binary")


@pytest.fixture(scope="module")
def swift(workdir):
    missing = swift_util.have_swift()
    if missing:
        pytest.skip("Swift/AWS CLI not installed (deploy/install-deps.sh): " + ", ".join(missing))
    with swift_util.running_swift(os.path.join(workdir, "swift"), BUCKET) as s:
        yield s


class Served:
    """`kscribe serve` with shipping to `swift`, agents bot-a and bot-b, metrics on port 0."""

    def __init__(self, directory, apiserver, swift, idle_timeout="1s", **shipping):
        self.dir = directory
        self.swift = swift
        os.makedirs(directory, exist_ok=True)
        self.home = harness.KscribeHome(os.path.join(directory, "home")).init()
        self.sessions = os.path.join(self.home.path, "sessions")
        self.proxy_port = harness.free_port()
        self.prefix = "it-" + uuid.uuid4().hex[:8]
        creds = os.path.join(directory, "aws-credentials")
        with open(creds, "w") as f:
            f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                    % (swift_util.ACCESS_KEY, swift_util.SECRET_KEY))
        ship = {"enabled": True, "endpoint": swift.endpoint, "bucket": BUCKET,
                "region": swift_util.REGION, "prefix": self.prefix, "cluster": "c1",
                "node": "n1", "credentials_file": creds, "upload_interval": "200ms",
                "audit_head_interval": "300ms", "max_retries": 1}
        ship.update(shipping)
        self.settings = {
            "listen": {"address": "127.0.0.1", "port": self.proxy_port},
            "upstream": {"kubeconfig": apiserver.kubeconfig, "context": "kscribe-test"},
            "attribution": "off",
            "metrics": {"enabled": True, "address": "127.0.0.1", "port": 0},
            # configure() merges one level deep: the api section is given whole.
            "sessions": {"api": {"idle_timeout": idle_timeout, "storage": self.sessions},
                         "sync_interval": "100ms"},
            "shipping": ship,
        }
        self.home.configure(**self.settings)
        self.kubeconfigs = {a: self.home.add_agent(a) for a in ("bot-a", "bot-b")}
        self.home.configure(**self.settings)
        self.spool = os.path.join(self.home.path, "spool")
        self.audit = os.path.join(self.home.path, "audit", "audit.jsonl")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = harness.Process([self.home.bin, "serve", "--config", self.home.config],
                                       os.path.join(directory, "kscribe.log"), env=env)

        def metrics_port():
            if not self.process.alive():
                raise RuntimeError("kscribe serve exited: " + self.process.output())
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)", self.process.output())
            return int(m.group(1)) if m and "kscribe serving on" in self.process.output() else None
        self.metrics_port = harness.wait_for(metrics_port, 30, "kscribe serve to start")

    def kubectl(self, agent):
        return harness.Kubectl(self.kubeconfigs[agent], os.path.join(self.dir, "kc-" + agent))

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metric(self, sample):
        """The value of one sample line's name{labels} in /metrics (0 if absent)."""
        status, body = self.get("/metrics")
        assert status == 200
        for line in body.splitlines():
            if line.startswith(sample + " "):
                return float(line.split(" ")[1])
        return 0.0

    def raw(self, agent, method, path):
        """One request through the proxy with the agent's credentials: (status, headers, body)."""
        tmp = os.path.join(self.dir, "raw-" + agent)
        os.makedirs(tmp, exist_ok=True)
        host, port, ctx, headers = harness.agent_tls(self.kubeconfigs[agent], tmp)
        c = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
        try:
            c.request(method, path, headers=headers)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def closed_sessions(self):
        """{session id: manifest} of the sessions closed so far (a manifest is written at close)."""
        out = {}
        for root, _, files in os.walk(self.sessions):
            for f in files:
                if f.endswith(".manifest.json"):
                    with open(os.path.join(root, f)) as fh:
                        m = json.load(fh)
                    m["_dir"] = root
                    out[m["session_id"]] = m
        return out

    def pending(self):
        d = os.path.join(self.spool, "pending")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def wait_shipped(self, n_closed, timeout=30):
        """Waits until no session is open, at least n_closed are closed, and the spool is empty."""
        def state():
            self.alive()
            return (self.metric("kscribe_sessions_open"), len(self.closed_sessions()),
                    self.pending())
        try:
            harness.wait_for(lambda: (lambda s: s[0] == 0 and s[1] >= n_closed and not s[2])(
                state()), timeout, "%d sessions closed and shipped" % n_closed, interval=0.1)
        except TimeoutError as e:
            raise AssertionError("%s: (open, closed, pending) = %s\n%s" % (
                e, state(), self.process.output()[-3000:]))

    def alive(self):
        if not self.process.alive():
            raise RuntimeError("kscribe serve exited: " + self.process.output())
        return True

    def stop(self):
        return self.process.stop(30)


def keys_under(swift, tmp, prefix):
    p = swift.aws(tmp, "s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", prefix)
    out = p.stdout.decode().strip()
    return sorted(o["Key"] for o in json.loads(out).get("Contents", [])) if out else []


def fetch(swift, tmp, key):
    dest = os.path.join(tmp, "fetched-" + uuid.uuid4().hex)
    swift.aws(tmp, "s3", "cp", "s3://%s/%s" % (BUCKET, key), dest)
    with open(dest, "rb") as f:
        return f.read()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def check_arrived(served, tmp):
    """Every closed session's JSONL and manifest is in the bucket, byte for byte, under the
    deterministic key, and nothing else but the audit head is. Returns the closed manifests."""
    closed = served.closed_sessions()
    expected = {}
    for sid, m in closed.items():
        # The key's date is the session's start date in UTC (the manifest's "date").
        assert m["started"].startswith(m["date"]), m
        base = "%s/c1/n1/%s/%s/%s" % (served.prefix, m["agent"], m["date"], sid)
        expected[base + ".jsonl"] = os.path.join(m["_dir"], m["jsonl"])
        expected[base + ".manifest.json"] = os.path.join(m["_dir"], sid + ".manifest.json")
    head_key = "%s/c1/n1/audit/head.json" % served.prefix
    want = sorted(list(expected) + [head_key])
    # The spool entry appears a moment after the manifest: poll rather than race it.
    got = []
    harness.wait_for(lambda: got.append(keys_under(served.swift, tmp, served.prefix)) or
                     got[-1] == want, 20, "the objects %s (last listing %s)" % (want, got[-1:]),
                     interval=0.2)
    for key, local in expected.items():
        assert fetch(served.swift, tmp, key) == read(local), key
    return closed


def wait_audit_head(served, tmp):
    """The uploaded head validates and equals the local chain's last hash."""
    last = json.loads(read(served.audit).splitlines()[-1])["hash"]
    key = "%s/c1/n1/audit/head.json" % served.prefix

    def head():
        if key not in keys_under(served.swift, tmp, served.prefix):
            return None
        h = kscribe_schemas.validate_audit_head(fetch(served.swift, tmp, key))
        return h if h["hash"] == last else None
    h = harness.wait_for(head, 20, "the audit head to reach the local chain's last hash",
                         interval=0.3)
    assert h["cluster"] == "c1" and h["node"] == "n1"
    assert h["audit_file_size"] <= os.path.getsize(served.audit)
    return h


def test_serve_ships_closed_sessions_end_to_end(workdir, apiserver, swift, kscribe_bin, tmp_path):
    served = Served(os.path.join(workdir, "e2e"), apiserver, swift)
    tmp = str(tmp_path)
    try:
        a, b = served.kubectl("bot-a"), served.kubectl("bot-b")
        a.run("get", "pods", check=True)
        a.run("create", "configmap", "ship-cm", "--from-literal=k=v", check=True)
        a.run("get", "configmap", "ship-cm", "-o", "yaml", check=True)
        a.run("delete", "configmap", "ship-cm", check=True)
        b.run("get", "namespaces", check=True)
        served.wait_shipped(2)
        # A later request opens a new session after the idle close; it ships in its turn.
        a.run("get", "pods", check=True)
        served.wait_shipped(3)

        closed = check_arrived(served, tmp)
        agents = sorted(m["agent"] for m in closed.values())
        assert agents.count("bot-b") == 1 and agents.count("bot-a") >= 2, agents
        assert all(m["close_reason"] == "idle timeout" for m in closed.values())
        kscribe_schemas.validate_sessions(served.sessions)
        wait_audit_head(served, tmp)

        assert served.metric('kscribe_uploads_total{result="success"}') >= 2 * len(closed) + 1
        assert served.metric('kscribe_uploads_total{result="failure"}') == 0
        assert served.metric("kscribe_spool_bytes") == 0
        assert served.metric("kscribe_spool_accepting") == 1
        status, body = served.get("/readyz")
        assert status == 200 and "[+]spool ok" in body, body
    finally:
        rc = served.stop()
    assert rc == 0, served.process.output()[-5000:]
    assert "kscribe stopped" in served.process.output()


SPOOL_FULL = "spool is full"


def test_spool_full_rejects_new_requests_until_uploads_drain(workdir, apiserver, swift,
                                                             kscribe_bin, tmp_path):
    tmp = str(tmp_path)
    swift.stop(["proxy"])  # nothing drains while it is down
    served = None
    try:
        # idle 2s: both agents' first requests land before either session closes.
        served = Served(os.path.join(workdir, "full"), apiserver, swift, idle_timeout="2s",
                        spool_max_size="2KB", on_spool_full="reject")
        a = served.kubectl("bot-a")
        a.run("get", "pods", check=True)
        assert served.raw("bot-b", "GET", "/api/v1/namespaces")[0] == 200
        # Both sessions close into the spool (the second beyond the bound: nothing recorded is
        # dropped), and from then on new requests are refused.
        harness.wait_for(lambda: served.alive() and len(served.pending()) == 2, 20,
                         "both sessions in the spool")
        status, body = served.get("/readyz")
        assert status == 503 and "[-]spool failed: spool full (shipping.spool_max_size 2KB)" \
            in body, body
        assert served.metric("kscribe_spool_accepting") == 0
        assert served.metric("kscribe_spool_bytes") >= 2000
        assert served.metric('kscribe_uploads_total{result="failure"}') >= 1
        assert served.metric("kscribe_upload_retries_total") >= 1  # max_retries 1, refused

        status, headers, raw = served.raw("bot-a", "GET", "/api/v1/namespaces/default/pods")
        assert status == 503, raw
        assert headers["Content-Type"] == "application/json"
        st = json.loads(raw)
        assert st["kind"] == "Status" and st["apiVersion"] == "v1", st
        assert st["status"] == "Failure" and st["code"] == 503, st
        assert st["reason"] == "ServiceUnavailable" and SPOOL_FULL in st["message"], st
        r = a.run("get", "pods", "-n", "kube-system")
        assert r.rc != 0 and SPOOL_FULL in r.stderr, r
        assert served.metric('kscribe_proxy_refusals_total{status="503"}') >= 2

        # The entries serve spooled validate, and hold the sessions' own bytes (hard links).
        entries = kscribe_schemas.validate_spool(served.spool)
        closed = served.closed_sessions()
        assert sorted(e["session_id"] for e in entries) == sorted(closed)
        for e in entries:
            m = closed[e["session_id"]]
            d = [p for p in served.pending() if p.endswith("-" + e["session_id"])][0]
            assert read(os.path.join(served.spool, "pending", d, e["session_id"] + ".jsonl")) \
                == read(os.path.join(m["_dir"], m["jsonl"]))
        # The refusals are audited as denied, with the reason.
        audit = kscribe_schemas.validate_audit(served.audit)
        denied = [l for l in audit if l["decision"] == "denied"]
        assert len(denied) >= 2 and all(l["status"] == 503 and SPOOL_FULL in l["message"]
                                        for l in denied), denied
        assert not any(l["session_id"] for l in denied)

        swift.start(["proxy"])
        harness.wait_for(lambda: served.get("/readyz")[0] == 200, 30,
                         "the spool to drain and /readyz to pass")
        assert served.pending() == []
        assert served.raw("bot-a", "GET", "/api/v1/namespaces/default/pods")[0] == 200
        a.run("get", "pods", check=True)
        served.wait_shipped(3)
        closed = check_arrived(served, tmp)
        assert len(closed) == 3
        assert served.metric("kscribe_spool_accepting") == 1
    finally:
        swift.start(["proxy"])
        rc = served.stop() if served else 0
    assert rc == 0, served.process.output()[-5000:]
    log = served.process.output()
    assert "refusing new requests until uploads catch up" in log
    assert "accepting new requests again" in log


def test_sigterm_ships_the_sessions_it_closes(workdir, apiserver, swift, kscribe_bin, tmp_path):
    # A long idle timeout: both sessions are still open when SIGTERM arrives.
    served = Served(os.path.join(workdir, "sigterm"), apiserver, swift, idle_timeout="1h")
    tmp = str(tmp_path)
    try:
        served.kubectl("bot-a").run("get", "pods", check=True)
        assert served.raw("bot-b", "GET", "/api/v1/namespaces")[0] == 200
        assert served.closed_sessions() == {}
    finally:
        rc = served.stop()
    log = served.process.output()
    assert rc == 0, log[-5000:]
    closed = served.closed_sessions()
    assert sorted(m["agent"] for m in closed.values()) == ["bot-a", "bot-b"], closed
    assert all(m["close_reason"] == "shutdown" for m in closed.values()), closed
    # Shipped before the process ended, not at a next start: the spool is empty and the bucket
    # holds both sessions and the final audit head.
    assert served.pending() == []
    assert "final upload done; 0 spooled sessions left" in log, log[-3000:]
    check_arrived(served, tmp)
    wait_audit_head(served, tmp)


def test_sigterm_with_storage_down_keeps_the_spool_and_exits_in_time(workdir, apiserver, swift,
                                                                    kscribe_bin):
    swift.stop(["proxy"])
    served = None
    try:
        served = Served(os.path.join(workdir, "sigterm-down"), apiserver, swift,
                        idle_timeout="1h", final_upload_timeout="2s", max_retries=8)
        assert served.raw("bot-a", "GET", "/api/v1/namespaces")[0] == 200
        started = time.monotonic()
        rc = served.stop()
        took = time.monotonic() - started
    finally:
        swift.start(["proxy"])
    log = served.process.output()
    assert rc == 0, log[-5000:]
    # The bound holds though uploads keep failing and retrying (8 retries with backoff).
    assert took < 8, (took, log[-3000:])
    assert "did not end within shipping.final_upload_timeout" in log \
        or "spooled sessions left for the next start" in log, log[-3000:]
    assert len(served.pending()) == 1
    kscribe_schemas.validate_spool(served.spool)
