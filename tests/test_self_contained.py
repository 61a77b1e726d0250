"""Every model script imports only the standard library, torch, torchvision, numpy and tyro (wandb: lazily, inside the
code that runs under --track)."""
import ast
import sys

import pytest
from helpers import ROOT

SCRIPTS = ["gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan"]
ALLOWED = {"torch", "torchvision", "numpy", "tyro"} | set(sys.stdlib_module_names)
PRESENT = [s for s in SCRIPTS if (ROOT / f"{s}.py").exists()]


@pytest.mark.parametrize("name", PRESENT)
def test_imports_only_allowed_modules(name):
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}.py:{node.lineno}: relative import"
            modules = [node.module]
        else:
            continue
        for m in modules:
            top = m.split(".")[0]
            lazy_wandb = top == "wandb" and id(node) not in top_level
            assert (top in ALLOWED or lazy_wandb) and top not in SCRIPTS, f"{name}.py:{node.lineno} imports {m}"


@pytest.mark.parametrize("name", PRESENT)
def test_main_guard_and_no_deprecated_api(name):
    src = (ROOT / f"{name}.py").read_text()
    tree = ast.parse(src)
    assert any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
    assert "Variable(" not in src and ".data[0]" not in src
    assert "eps=0.8" not in src.replace(" ", ""), "BatchNorm eps=0.8 is a Keras momentum value"
    assert "BCELoss(" not in src, "use BCEWithLogits, not sigmoid + BCELoss"
