import pytest
from helpers import write_mnist


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A tiny MNIST and Fashion-MNIST in torchvision's raw IDX layout (256 train / 100 test images)."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST")
    write_mnist(root, "FashionMNIST")
    return root
