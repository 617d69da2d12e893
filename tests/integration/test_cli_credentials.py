"""`kscribe init` and `kscribe agent add|list` with the built binary: files, modes, certificates
(checked with the openssl CLI), kubeconfig, config.yaml rewrite, and the token never leaking."""

import base64
import hashlib
import os
import stat
import subprocess

import pytest
import yaml

KSCRIBE = os.environ.get("KSCRIBE_BIN", "kscribe")


def run(*args, check=True, env=None):
    p = subprocess.run([KSCRIBE, *args], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stdout}\n{p.stderr}")
    return p


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def openssl(*args):
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    p = run("init", "--home", str(h), "--san", "kscribe.test", "--san", "10.20.30.40")
    assert str(h) in p.stdout
    return h


def test_init_creates_home(home):
    for f in ("ca.crt", "server.crt", "config.yaml"):
        assert (home / f).is_file()
        assert mode(home / f) == 0o644, f
    for f in ("ca.key", "server.key"):
        assert mode(home / f) == 0o600, f
    assert (home / "sessions").is_dir() and (home / "audit").is_dir()
    assert mode(home) == 0o700

    v = openssl("verify", "-CAfile", str(home / "ca.crt"), str(home / "server.crt"))
    assert v.returncode == 0, v.stderr
    text = openssl("x509", "-in", str(home / "server.crt"), "-noout", "-text").stdout
    for san in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1",
                "DNS:kscribe.test", "IP Address:10.20.30.40", "DNS:" + os.uname().nodename):
        assert san in text
    assert "TLS Web Server Authentication" in text
    ca_text = openssl("x509", "-in", str(home / "ca.crt"), "-noout", "-text").stdout
    assert "CA:TRUE" in ca_text and "Certificate Sign" in ca_text
    assert "ASN1 OID: prime256v1" in ca_text

    cfg = yaml.safe_load((home / "config.yaml").read_text())
    assert cfg["tls"]["ca_cert"] == str(home / "ca.crt")
    assert cfg["attribution"] == ("required" if os.geteuid() == 0 else "optional")
    assert (home / "config.yaml").read_text().startswith("#")
    run("config", "check", str(home / "config.yaml"), "--home", str(home))


def test_init_refuses_existing_home_without_force(home):
    before = (home / "ca.crt").read_text()
    p = run("init", "--home", str(home), check=False)
    assert p.returncode == 2
    assert "--force" in p.stderr
    assert (home / "ca.crt").read_text() == before
    run("init", "--home", str(home), "--force")
    assert (home / "ca.crt").read_text() != before
    assert mode(home / "ca.key") == 0o600


def test_init_uses_kscribe_home_env(tmp_path):
    env = dict(os.environ, KSCRIBE_HOME=str(tmp_path / "envhome"))
    run("init", env=env)
    assert (tmp_path / "envhome" / "ca.key").is_file()


