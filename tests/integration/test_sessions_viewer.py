"""`kscribe sessions list|show` on the recorded fixtures in tests/fixtures/sessions (written by
make_fixtures.py; they validate against the recorder's schemas, checked here too)."""

import glob
import json
import os
import re
import shutil
import subprocess

import pytest

import harness

FIXTURES = os.path.join(harness.SOURCE_DIR, "tests", "fixtures", "sessions", "storage")
SPOOL = os.path.join(harness.SOURCE_DIR, "tests", "fixtures", "sessions", "spool")
SCHEMAS = os.path.join(harness.SOURCE_DIR, "schemas")
CLOSED = "20260210T143022Z-deploy-bot-1a2b3c4d"
SHIPPED = "20260210T160000Z-triage-agent-0badcafe"
OPEN = "20260211T090000Z-deploy-bot-77777777"


@pytest.fixture(scope="module")
def home(workdir):
    """A kscribe home whose config points sessions.api.storage and the shipper's spool at a copy
    of the fixtures (shipping on: the closed session still in the spool is not shipped yet)."""
    h = os.path.join(workdir, "home")
    storage = os.path.join(workdir, "storage")
    spool = os.path.join(workdir, "spool")
    shutil.copytree(FIXTURES, storage)
    shutil.copytree(SPOOL, spool)
    os.makedirs(h)
    with open(os.path.join(h, "config.yaml"), "w") as f:
        f.write("sessions:\n  api:\n    storage: %s\n" % storage)
        f.write("shipping:\n  enabled: true\n  endpoint: http://127.0.0.1:9\n  bucket: b\n"
                "  spool: %s\n" % spool)
    return h


def ks(kscribe_bin, home, *args, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "KSCRIBE_HOME")}
    e.update(env or {})
    p = subprocess.run([kscribe_bin, "sessions", *args, "--home", home], capture_output=True,
                       env=e, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_fixtures_validate_against_the_recorder_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    rec_schema = os.path.join(SCHEMAS, "session-record.schema.json")
    man_schema = os.path.join(SCHEMAS, "session-manifest.schema.json")
    if not os.path.exists(rec_schema):
        pytest.skip("schemas/session-record.schema.json not landed yet (recorder)")
    rec = json.load(open(rec_schema))
    man = json.load(open(man_schema))
    lines = 0
    for f in glob.glob(os.path.join(FIXTURES, "*", "*.jsonl")):
        for line in open(f):
            jsonschema.validate(json.loads(line), rec, cls=jsonschema.Draft202012Validator)
            lines += 1
    manifests = glob.glob(os.path.join(FIXTURES, "*", "*.manifest.json"))
    for f in manifests:
        jsonschema.validate(json.load(open(f)), man, cls=jsonschema.Draft202012Validator)
    assert lines == 16 and len(manifests) == 2


def test_list_plain_newest_first_with_status(kscribe_bin, home):
    rc, out, err = ks(kscribe_bin, home, "list")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "AGENT", "WORKLOAD", "START", "DURATION", "REQUESTS",
                                "TIER", "BYTES", "STATUS"]
    rows = [l.split() for l in lines[1:]]
    assert [r[0] for r in rows] == [OPEN, SHIPPED, CLOSED]
    assert rows[0][1:3] == ["deploy-bot", "host"] and rows[0][-1] == "open"
    assert rows[1][2] == "pod:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b" and rows[1][-1] == "shipped"
    assert rows[2][-1] == "closed"
    # start, duration, requests, highest tier
    assert rows[2][3:10] == ["2026-02-10", "14:30:22Z", "30.2s", "12", "4", "BREAK-GLASS",
                             "19.4KB"]
    assert rows[1][3:9] == ["2026-02-10", "16:00:00Z", "6.5s", "2", "0", "OBSERVE"]
    assert "\x1b" not in out  # piped: plain


