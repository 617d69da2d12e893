"""Shipping to a real single-node OpenStack Swift (s3api, tempauth, one replica, loopback):
sessions handed to the spool arrive with identical bytes (checked with the AWS CLI), single PUT and
multipart; Swift down before and during an upload; wrong credentials; the spool-full policies;
HTTPS with shipping.ca_file set to a test CA, and a wrong CA (a clear error, the spool kept). The
spool's entry.json files and the uploaded audit head validate against schemas/."""

import json
import os
import signal
import subprocess
import time
import uuid

import pytest
import yaml

import kscribe_schemas
import swift_util

KSCRIBE = os.environ.get("KSCRIBE_BIN", "kscribe")
BUCKET = "kscribe-test"


@pytest.fixture(scope="module")
def swift(tmp_path_factory):
    missing = swift_util.have_swift()
    if missing:
        pytest.skip("Swift/AWS CLI not installed (deploy/install-deps.sh): " + ", ".join(missing))
    with swift_util.running_swift(str(tmp_path_factory.mktemp("swift")), BUCKET) as s:
        yield s


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA with a server certificate for 127.0.0.1, and an unrelated second CA."""
    d = str(tmp_path_factory.mktemp("pki"))
    return swift_util.make_test_pki(d, "test"), swift_util.make_test_pki(d, "other")[2]


@pytest.fixture(scope="module")
def swift_tls(tmp_path_factory, pki):
    """A second Swift whose proxy serves HTTPS with the test CA's server certificate."""
    missing = swift_util.have_swift()
    if missing:
        pytest.skip("Swift/AWS CLI not installed (deploy/install-deps.sh): " + ", ".join(missing))
    with swift_util.running_swift(str(tmp_path_factory.mktemp("swift-tls")), BUCKET,
                                  tls=pki[0]) as s:
        yield s


def kenv(secret=swift_util.SECRET_KEY):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=swift_util.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=secret)
    return env


