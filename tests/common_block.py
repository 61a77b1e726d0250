"""The common block (all ten scripts), the image-data block (the eight noise-to-image scripts) and the image-to-image
data block (pix2pix and cyclegan): read and copy them.

The blocks are copied text, never imported: a change is made in one script, then copied to the others with
`python tests/common_block.py --sync SCRIPT` (a maintainer's tool, not collected by pytest); test_common_block.py
checks that every copy is byte-for-byte the same.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["gan", "cgan", "dcgan", "lsgan", "infogan", "wgan", "wgan_gp", "began", "pix2pix", "cyclegan"]
IMAGE_SCRIPTS = SCRIPTS[:8]
I2I_SCRIPTS = SCRIPTS[8:]
MARKERS = {"common": ("CleanGAN common block", "end of common block"),
           "image": ("CleanGAN image-data block", "end of image-data block"),
           "i2i": ("CleanGAN image-to-image data block", "end of image-to-image data block")}


def span(text: str, kind: str):
    """(start, end) character offsets of a block, its two marker lines included, or None."""
    first, last = MARKERS[kind]
    lines = text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.startswith("#") and first in ln]
    ends = [i for i, ln in enumerate(lines) if ln.startswith("#") and last in ln]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        return None
    return sum(map(len, lines[:starts[0]])), sum(map(len, lines[:ends[0] + 1]))


def block(name: str, kind: str = "common"):
    text = (ROOT / f"{name}.py").read_text()
    where = span(text, kind)
    return None if where is None else text[where[0]:where[1]]


def sync(source: str):
    for kind, targets in [("common", SCRIPTS), ("image", IMAGE_SCRIPTS), ("i2i", I2I_SCRIPTS)]:
        new = block(source, kind)
        for name in targets:
            path = ROOT / f"{name}.py"
            text = path.read_text()
            where = span(text, kind)
            if new is not None and where is not None and name != source:
                path.write_text(text[:where[0]] + new + text[where[1]:])
                print(f"{name}.py: {kind} block copied from {source}.py")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--sync":
        sys.exit("usage: python tests/common_block.py --sync SCRIPT")
    sync(sys.argv[2])