def test_agent_add_issues_credentials(home):
    outputs = []
    p = run("agent", "add", "bot-1", "--home", str(home), "--uid", "1000", "--uid", "1001",
            "--exe", "/usr/bin/kubectl*", "--comm", "kubectl", "--cgroup", "/user.slice/*",
            "--container-id", "abc123", "--k8s-namespace", "ai", "--k8s-service-account", "bot",
            "--k8s-pod-label", "app=agent", "--gid", "100")
    outputs.append(p.stdout + p.stderr)
    d = home / "agents" / "bot-1"
    assert mode(d / "agent.crt") == 0o644
    for f in ("agent.key", "token", "kubeconfig"):
        assert mode(d / f) == 0o600, f
    assert mode(d) == 0o700

    v = openssl("verify", "-CAfile", str(home / "ca.crt"), str(d / "agent.crt"))
    assert v.returncode == 0, v.stderr
    text = openssl("x509", "-in", str(d / "agent.crt"), "-noout", "-text").stdout
    assert "URI:spiffe://kscribe.local/agent/bot-1" in text
    assert "TLS Web Client Authentication" in text
    # The key matches the certificate.
    pub_cert = openssl("x509", "-in", str(d / "agent.crt"), "-noout", "-pubkey").stdout
    pub_key = openssl("pkey", "-in", str(d / "agent.key"), "-pubout").stdout
    assert pub_cert and pub_cert == pub_key

    token = (d / "token").read_text().strip()
    assert len(token) == 43
    assert base64.urlsafe_b64decode(token + "=")  # base64url, 32 bytes

    kc = yaml.safe_load((d / "kubeconfig").read_text())
    assert kc["kind"] == "Config"
    cluster = kc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:7443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == \
        (home / "ca.crt").read_text()
    users = {u["name"]: u["user"] for u in kc["users"]}
    assert base64.b64decode(users["bot-1"]["client-certificate-data"]).decode() == \
        (d / "agent.crt").read_text()
    assert base64.b64decode(users["bot-1"]["client-key-data"]).decode() == \
        (d / "agent.key").read_text()
    assert users["bot-1-token"]["token"] == token
    contexts = {c["name"]: c["context"] for c in kc["contexts"]}
    assert contexts["bot-1"]["user"] == "bot-1"
    assert contexts["bot-1-token"]["user"] == "bot-1-token"
    assert kc["current-context"] == "bot-1"
    # kubectl itself accepts it.
    if os.path.exists("/usr/bin/kubectl"):
        k = subprocess.run(["/usr/bin/kubectl", "--kubeconfig", str(d / "kubeconfig"), "config",
                            "get-contexts", "-o", "name"], capture_output=True, text=True)
        assert k.returncode == 0, k.stderr
        assert set(k.stdout.split()) == {"bot-1", "bot-1-token"}

    config_text = (home / "config.yaml").read_text()
    assert token not in config_text
    cfg = yaml.safe_load(config_text)
    (agent,) = cfg["identity"]["agents"]
    assert agent["name"] == "bot-1"
    assert agent["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    sel = agent["selectors"]
    assert sel["uid"] == [1000, 1001] and sel["gid"] == [100]
    assert sel["exe"] == ["/usr/bin/kubectl*"] and sel["comm"] == ["kubectl"]
    assert sel["cgroup"] == ["/user.slice/*"] and sel["container_id"] == ["abc123"]
    assert sel["k8s"] == {"namespace": ["ai"], "service_account": ["bot"],
                          "pod_label": ["app=agent"]}
    p = run("config", "check", str(home / "config.yaml"), "--home", str(home))
    outputs.append(p.stdout + p.stderr)

    p = run("agent", "add", "bot-2", "--home", str(home))
    outputs.append(p.stdout + p.stderr)
    token2 = (home / "agents" / "bot-2" / "token").read_text().strip()
    assert token2 != token
    p = run("agent", "list", "--home", str(home))
    outputs.append(p.stdout + p.stderr)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("bot-1\tspiffe://kscribe.local/agent/bot-1")
    assert "uid=1000" in lines[0]
    assert lines[1].startswith("bot-2\t")
    for args in (("config", "show", "--home", str(home)),
                 ("config", "show", "--yaml", "--home", str(home))):
        p = run(*args)
        outputs.append(p.stdout + p.stderr)
    for out in outputs:
        assert token not in out and token2 not in out
    assert len(yaml.safe_load((home / "config.yaml").read_text())["identity"]["agents"]) == 2


def test_agent_add_refusals(home):
    run("agent", "add", "bot", "--home", str(home))
    first = (home / "agents" / "bot" / "token").read_text()
    p = run("agent", "add", "bot", "--home", str(home), check=False)
    assert p.returncode == 2 and "--force" in p.stderr
    run("agent", "add", "bot", "--home", str(home), "--force")
    assert (home / "agents" / "bot" / "token").read_text() != first
    assert len(yaml.safe_load((home / "config.yaml").read_text())["identity"]["agents"]) == 1

    for bad in ("../evil", ".hidden", "a/b", "sp ace"):
        p = run("agent", "add", bad, "--home", str(home), check=False)
        assert p.returncode == 2, bad
    assert not (home / "evil").exists()
    p = run("agent", "add", "x", "--home", str(home), "--k8s-pod-label", "nolabel", check=False)
    assert p.returncode == 2 and "key=value" in p.stderr
    p = run("agent", "add", "x", "--home", str(home / "nonexistent"), check=False)
    assert p.returncode == 2 and "kscribe init" in p.stderr
