"""The core is pure PyTorch: importing all of srgan/ pulls in no Ray, MLflow or boto3."""

import subprocess
import sys


def test_srgan_imports_without_orchestration_packages():
    code = (
        "import sys, srgan.generator, srgan.discriminator, srgan.losses, srgan.degrade, srgan.resize, "
        "srgan.metrics, srgan.tiling, srgan.train_step, srgan.weights\n"
        "bad = sorted(m for m in ('ray', 'mlflow', 'boto3', 'botocore', 'pyarrow') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
