"""Suite-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread: the tiny test models run faster on a busy 2-core machine, and results do
    not depend on the core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server (moto's server mode on 127.0.0.1) for every test that asks for it."""
    from s3_server import moto_server

    with moto_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the test server."""
    return s3_server.bucket()
