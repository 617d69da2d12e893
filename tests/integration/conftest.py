"""pytest fixtures for kscribe's integration tests (helpers in harness.py)."""

import os
import shutil

import pytest

import harness


@pytest.fixture(scope="module")
def workdir():
    d = harness.tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def apiserver(workdir):
    """A fresh test API server (seeded: namespaces, pods web-0 and worker) for this module."""
    srv = harness.ApiServer(os.path.join(workdir, "apiserver"))
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def kubectl_direct(apiserver, workdir):
    """kubectl straight at the test API server."""
    return harness.Kubectl(apiserver.kubeconfig, os.path.join(workdir, "kubectl-direct"))


@pytest.fixture(scope="module")
def kscribe_bin():
    b = harness.kscribe_bin()
    if not b:
        pytest.skip("the kscribe binary is not built (KSCRIBE_BIN)")
    return b
