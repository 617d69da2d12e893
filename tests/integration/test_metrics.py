"""The metrics and health listener of a running `kscribe serve`.

/metrics speaks the Prometheus text format (every kscribe metric present with HELP and TYPE,
histograms consistent), /healthz and /readyz answer as the DaemonSet's probes expect, other paths
get 404. With the proxy on main, requests sent through it with an agent's credentials show up in
kscribe_requests_total{agent,tier,status} and kscribe_proxied_bytes_total exactly as sent.
"""
import http.client
import os
import re
import socket
import tempfile

import pytest

import harness

HAVE_PROXY = os.path.exists(os.path.join(harness.SOURCE_DIR, "proxy", "server.cc"))
# `kscribe serve` starts the listener from agent/daemon.cc (startMetrics, MetricsTap).
WIRED = "startMetrics(" in open(os.path.join(harness.SOURCE_DIR, "agent", "daemon.cc")).read()
pytestmark = pytest.mark.skipif(not WIRED, reason="agent/daemon.cc does not call startMetrics yet")

KSCRIBE_METRICS = {
    "kscribe_requests_total": "counter",
    "kscribe_request_duration_seconds": "histogram",
    "kscribe_proxied_bytes_total": "counter",
    "kscribe_proxy_refusals_total": "counter",
    "kscribe_connections_open": "gauge",
    "kscribe_identity_rejections_total": "counter",
    "kscribe_attribution_total": "counter",
    "kscribe_bpf_drops_total": "counter",
    "kscribe_bpf_events_total": "counter",
    "kscribe_bytes_recorded_total": "counter",
    "kscribe_redactions_total": "counter",
    "kscribe_truncations_total": "counter",
    "kscribe_sessions_open": "gauge",
    "kscribe_sessions_closed_total": "counter",
    "kscribe_record_failures_total": "counter",
    "kscribe_recorder_waits_total": "counter",
    "kscribe_uploads_total": "counter",
    "kscribe_upload_retries_total": "counter",
    "kscribe_spool_bytes": "gauge",
    "kscribe_spool_accepting": "gauge",
}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels)): value} and {name: type}; asserts every line is well formed."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE_RE.match(line)
        assert m, "malformed sample line: %r" % line
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def http_get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


class Served:
    def __init__(self, workdir, apiserver, metrics=None):
        self.dir = os.path.join(workdir, "kscribe-metrics")
        self.home = harness.KscribeHome(os.path.join(self.dir, "home")).init()
        self.proxy_port = harness.free_port()
        settings = {
            "listen": {"address": "127.0.0.1", "port": self.proxy_port},
            "upstream": {"kubeconfig": apiserver.kubeconfig, "context": "kscribe-test"},
            "attribution": "off",
            "metrics": metrics or {"enabled": True, "address": "127.0.0.1", "port": 0},
        }
        self.home.configure(**settings)
        self.kubeconfig = self.home.add_agent("agent-a")
        self.home.configure(**settings)
        self.process = harness.Process([self.home.bin, "serve", "--config", self.home.config],
                                       os.path.join(self.dir, "kscribe.log"))

    def wait_metrics(self):
        def port():
            if not self.process.alive():
                raise RuntimeError("kscribe serve exited: " + self.process.output())
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)", self.process.output())
            return int(m.group(1)) if m else None
        self.metrics_port = harness.wait_for(port, 30, "the metrics listener")
        return self

    def scrape(self):
        status, headers, body = http_get(self.metrics_port, "/metrics")
        assert status == 200
        return parse(body)[0]

    def stop(self):
        return self.process.stop()


@pytest.fixture(scope="module")
def served(workdir, apiserver, kscribe_bin):
    s = Served(workdir, apiserver)
    try:
        yield s.wait_metrics()
    finally:
        rc = s.stop()
        if rc not in (0, None):
            harness.dump_logs(s.process)


