"""Shared helpers for kscribe's Python integration tests.

- ApiServer: the test/demo Kubernetes API server (tests/apiserver/server.py) on port 0.
- KscribeHome / Kscribe: a temporary kscribe home (`kscribe init`, `kscribe agent add`) and a
  running `kscribe serve` whose upstream is an ApiServer.
- Kubectl: the real kubectl (/usr/bin/kubectl) with a given kubeconfig and a private HOME, so no
  discovery cache is shared between tests.
Every process started here is stopped by the owner's stop() (the fixtures in conftest.py call it),
by process id, also when a test fails.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

SOURCE_DIR = os.environ.get("KSCRIBE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("KSCRIBE_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
PYTHON = os.environ.get("KSCRIBE_PYTHON") or "/usr/bin/python3"
KUBECTL = shutil.which("kubectl", path="/usr/bin") or "/usr/bin/kubectl"
SERVER_PY = os.path.join(SOURCE_DIR, "tests", "apiserver", "server.py")


def kscribe_bin():
    b = os.environ.get("KSCRIBE_BIN") or os.path.join(BUILD_DIR, "kscribe")
    return b if os.path.exists(b) else None


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out after %.0fs waiting for %s" % (timeout, what))


def free_port():
    """A port that was free a moment ago. Only for `kscribe agent add`, whose kubeconfig needs
    the proxy's port before the proxy starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process in its own session, with its output in a file; stop() ends it by pid."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv, self.log_path = argv, log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                     start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group we created for it
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


class ApiServer:
    """The test API server on 127.0.0.1, port 0."""

    def __init__(self, workdir, cert_dir=None, auth="cert"):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.cert_dir = cert_dir or os.path.join(workdir, "certs")
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        self.port_file = os.path.join(workdir, "port")
        self.auth = auth
        self.process = None
        self.port = None

    def start(self, timeout=30):
        self.process = Process([PYTHON, SERVER_PY, "--port", "0", "--port-file", self.port_file,
                                "--cert-dir", self.cert_dir, "--kubeconfig-out",
                                self.kubeconfig, "--kubeconfig-auth", self.auth],
                               os.path.join(self.dir, "apiserver.log"))

        def ready():
            if not self.process.alive():
                raise RuntimeError("test API server exited: %s" % self.process.output())
            return os.path.exists(self.port_file)
        wait_for(ready, timeout, "the test API server's port file")
        with open(self.port_file) as f:
            self.port = int(f.read())
        self.url = "https://127.0.0.1:%d" % self.port
        return self

    @property
    def ca_file(self):
        return os.path.join(self.cert_dir, "ca.crt")

    def log(self):
        return self.process.output() if self.process else ""

    def stop(self):
        if self.process:
            self.process.stop()


class Kubectl:
    def __init__(self, kubeconfig, home):
        self.kubeconfig = kubeconfig
        self.home = home
        os.makedirs(home, exist_ok=True)

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KUBE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                    "https_proxy"))}
        env.update({"HOME": self.home, "KUBECONFIG": self.kubeconfig, "NO_PROXY": "*",
                    "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        return env

    def run(self, *args, input=None, timeout=60, check=False, env=None):
        full_env = self.env()
        full_env.update(env or {})
        p = subprocess.run([KUBECTL, *args], input=input.encode() if isinstance(input, str)
                           else input, capture_output=True, env=full_env, timeout=timeout)
        r = Result(args, p.returncode, p.stdout.decode(errors="replace"),
                   p.stderr.decode(errors="replace"))
        if check and p.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                                  r.stderr))
        return r

    def stream(self, *args):
        """Starts kubectl and collects its stdout lines with their arrival times."""
        return Stream([KUBECTL, *args], self.env())


class Result:
    def __init__(self, args, rc, stdout, stderr):
        self.args, self.rc, self.stdout, self.stderr = args, rc, stdout, stderr

    def __repr__(self):
        return "Result(kubectl %s rc=%d stdout=%r stderr=%r)" % (
            " ".join(self.args), self.rc, self.stdout, self.stderr)


