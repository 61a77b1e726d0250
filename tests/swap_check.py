"""Mutation check of the learning-signal tests (a maintainer's tool, not collected by pytest; about 3 minutes).

For each script, two copies of the repository get real and fake swapped: once at D's forward passes, once in the
call of D's loss. The script's own learning-signal test must fail on both. `python tests/swap_check.py [SCRIPT ...]`
prints CAUGHT or MISSED per copy and exits 1 if any swap went unnoticed.
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
# (as written in the script, swapped): at D's forward passes, then in the call of D's loss
SWAPS = {
    'gan': [
        ('real_logits, fake_logits = d_train(real), d_train(fake)',
         'real_logits, fake_logits = d_train(fake), d_train(real)'),
        ('discriminator_loss(real_logits, fake_logits, args',
         'discriminator_loss(fake_logits, real_logits, args'),
    ],
    'cgan': [
        ('real_logits, fake_logits = d_train(real, y), d_train(fake, y)',
         'real_logits, fake_logits = d_train(fake, y), d_train(real, y)'),
        ('d_loss = discriminator_loss(real_logits, fake_logits)',
         'd_loss = discriminator_loss(fake_logits, real_logits)'),
    ],
    'dcgan': [
        ('real_logits, fake_logits = d_train(real), d_train(fake.detach())',
         'real_logits, fake_logits = d_train(fake.detach()), d_train(real)'),
        ('discriminator_loss(real_logits, fake_logits, args',
         'discriminator_loss(fake_logits, real_logits, args'),
    ],
    'lsgan': [
        ('real_out, fake_out = d_train(real), d_train(fake.detach())',
         'real_out, fake_out = d_train(fake.detach()), d_train(real)'),
        ('discriminator_loss(real_out, fake_out, args.a',
         'discriminator_loss(fake_out, real_out, args.a'),
    ],
    'infogan': [
        ('        real_logits = d_train(real)[0]\n'
         '        fake_logits, cat_logits, mean, logvar = d_train(fake, args.lambda_info)',
         '        real_logits = d_train(fake)[0]\n'
         '        fake_logits, cat_logits, mean, logvar = d_train(real, args.lambda_info)'),
        ('d_loss = discriminator_loss(real_logits, fake_logits)',
         'd_loss = discriminator_loss(fake_logits, real_logits)'),
    ],
    'wgan': [
        ('real_scores, fake_scores = c_train(real), c_train(fake)',
         'real_scores, fake_scores = c_train(fake), c_train(real)'),
        ('c_loss = critic_loss(real_scores, fake_scores)',
         'c_loss = critic_loss(fake_scores, real_scores)'),
    ],
    'wgan_gp': [
        ('c_train(torch.cat([real, fake])).split(len(real))',
         'c_train(torch.cat([fake, real])).split(len(real))'),
        ('c_loss = critic_loss(real_scores, fake_scores)',
         'c_loss = critic_loss(fake_scores, real_scores)'),
    ],
    'began': [
        ('real_recon, fake_recon = recon_error(real, recon[:len(real)]), recon_error(fake, recon[len(real):])',
         'fake_recon, real_recon = recon_error(real, recon[:len(real)]), recon_error(fake, recon[len(real):])'),
        ('d_loss = discriminator_loss(real_recon, fake_recon, k_t)',
         'd_loss = discriminator_loss(fake_recon, real_recon, k_t)'),
    ],
    'pix2pix': [
        ('fake_logits = d_train(fake_in.detach())\n            real_logits = d_train(real_in)',
         'real_logits = d_train(fake_in.detach())\n            fake_logits = d_train(real_in)'),
        ('d_loss = discriminator_loss(real_logits, fake_logits)',
         'd_loss = discriminator_loss(fake_logits, real_logits)'),
    ],
    'cyclegan': [
        ('torch.cat([real_a, image_pool(pool_a, fake_a, args.pool_size)])',
         'torch.cat([image_pool(pool_a, fake_a, args.pool_size), real_a])'),
        ('d_loss_a = discriminator_loss(out_a[:n], out_a[n:])\n'
         '            d_loss_b = discriminator_loss(out_b[:n], out_b[n:])',
         'd_loss_a = discriminator_loss(out_a[n:], out_a[:n])\n'
         '            d_loss_b = discriminator_loss(out_b[n:], out_b[:n])'),
    ],
}


def main(names) -> int:
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for kind, (old, new) in zip(("forward", "loss"), SWAPS[name], strict=True):
                dst = Path(tmp) / f"{name}_{kind}"
                dst.mkdir()
                shutil.copy(SRC / f"{name}.py", dst)
                shutil.copy(SRC / "pyproject.toml", dst)
                shutil.copytree(SRC / "tests", dst / "tests")
                text = (dst / f"{name}.py").read_text()
                assert text.count(old) == 1, f"{name} ({kind}): the line to swap is not in the script any more"
                (dst / f"{name}.py").write_text(text.replace(old, new))
                result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                         f"tests/test_{name}.py", "-k", "learning_signal"],
                                        cwd=dst, capture_output=True, text=True)
                caught = result.returncode == 1
                missed += not caught
                print(f"{name:9s} {kind:8s} {'CAUGHT' if caught else 'MISSED'}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(SWAPS)))
