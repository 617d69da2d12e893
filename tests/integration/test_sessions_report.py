"""`kscribe sessions report ID --html FILE`, rendered in headless Chromium: the page shows the
session (identity, rows, tiers, a redacted body), hostile recorded strings stay text, and the page
makes no network request (checked in Chromium's net log, with a control page that does fetch to
prove the check can fail). The screenshots stay in the build dir as test artifacts."""

import html
import json
import os
import re
import shutil
import subprocess
import http.server
import threading

import pytest

import harness

FIXTURES = os.path.join(harness.SOURCE_DIR, "tests", "fixtures", "sessions", "storage")
CLOSED = "20260210T143022Z-deploy-bot-1a2b3c4d"
ARTIFACTS = os.path.join(harness.BUILD_DIR, "test-artifacts", "sessions-report")
CHROMIUM = shutil.which("chromium", path="/usr/bin:/usr/local/bin")


@pytest.fixture(scope="module")
def report(kscribe_bin, workdir):
    storage = os.path.join(workdir, "storage")
    shutil.copytree(FIXTURES, storage)
    cfg = os.path.join(workdir, "config.yaml")
    with open(cfg, "w") as f:
        f.write("sessions:\n  api:\n    storage: %s\n" % storage)
    out = os.path.join(workdir, "report.html")
    p = subprocess.run([kscribe_bin, "sessions", "report", "20260210T1430", "--config", cfg,
                        "--html", out], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().startswith(out + ": 12 requests of session " + CLOSED)
    return out


def chromium(workdir, url, *extra, name):
    if not CHROMIUM:
        pytest.skip("chromium is not installed (deploy/install-deps.sh installs it)")
    profile = os.path.join(workdir, "chromium-" + name)
    netlog = os.path.join(workdir, name + ".netlog.json")
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic", "--user-data-dir=" + profile, "--log-net-log=" + netlog,
            "--net-log-capture-mode=Everything", "--window-size=1300,1500", *extra, url]
    p = subprocess.run(argv, capture_output=True, timeout=90, start_new_session=True)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    with open(netlog) as f:
        log = json.load(f)
    return p.stdout.decode(errors="replace"), log


def page_requests(netlog):
    """URLs the page asked for. Chromium's own background requests (update checks and the like,
    which --disable-background-networking does not stop them all) have no initiating origin; a
    request made by a file:// page carries the page's opaque origin ("null") or file://."""
    types = {v: k for k, v in netlog["constants"]["logEventTypes"].items()}
    urls = []
    for e in netlog["events"]:
        if types.get(e["type"]) != "URL_REQUEST_START_JOB":
            continue
        p = e.get("params", {})
        if "url" in p and p.get("initiator") != "not an origin":
            urls.append((p.get("url"), p.get("initiator")))
    return urls


def test_report_is_self_contained(report):
    text = open(report, encoding="utf-8").read()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # no external src/href/url() at all
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I)
    assert "@import" not in text and "@font-face" not in text
    # the embedded data cannot close its <script>: every '<' inside is \u003c
    data = re.search(r'<script type="application/json" id="kscribe-data">(.*?)</script>', text,
                     re.S).group(1)
    assert "<" not in data
    parsed = json.loads(data)
    assert parsed["session"]["id"] == CLOSED and len(parsed["requests"]) == 12
    assert parsed["requests"][1]["seq"] == 2
    # hostile strings from a recorded ConfigMap stay escaped text
    assert "<img src=x" not in text
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in text


def test_report_renders_in_chromium(report, workdir):
    dom, netlog = chromium(workdir, "file://" + report, "--dump-dom", name="dom")
    assert page_requests(netlog) == []
    # identity and process at the top
    assert 'id="session-id">%s</span>' % CLOSED in dom
    assert "deploy-bot" in dom and "spiffe://kscribe.local/agent/deploy-bot" in dom
    assert "/usr/bin/kubectl" in dom and "kubectl</b> pid 4242" in dom
    # the timeline: one mark per request, coloured by tier
    marks = re.findall(r'<a href="#r-(\d+)" data-seq="\d+" data-tier="(\d)"><rect [^>]*fill="([^"]+)"',
                       dom)
    assert [int(m[0]) for m in marks] == list(range(1, 13))
    fills = {m[1]: m[2] for m in marks}
    assert len(set(fills.values())) == len(fills) == 4  # tiers 0, 2, 3, 4: four colours
    # the table: 12 rows with tiers
    rows = re.findall(r'<tr id="r-(\d+)" data-tier="(\d)">', dom)
    assert rows == [(str(i), t) for i, t in enumerate("022320003340", start=1)]
    assert dom.count('<span class="t3">3 SENSITIVE</span>') == 3
    assert dom.count('<span class="t4">4 BREAK-GLASS</span>') == 1
    # a redacted Secret body, inside the row's <details>
    row4 = re.search(r'<tr id="r-4".*?</tr>', dom, re.S).group(0)
    assert "<details>" in row4 and "redacted (2 values)" in row4
    assert '"password": "<mark class="red">[REDACTED]</mark>"' in row4
    # the script ran and no markup was injected by recorded data
    assert "<img" not in dom


def test_report_screenshot(report, workdir):
    os.makedirs(ARTIFACTS, exist_ok=True)
    for name, url in (("overview", "file://" + report),
                      ("secret-body", "file://" + report + "#r-4")):
        shot = os.path.join(ARTIFACTS, name + ".png")
        if os.path.exists(shot):
            os.unlink(shot)
        _, netlog = chromium(workdir, url, "--screenshot=" + shot, name="shot-" + name)
        assert page_requests(netlog) == []
        with open(shot, "rb") as f:
            head = f.read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        assert (width, height) == (1300, 1500)
        assert os.path.getsize(shot) > 20000  # a rendered page, not a blank one


def test_the_network_check_can_fail(workdir):
    """Control: a page that loads an image from a loopback HTTP server is caught."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        page = os.path.join(workdir, "leaky.html")
        with open(page, "w") as f:
            f.write('<!DOCTYPE html><img src="http://127.0.0.1:%d/pixel.png">' %
                    srv.server_address[1])
        _, netlog = chromium(workdir, "file://" + page, "--dump-dom", name="leaky")
    finally:
        srv.shutdown()
        srv.server_close()
    reqs = page_requests(netlog)
    assert any(u and u.endswith("/pixel.png") for u, _ in reqs), reqs
    assert hits == ["/pixel.png"]
