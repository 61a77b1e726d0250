import os

# numpy's OpenBLAS on one thread (set before numpy loads; the test runs and their subprocesses inherit it): this
# process already runs torch's thread pool, and on a busy machine OpenBLAS threads that spin while waiting for each
# other made each small FID (a 128 x 128 eigendecomposition) tens of times slower. Results do not depend on it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
from helpers import write_mnist  # noqa: E402


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A tiny MNIST and Fashion-MNIST in torchvision's raw IDX layout (256 train / 100 test images)."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST")
    write_mnist(root, "FashionMNIST")
    return root