def ks(*args, env=None, check=True):
    p = subprocess.run([KSCRIBE, *args], capture_output=True, text=True, env=env or kenv(),
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"kscribe {args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def make_home(tmp_path, swift, **shipping):
    home = tmp_path / "home"
    ks("init", "--home", str(home))
    cfg = yaml.safe_load((home / "config.yaml").read_text())
    cfg["shipping"].update(enabled=True, endpoint=swift.endpoint, bucket=BUCKET,
                           region=swift_util.REGION, cluster="c1",
                           node="n1", prefix="kscribe-" + uuid.uuid4().hex[:8],
                           multipart_threshold="16MB", part_size="5MiB", max_retries=2,
                           upload_interval="500ms")
    cfg["shipping"].update(shipping)
    (home / "config.yaml").write_text(yaml.safe_dump(cfg))
    ks("config", "check", str(home / "config.yaml"), "--home", str(home))
    return home, cfg["shipping"]["prefix"]


def session(tmp_path, sid, size):
    """A closed session: JSONL of about `size` bytes plus a manifest."""
    data = tmp_path / f"{sid}.jsonl"
    line = json.dumps({"method": "GET", "path": "/api/v1/pods", "pad": os.urandom(300).hex()})
    with open(data, "w") as f:
        n = 0
        while n < size:
            f.write(line + "\n")
            n += len(line) + 1
    manifest = tmp_path / f"{sid}.manifest.json"
    manifest.write_text(json.dumps({"session_id": sid, "lines": n}))
    return data, manifest


STARTED = 1790000000  # 2026-09-21 UTC
DATE = "2026-09-21"


def spool_add(home, agent, sid, data, manifest):
    return ks("spool", "add", "--home", str(home), "--agent", agent, "--session-id", sid,
              "--started", str(STARTED), str(data), str(manifest))


def keys_under(swift, tmp_path, prefix):
    p = swift.aws(str(tmp_path), "s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix",
                  prefix)
    out = p.stdout.decode().strip()
    return sorted(o["Key"] for o in json.loads(out).get("Contents", [])) if out else []


def fetch(swift, tmp_path, key):
    dest = tmp_path / ("fetched-" + uuid.uuid4().hex)
    swift.aws(str(tmp_path), "s3", "cp", f"s3://{BUCKET}/{key}", str(dest))
    return dest.read_bytes()


def pending(home):
    out = ks("spool", "list", "--home", str(home)).stdout
    return [line for line in out.splitlines() if not line.startswith("spool bytes")]


def test_sessions_arrive_with_identical_bytes(swift, tmp_path):
    home, prefix = make_home(tmp_path, swift)
    sessions = {"s-small-1": ("bot-a", 2_000), "s-small-2": ("bot-b", 50_000),
                "s-big": ("bot-a", 20_000_000)}  # above the 16MB threshold: multipart
    files = {}
    for sid, (agent, size) in sessions.items():
        files[sid] = session(tmp_path, sid, size)
        spool_add(home, agent, sid, *files[sid])
    audit = home / "audit" / "audit.jsonl"
    audit.write_text(json.dumps({"prev_hash": "genesis", "hash": "a" * 64}) + "\n" +
                     json.dumps({"prev_hash": "a" * 64, "hash": "b" * 64}) + "\n")
    entries = kscribe_schemas.validate_spool(home / "spool")
    assert [e["session_id"] for e in entries] == list(sessions)

    p = ks("ship", "--home", str(home), "--once")
    assert "uploaded sessions: 3" in p.stdout
    assert pending(home) == []

    expected = []
    for sid, (agent, _) in sessions.items():
        data, manifest = files[sid]
        base = f"{prefix}/c1/n1/{agent}/{DATE}/{sid}"
        expected += [base + ".jsonl", base + ".manifest.json"]
        assert fetch(swift, tmp_path, base + ".jsonl") == data.read_bytes()
        assert fetch(swift, tmp_path, base + ".manifest.json") == manifest.read_bytes()
    expected.append(f"{prefix}/c1/n1/audit/head.json")
    assert keys_under(swift, tmp_path, prefix) == sorted(expected)
    head = kscribe_schemas.validate_audit_head(
        fetch(swift, tmp_path, f"{prefix}/c1/n1/audit/head.json"))
    assert head["hash"] == "b" * 64 and head["node"] == "n1" and head["cluster"] == "c1"
    assert head["audit_file_size"] == audit.stat().st_size
    # The big one really went multipart (an S3 multipart ETag ends in -<parts>).
    h = swift.aws(str(tmp_path), "s3api", "head-object", "--bucket", BUCKET, "--key",
                  f"{prefix}/c1/n1/bot-a/{DATE}/s-big.jsonl")
    assert json.loads(h.stdout)["ETag"].strip('"').endswith("-4")


def test_swift_down_before_upload(swift, tmp_path):
    home, prefix = make_home(tmp_path, swift)
    data, manifest = session(tmp_path, "s-down", 10_000)
    swift.stop(["proxy"])
    try:
        spool_add(home, "bot", "s-down", data, manifest)
        p = ks("ship", "--home", str(home), "--once", check=False)
        assert p.returncode == 1
        assert "Network" in p.stdout + p.stderr and "connection refused" in (p.stdout + p.stderr).lower()
        assert len(pending(home)) == 1
    finally:
        swift.start(["proxy"])
    ks("ship", "--home", str(home), "--once")
    assert pending(home) == []
    base = f"{prefix}/c1/n1/bot/{DATE}/s-down"
    assert keys_under(swift, tmp_path, prefix) == [base + ".jsonl", base + ".manifest.json"]
    assert fetch(swift, tmp_path, base + ".jsonl") == data.read_bytes()


def test_swift_down_during_upload(swift, tmp_path):
    home, prefix = make_home(tmp_path, swift, upload_interval="1s")
    data, manifest = session(tmp_path, "s-during", 60_000_000)  # 12 parts of 5MiB
    spool_add(home, "bot", "s-during", data, manifest)
    proxy_log_before = len(swift.log("proxy"))
    shipper = subprocess.Popen([KSCRIBE, "ship", "--home", str(home)], env=kenv(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until parts are flowing, then take Swift's proxy away mid-upload.
        deadline = time.time() + 60
        while "partNumber" not in swift.log("proxy")[proxy_log_before:]:
            assert time.time() < deadline, "multipart upload never started"
            time.sleep(0.05)
        swift.stop(["proxy"])
        time.sleep(3)
        assert len(pending(home)) == 1  # nothing confirmed, nothing deleted
        swift.start(["proxy"])
        deadline = time.time() + 180
        while pending(home):
            assert time.time() < deadline, "spool never drained after Swift came back"
            assert shipper.poll() is None, shipper.stderr.read()
            time.sleep(0.5)
    finally:
        if shipper.poll() is None:
            shipper.send_signal(signal.SIGTERM)
        out, err = shipper.communicate(timeout=60)
    assert shipper.returncode == 0, err
    assert "failed uploads: 0" not in out  # the outage was seen ...
    base = f"{prefix}/c1/n1/bot/{DATE}/s-during"
    # ... and everything arrived, once.
    assert keys_under(swift, tmp_path, prefix) == [base + ".jsonl", base + ".manifest.json"]
    assert fetch(swift, tmp_path, base + ".jsonl") == data.read_bytes()
    assert fetch(swift, tmp_path, base + ".manifest.json") == manifest.read_bytes()


def test_wrong_credentials_keep_the_spool(swift, tmp_path):
    home, prefix = make_home(tmp_path, swift)
    data, manifest = session(tmp_path, "s-creds", 5_000)
    spool_add(home, "bot", "s-creds", data, manifest)
    wrong = "not-the-secret-" + uuid.uuid4().hex
    p = ks("ship", "--home", str(home), "--once", env=kenv(secret=wrong), check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 1
    assert "SignatureDoesNotMatch" in out or "InvalidAccessKeyId" in out or "AccessDenied" in out
    assert "credentials" in out
    assert wrong not in out
    assert "attempts" not in out  # not retried: a credential error does not heal itself
    assert len(pending(home)) == 1
    assert keys_under(swift, tmp_path, prefix) == []
    ks("ship", "--home", str(home), "--once")
    assert pending(home) == []


def test_spool_full_reject_holds_everything(swift, tmp_path):
    home, prefix = make_home(tmp_path, swift, spool_max_size="4KB", on_spool_full="reject")
    swift.stop(["proxy"])
    try:
        a = session(tmp_path, "s-full-1", 1_500)
        b = session(tmp_path, "s-full-2", 3_000)
        assert "accepting new requests: yes" in spool_add(home, "bot", "s-full-1", *a).stdout
        # Over the bound: new requests are refused, but the closing session is still kept.
        assert "accepting new requests: no" in spool_add(home, "bot", "s-full-2", *b).stdout
        assert len(pending(home)) == 2
        assert "dropped: 0" in ks("spool", "list", "--home", str(home)).stdout
        assert ks("ship", "--home", str(home), "--once", check=False).returncode == 1
    finally:
        swift.start(["proxy"])
    ks("ship", "--home", str(home), "--once")
    out = ks("spool", "list", "--home", str(home)).stdout
    assert "accepting new requests: yes" in out
    assert len(keys_under(swift, tmp_path, prefix)) == 4


def test_spool_full_drop_oldest(swift, tmp_path):
    home, prefix = make_home(tmp_path, swift, spool_max_size="5KB", on_spool_full="drop_oldest")
    for i in range(3):
        spool_add(home, "bot", f"s-drop-{i}", *session(tmp_path, f"s-drop-{i}", 1_500))
    out = ks("spool", "list", "--home", str(home)).stdout
    assert "s-drop-0" not in out and "s-drop-2" in out
    assert "accepting new requests: yes" in out and "dropped: 1" in out
    ks("ship", "--home", str(home), "--once")
    keys = keys_under(swift, tmp_path, prefix)
    assert not any("s-drop-0" in k for k in keys)
    assert any("s-drop-2.jsonl" in k for k in keys)



def test_https_with_ca_file(swift_tls, pki, tmp_path):
    assert swift_tls.endpoint.startswith("https://127.0.0.1:")
    home, prefix = make_home(tmp_path, swift_tls, ca_file=pki[0][2])
    data, manifest = session(tmp_path, "s-tls", 30_000)
    spool_add(home, "bot", "s-tls", data, manifest)
    audit = home / "audit" / "audit.jsonl"
    audit.write_text(json.dumps({"prev_hash": "genesis", "hash": "c" * 64}) + "\n")
    p = ks("ship", "--home", str(home), "--once")
    assert "uploaded sessions: 1" in p.stdout
    assert pending(home) == []
    base = f"{prefix}/c1/n1/bot/{DATE}/s-tls"
    assert keys_under(swift_tls, tmp_path, prefix) == sorted(
        [base + ".jsonl", base + ".manifest.json", f"{prefix}/c1/n1/audit/head.json"])
    assert fetch(swift_tls, tmp_path, base + ".jsonl") == data.read_bytes()
    assert fetch(swift_tls, tmp_path, base + ".manifest.json") == manifest.read_bytes()
    head = kscribe_schemas.validate_audit_head(
        fetch(swift_tls, tmp_path, f"{prefix}/c1/n1/audit/head.json"))
    assert head["hash"] == "c" * 64
    # Swift's proxy listens only with TLS here, and it logged the PUT.
    assert "PUT /" in swift_tls.log("proxy") and "s-tls.jsonl" in swift_tls.log("proxy")


@pytest.mark.parametrize("which", ["other-ca", "system-store", "wrong-host"])
def test_https_wrong_ca_is_a_clear_error_and_keeps_the_spool(swift_tls, pki, tmp_path, which):
    # other-ca: a CA that did not sign the server's certificate; system-store: no ca_file (the
    # test CA is in no system store); wrong-host: the right CA, but the endpoint names a host the
    # certificate (IP SAN 127.0.0.1 only) does not.
    settings = {"other-ca": {"ca_file": pki[1]}, "system-store": {},
                "wrong-host": {"ca_file": pki[0][2],
                               "endpoint": swift_tls.endpoint.replace("127.0.0.1", "localhost")}}
    home, prefix = make_home(tmp_path, swift_tls, **settings[which])
    endpoint = settings[which].get("endpoint", swift_tls.endpoint)
    data, manifest = session(tmp_path, "s-badca", 3_000)
    spool_add(home, "bot", "s-badca", data, manifest)
    started = time.monotonic()
    p = ks("ship", "--home", str(home), "--once", check=False)
    elapsed = time.monotonic() - started
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "TLS handshake with " + endpoint + " failed: certificate verify failed" in out, out
    assert "shipping.ca_file (" + settings[which].get("ca_file", "unset: the system trust store") \
        + ")" in out, out
    if which != "wrong-host":
        assert "unable to get local issuer certificate" in out, out
    assert "attempts" not in out  # not retried: a certificate does not become trusted by waiting
    assert elapsed < 10, elapsed
    assert len(pending(home)) == 1
    assert keys_under(swift_tls, tmp_path, prefix) == []
    # With the right CA and endpoint the kept entry ships.
    cfg = yaml.safe_load((home / "config.yaml").read_text())
    cfg["shipping"].update(ca_file=pki[0][2], endpoint=swift_tls.endpoint)
    (home / "config.yaml").write_text(yaml.safe_dump(cfg))
    ks("ship", "--home", str(home), "--once")
    assert pending(home) == []
    base = f"{prefix}/c1/n1/bot/{DATE}/s-badca"
    assert fetch(swift_tls, tmp_path, base + ".jsonl") == data.read_bytes()