def test_metrics_exposition(served):
    status, headers, body = http_get(served.metrics_port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = parse(body)
    for name, typ in KSCRIBE_METRICS.items():
        assert types.get(name) == typ, name
        assert "# HELP %s " % name in body, name
    # Series known up front are exported at zero before any traffic.
    for result in ("hit", "miss", "unavailable"):
        assert ("kscribe_attribution_total", frozenset({("result", result)})) in samples
    for result in ("success", "failure"):
        assert ("kscribe_uploads_total", frozenset({("result", result)})) in samples
    assert samples[("kscribe_spool_bytes", frozenset())] >= 0
    # Histograms: cumulative buckets, +Inf equals _count.
    for (name, labels), value in samples.items():
        if name.endswith("_count") and name[:-6] in types and types[name[:-6]] == "histogram":
            inf = samples[(name[:-6] + "_bucket", labels | {("le", "+Inf")})]
            assert inf == value


def test_healthz(served):
    status, _, body = http_get(served.metrics_port, "/healthz")
    assert status == 200, body
    assert "[+]event-loop ok" in body and body.endswith("healthz check passed\n")
    status, headers, body = http_get(served.metrics_port, "/healthz", "HEAD")
    assert status == 200 and body == ""


def proxy_listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_readyz_reports_each_part(served):
    status, _, body = http_get(served.metrics_port, "/readyz")
    assert "[+]recorder ok" in body, body
    assert "attribution" not in body  # attribution: off registers no condition
    if proxy_listening(served.proxy_port) and "[+]proxy ok" in body:
        assert status == 200, body
    else:
        # Until the proxy listener is bound (and says so), kscribe is not ready.
        assert status == 503, body
        assert "[-]proxy failed:" in body and body.endswith("readyz check failed\n")


def test_other_paths(served):
    assert http_get(served.metrics_port, "/")[0] == 404
    assert http_get(served.metrics_port, "/metrics/x")[0] == 404
    assert http_get(served.metrics_port, "/metrics", "POST")[0] == 405


def test_metrics_port_in_use_is_a_config_error(workdir, apiserver, kscribe_bin, served):
    s = Served(os.path.join(workdir, "in-use"), apiserver,
               metrics={"enabled": True, "address": "127.0.0.1", "port": served.metrics_port})
    try:
        rc = s.process.proc.wait(30)
    finally:
        s.stop()
    assert rc == 2, s.process.output()
    assert "metrics.port: metrics: cannot listen on 127.0.0.1:%d" % served.metrics_port in \
        s.process.output()


def test_metrics_disabled_opens_no_listener(workdir, apiserver, kscribe_bin):
    s = Served(os.path.join(workdir, "disabled"), apiserver, metrics={"enabled": False})
    try:
        harness.wait_for(lambda: "serving" in s.process.output() or not s.process.alive(), 30,
                         "kscribe serve to start")
        assert s.process.alive(), s.process.output()
        assert "metrics on" not in s.process.output()
    finally:
        assert s.stop() == 0


# ---- Traffic through the proxy: the counters match what was sent.

agent_tls = harness.agent_tls


def series(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.skipif(not HAVE_PROXY, reason="needs the proxy (proxy/server.cc) on main")
def test_counters_match_traffic(served):
    harness.wait_for(lambda: proxy_listening(served.proxy_port), 30, "the proxy listener")
    with tempfile.TemporaryDirectory() as tmp:
        host, port, ctx, headers = agent_tls(served.kubeconfig, tmp)
        before = served.scrape()
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
        sent = {"ok": 0, "missing": 0, "delete": 0}
        req_bytes = resp_bytes = 0

        def call(method, path, body=None):
            nonlocal req_bytes, resp_bytes
            h = dict(headers)
            if body is not None:
                h["Content-Type"] = "application/json"
                req_bytes += len(body)
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            resp_bytes += len(data)
            return r.status

        for _ in range(5):
            assert call("GET", "/api/v1/namespaces/default/pods") == 200
            sent["ok"] += 1
        for _ in range(2):
            assert call("GET", "/api/v1/namespaces/default/pods/no-such-pod") == 404
            sent["missing"] += 1
        body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"metrics-it"},' \
               b'"data":{"k":"v"}}'
        create = call("POST", "/api/v1/namespaces/default/configmaps", body)
        assert create == 201
        assert call("DELETE", "/api/v1/namespaces/default/configmaps/metrics-it") == 200
        conn.close()
        after = served.scrape()

    def delta(name, **labels):
        return series(after, name, **labels) - series(before, name, **labels)

    assert delta("kscribe_requests_total", agent="agent-a", tier="0", status="200") == sent["ok"]
    assert delta("kscribe_requests_total", agent="agent-a", tier="0", status="404") == \
        sent["missing"]
    assert delta("kscribe_requests_total", agent="agent-a", tier="2", status="201") == 1
    assert delta("kscribe_requests_total", agent="agent-a", tier="3", status="200") == 1
    assert delta("kscribe_proxied_bytes_total", direction="request") == req_bytes
    assert delta("kscribe_proxied_bytes_total", direction="response") == resp_bytes
    assert delta("kscribe_request_duration_seconds_count", tier="0") == sent["ok"] + sent["missing"]
    assert delta("kscribe_attribution_total", result="unavailable") >= 1  # attribution: off