def test_list_without_shipping_nothing_is_shipped(kscribe_bin, home, workdir):
    cfg = os.path.join(workdir, "no-shipping.yaml")
    with open(cfg, "w") as f:
        f.write("sessions:\n  api:\n    storage: %s\n" % os.path.join(workdir, "storage"))
    p = subprocess.run([kscribe_bin, "sessions", "list", "--json", "--config", cfg],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert [d["status"] for d in json.loads(p.stdout)] == ["open", "closed", "closed"]


def test_list_json(kscribe_bin, home):
    rc, out, err = ks(kscribe_bin, home, "list", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert [d["id"] for d in data] == [OPEN, SHIPPED, CLOSED]
    closed = data[2]
    assert closed["agent"] == "deploy-bot" and closed["status"] == "closed"
    assert closed["requests"] == 12 and closed["highest_tier"] == 4
    assert closed["highest_tier_name"] == "BREAK-GLASS"
    assert closed["started"] == "2026-02-10T14:30:22.001Z"
    assert closed["ended"] == "2026-02-10T14:30:52.250Z"
    assert closed["duration_ms"] == 30249 and closed["close_reason"] == "idle timeout"
    assert closed["bytes"] == os.path.getsize(closed["jsonl"])
    assert data[0]["status"] == "open" and data[0]["ended"] is None
    assert data[0]["requests"] == 2 and data[0]["highest_tier"] == 4
    assert data[0]["last_activity"] == "2026-02-11T09:00:02.000Z"
    assert data[1]["workload_kind"] == "pod" and data[1]["status"] == "shipped"


@pytest.mark.parametrize("args,expected", [
    (["--agent", "deploy-bot"], [OPEN, CLOSED]),
    (["--agent", "triage-agent"], [SHIPPED]),
    (["--agent", "nobody"], []),
    (["--tier", "SENSITIVE"], [OPEN, CLOSED]),
    (["--tier", "0"], [OPEN, SHIPPED, CLOSED]),
    (["--tier", "break-glass"], [OPEN, CLOSED]),
    (["--since", "2026-02-10T15:00:00Z"], [OPEN, SHIPPED]),
    (["--since", "2026-02-10T16:00:05+00:00"], [OPEN, SHIPPED]),
    (["--since", "2026-02-10T17:00:00.5+01:00"], [OPEN, SHIPPED]),
    (["--since", "2026-02-11T00:00:00Z"], [OPEN]),
    (["--since", "1h"], []),  # the fixtures are from February 2026
    (["--agent", "deploy-bot", "--tier", "4", "--since", "2026-02-11T00:00:00Z"], [OPEN]),
])
def test_list_filters(kscribe_bin, home, args, expected):
    rc, out, err = ks(kscribe_bin, home, "list", "--json", *args)
    assert rc == 0, err
    assert [d["id"] for d in json.loads(out)] == expected


@pytest.mark.parametrize("args", [["--tier", "7"], ["--tier", "HIGH"], ["--since", "yesterday"],
                                  ["--since", "2026-02-10"]])
def test_list_bad_filters_are_usage_errors(kscribe_bin, home, args):
    rc, out, err = ks(kscribe_bin, home, "list", *args)
    assert rc == 2 and args[0] in err


def test_show_plain(kscribe_bin, home):
    rc, out, err = ks(kscribe_bin, home, "show", "20260210T1430")  # a unique prefix
    assert rc == 0, err
    assert out.startswith("session   %s  (closed: idle timeout)\n" % CLOSED)
    assert "agent     deploy-bot  spiffe://kscribe.local/agent/deploy-bot  (certificate, " \
        "unverified)" in out
    assert "process   kubectl (pid 4242, uid 1000) /usr/bin/kubectl" in out
    table = out[out.index("SEQ "):].splitlines()
    assert table[0].split() == ["SEQ", "TIME", "METHOD", "PATH", "STATUS", "TIER", "LATENCY",
                                "REQ", "RESP", "FLAGS"]
    rows = table[1:]
    assert len(rows) == 12
    assert rows[0].split() == ["1", "14:30:22.001", "GET", "/api/v1/namespaces/payments/pods",
                               "200", "0", "OBSERVE", "1.2ms", "-", "164B"]
    assert rows[2].split()[-2:] == ["req:redacted(2)", "resp:redacted(2)"]
    assert rows[3].split()[4:7] == ["200", "3", "SENSITIVE"]
    assert "watch=true&resourceVersion=41" in rows[5] and rows[5].split()[-1] == "watch"
    assert rows[6].split()[-1] == "resp:base64"
    assert rows[7].split()[-2:] == ["2.5MB", "resp:truncated"]
    assert rows[8].split()[-1] == "resp:omitted"
    assert rows[10].split()[4:7] == ["101", "4", "BREAK-GLASS"] and "upgraded" in rows[10]
    assert rows[11].split()[4] == "-" and rows[11].split()[-1] == "error"
    assert "\x1b" not in out


def test_show_colour_by_tier_only_when_asked_or_on_a_terminal(kscribe_bin, home):
    rc, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--color", "always")
    assert rc == 0
    rows = {int(m.group(2)): m.group(1) for m in
            re.finditer(r"^(\x1b\[[0-9;]*m)?(\d+) ", out, re.M)}
    assert rows[1] is None                   # OBSERVE: plain
    assert rows[2] == "\x1b[33m"             # MODIFY: yellow
    assert rows[4] == "\x1b[31m"             # SENSITIVE: red
    assert rows[11] == "\x1b[1;97;41m"       # BREAK-GLASS: white on red
    # auto on a pipe is plain, and so is NO_COLOR even when forced to auto on a tty-less run
    rc, out, _ = ks(kscribe_bin, home, "show", CLOSED, env={"NO_COLOR": "1"})
    assert "\x1b" not in out


def test_show_colour_on_a_terminal_and_no_color(kscribe_bin, home):
    import pty
    for env, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        e.update(env, TERM="xterm")
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(kscribe_bin, [kscribe_bin, "sessions", "show", CLOSED, "--home", home], e)
        out = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.waitpid(pid, 0)
        assert (b"\x1b[31m" in out) == coloured, out[:300]


def test_show_json(kscribe_bin, home):
    rc, out, err = ks(kscribe_bin, home, "show", CLOSED, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["session"]["id"] == CLOSED
    assert data["manifest"]["sha256"]
    path = data["session"]["jsonl"]
    assert data["requests"] == [json.loads(l) for l in open(path)]


def test_show_body_pretty_and_redacted(kscribe_bin, home):
    rc, out, err = ks(kscribe_bin, home, "show", CLOSED, "--body", "4")
    assert rc == 0, err
    assert out.startswith("#4 GET /api/v1/namespaces/payments/secrets/db-creds  200  3 SENSITIVE\n")
    assert "-- request body: none" in out
    assert "-- response body (application/json, 251B on the wire, redacted (2 values))" in out
    assert '    "password": "[REDACTED]",\n' in out  # pretty-printed, key order kept
    assert out.index('"apiVersion"') < out.index('"kind"') < out.index('"data"')


def test_show_body_markers(kscribe_bin, home):
    _, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--body", "7")
    assert "stored as base64" in out and "azhzAAoPCgJ2MRIHUG9kTGlzdBIAGgA=" in out
    _, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--body", "8")
    assert "truncated" in out and out.rstrip().endswith("[TRUNCATED at 1MB]")
    _, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--body", "9")
    assert "[omitted: protobuf body of a Secret: not parsed, not kept]" in out
    _, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--body", "6")
    assert out.count('"type": "ADDED"') == 1 and out.count('"type": "MODIFIED"') == 1
    _, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--body", "12")
    assert "error: upstream connection reset before the response head" in out


def test_show_never_prints_terminal_escapes_from_bodies(kscribe_bin, home):
    # The ConfigMap in exchange 2 carries ESC and CSI (U+009B); nlohmann escapes them in JSON
    # strings, and raw text goes through safeText.
    for extra in ([], ["--color", "always"]):
        _, out, _ = ks(kscribe_bin, home, "show", CLOSED, "--body", "2", *extra)
        assert "\\u001b[31mred" in out
        stripped = re.sub(r"\x1b\[[0-9;]*m", "", out) if extra else out
        assert "\x1b" not in stripped and "\u009b" not in stripped


def test_show_errors(kscribe_bin, home):
    rc, _, err = ks(kscribe_bin, home, "show", "2026021")
    assert rc == 1 and "ambiguous" in err
    rc, _, err = ks(kscribe_bin, home, "show", "nope")
    assert rc == 1 and "no session nope" in err
    rc, _, err = ks(kscribe_bin, home, "show", CLOSED, "--body", "99")
    assert rc == 1 and "no exchange 99" in err


def test_open_session_with_a_torn_last_line(kscribe_bin, home, workdir):
    # A crash can leave half a line at the end of an open session: shown without it.
    path = os.path.join(workdir, "storage", "2026-02-11", OPEN + ".jsonl")
    with open(path, "ab") as f:
        f.write(b'{"timestamp":"2026-02-11T09:00:0')
    try:
        rc, out, err = ks(kscribe_bin, home, "show", OPEN)
        assert rc == 0, err
        assert "(open)" in out and "still open" in out
        assert len(out[out.index("SEQ "):].splitlines()) == 3
    finally:
        with open(path, "rb+") as f:
            data = f.read()
            f.seek(0)
            f.truncate()
            f.write(data[:data.rindex(b"\n") + 1])