class Stream:
    """A running kubectl whose output lines are read as they arrive."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.lines = []  # (monotonic time, line)
        self.cond = threading.Condition()
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def wait_lines(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.lines) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("kubectl printed %d lines, expected %d: %r (stderr %r)"
                                       % (len(self.lines), n, self.lines, self.stderr))
                self.cond.wait(left)
            return [l for _, l in self.lines]

    def wait_exit(self, timeout=30):
        rc = self.proc.wait(timeout)
        time.sleep(0.05)
        return rc

    def text(self):
        with self.cond:
            return "\n".join(l for _, l in self.lines) + ("\n" if self.lines else "")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class KscribeHome:
    """A temporary kscribe home made by `kscribe init --home DIR`."""

    def __init__(self, path, binary=None):
        self.path = path
        self.bin = binary or kscribe_bin()
        if not self.bin:
            raise RuntimeError("kscribe binary not found (KSCRIBE_BIN)")
        self.config = os.path.join(path, "config.yaml")

    def run(self, *args, check=True, timeout=60):
        p = subprocess.run([self.bin, *args], capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("kscribe %s failed (%d): %s%s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def init(self):
        self.run("init", "--home", self.path)
        return self

    def configure(self, **sections):
        """Sets config.yaml keys: configure(listen={"port": 1}, attribution="off")."""
        import yaml
        with open(self.config) as f:
            cfg = yaml.safe_load(f) or {}
        for key, val in sections.items():
            if isinstance(val, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(val)
            else:
                cfg[key] = val
        with open(self.config, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)

    def add_agent(self, name):
        self.run("agent", "add", name, "--home", self.path)
        return os.path.join(self.path, "agents", name, "kubeconfig")


class Kscribe:
    """`kscribe serve --config HOME/config.yaml` in front of an ApiServer."""

    def __init__(self, workdir, upstream, agent="test-agent", binary=None, extra_config=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.upstream = upstream
        self.home = KscribeHome(os.path.join(workdir, "home"), binary)
        self.agent = agent
        self.extra = extra_config or {}
        self.process = None

    def start(self, timeout=30):
        self.home.init()
        self.port = free_port()
        settings = {
            "listen": {"address": "127.0.0.1", "port": self.port},
            "upstream": {"kubeconfig": self.upstream.kubeconfig, "context": "kscribe-test"},
            "attribution": "off",
            "metrics": {"enabled": False},
        }
        settings.update(self.extra)
        self.home.configure(**settings)
        self.kubeconfig = self.home.add_agent(self.agent)
        self.home.configure(**settings)  # in case `agent add` rewrote the file
        self.process = Process([self.home.bin, "serve", "--config", self.home.config],
                               os.path.join(self.dir, "kscribe.log"))

        def ready():
            if not self.process.alive():
                raise RuntimeError("kscribe serve exited (%s): %s" % (
                    self.process.proc.returncode, self.process.output()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False
        wait_for(ready, timeout, "kscribe serve to listen on %d" % self.port)
        return self

    def log(self):
        return self.process.output() if self.process else ""

    def stop(self, timeout=30):
        """SIGTERM; waits past kscribe's shutdown grace (limits.shutdown_grace, 10s) before
        SIGKILL."""
        if self.process:
            return self.process.stop(timeout)


def agent_tls(kubeconfig, tmp):
    """(server host, port, SSLContext, extra headers) from an agent kubeconfig."""
    import yaml
    with open(kubeconfig) as f:
        cfg = yaml.safe_load(f)
    base = os.path.dirname(kubeconfig)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]

    def material(d, key):
        if d.get(key + "-data"):
            path = os.path.join(tmp, key)
            with open(path, "wb") as f:
                f.write(base64.b64decode(d[key + "-data"]))
            return path
        p = d.get(key)
        return p if p is None or os.path.isabs(p) else os.path.join(base, p)

    ctx = ssl.create_default_context(cafile=material(cluster, "certificate-authority"))
    headers = {}
    cert, key = material(user, "client-certificate"), material(user, "client-key")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    elif user.get("token"):
        headers["Authorization"] = "Bearer " + user["token"]
    m = re.match(r"https://([^:/]+):(\d+)", cluster["server"])
    return m.group(1), int(m.group(2)), ctx, headers


def tmpdir(prefix="kscribe-it-"):
    return tempfile.mkdtemp(prefix=prefix)


def dump_logs(*things):
    for t in things:
        if t is not None:
            sys.stderr.write("---- %s log ----\n%s\n" % (type(t).__name__, t.log()[-20000:]))


# ------------------------------------------------------------------------------------------
# Output normalisation for comparing kubectl runs against two servers (direct and via kscribe).
# Only what legitimately differs between two fresh servers is replaced:
#  - ages in tables ("5s", "2m3s"): they depend on when each command ran;
#  - RFC 3339 timestamps: creation and condition times are wall-clock;
#  - uids: random per object;
#  - the API server's URL (host:port), which differs by design (the proxy's port).
AGE_RE = re.compile(r"(?<![\w.:/-])(\d+[smhdy])(\d+[smh])?(?![\w.:/-])")
TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
UID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URL_RE = re.compile(r"https://127\.0\.0\.1:\d+")


def normalise(text, table=False):
    text = TS_RE.sub("<time>", text)
    text = UID_RE.sub("<uid>", text)
    text = URL_RE.sub("<server>", text)
    if table:
        text = AGE_RE.sub("<age>", text)
        # column widths follow the longest cell, which an age can change
        text = re.sub(r"[ \t]+", " ", text)
    return text


def load_json(text):
    return json.loads(text)
