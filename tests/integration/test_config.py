"""The config as users meet it: schema, `kscribe config check`, and `kscribe serve` refusing bad files.

Every example config in the repo (tests/fixtures/config/good, the DaemonSet's ConfigMap, what
`kscribe init` writes) validates against schemas/config.schema.json and loads; every bad one makes
`kscribe serve` exit 2 naming the key and problem, before anything starts.
"""
import json
import os
import pathlib
import subprocess

import jsonschema
import pytest
import yaml

SRC = pathlib.Path(os.environ.get("KSCRIBE_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
KSCRIBE = os.environ.get("KSCRIBE_BIN", str(SRC / "build" / "kscribe"))
SCHEMA = json.loads((SRC / "schemas" / "config.schema.json").read_text())
FIXTURES = SRC / "tests" / "fixtures" / "config"


def run(*args, env=None, timeout=20):
    return subprocess.run([KSCRIBE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def example_configs():
    """(name, text) of every kscribe config kept in the repo."""
    out = [(p.name, p.read_text()) for p in sorted((FIXTURES / "good").glob("*.yaml"))]
    for manifest in sorted((SRC / "deploy").glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and "config.yaml" in doc.get("data", {}):
                out.append((f"{manifest.name}:{doc['metadata']['name']}", doc["data"]["config.yaml"]))
    return out


def test_defaults_validate():
    res = run("config", "show", "--defaults")
    assert res.returncode == 0, res.stderr
    defaults = json.loads(res.stdout)
    jsonschema.validate(defaults, SCHEMA)
    api = defaults["sessions"]["api"]
    assert api["idle_timeout"] == "5m" and api["max_body_size"] == "1MB"
    assert api["enabled"] is True and api["redact_secrets"] is True
    assert api["storage"].endswith(".kscribe/sessions/") or api["storage"].endswith("/sessions/")


def test_defaults_as_yaml_load_back(tmp_path):
    res = run("config", "show", "--defaults", "--yaml")
    assert res.returncode == 0, res.stderr
    f = tmp_path / "defaults.yaml"
    f.write_text(res.stdout)
    jsonschema.validate(yaml.safe_load(res.stdout), SCHEMA)
    assert run("config", "check", str(f)).returncode == 0


@pytest.mark.parametrize("name,text", example_configs(), ids=[n for n, _ in example_configs()])
def test_example_config_validates_and_loads(name, text, tmp_path):
    jsonschema.validate(yaml.safe_load(text), SCHEMA)
    f = tmp_path / "config.yaml"
    f.write_text(text)
    res = run("config", "check", str(f))
    assert res.returncode == 0, f"{name}: {res.stderr}"


def test_init_config_validates(tmp_path):
    home = tmp_path / "home"
    if " init " not in run("--help").stdout:
        pytest.skip("kscribe init is not built yet")
    res = run("init", "--home", str(home))
    assert res.returncode == 0, res.stderr
    jsonschema.validate(yaml.safe_load((home / "config.yaml").read_text()), SCHEMA)


BAD = sorted((FIXTURES / "bad").glob("*.yaml"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_exits_2_naming_the_problem(path, tmp_path):
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    home = tmp_path / "home"
    res = run("serve", "--home", str(home), "--config", str(path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr
    assert str(path) in res.stderr
    # Nothing else started: no home, no listener, no recordings.
    assert not home.exists()
    assert "serving" not in res.stderr


def test_bad_config_is_also_refused_by_the_schema():
    for path in BAD:
        if path.stem == "yaml":
            continue
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


def test_missing_config_file_exits_2(tmp_path):
    missing = tmp_path / "nope.yaml"
    res = run("serve", "--config", str(missing))
    assert res.returncode == 2
    assert f"{missing}: cannot read config file: no such file" in res.stderr


def test_usage_errors_exit_2():
    assert run("no-such-command").returncode == 2
    assert run("serve", "--no-such-flag").returncode == 2


def test_help_on_every_command():
    res = run("--help")
    assert res.returncode == 0
    commands = [line.split()[0] for line in res.stdout.split("Subcommands:")[1].splitlines() if line.strip()]
    assert "serve" in commands and "version" in commands
    for cmd in commands:
        sub = run(cmd, "--help")
        assert sub.returncode == 0, cmd
        assert "Usage" in sub.stdout, cmd


def test_version_names_libraries():
    res = run("version")
    assert res.returncode == 0
    for word in ("kscribe", "commit", "libbpf", "openssl", "boost"):
        assert word in res.stdout
