"""The bundled model ships with the package: a built wheel carries every file a model folder needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_bundled_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel, = tmp_path.glob("scadm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = ROOT / "src" / "scadm" / "bundled" / "synthetic-64"
    needed = ["model_index.json", "scheduler/scheduler_config.json"] + [
        f"{part}/{name}" for part in ("unet", "condition_encoder", "vae", "face_parser")
        for name in ("config.json", "diffusion_pytorch_model.safetensors")]
    for rel in needed:
        assert f"scadm/bundled/synthetic-64/{rel}" in names, rel
        info = zipfile.ZipFile(wheel).getinfo(f"scadm/bundled/synthetic-64/{rel}")
        assert info.file_size == (bundled / rel).stat().st_size, rel
    assert "scadm/configs/synthetic-64.yaml" in names


def test_the_default_model_is_found_inside_the_package():
    from scadm.pipeline import DEFAULT_MODEL

    import scadm

    assert DEFAULT_MODEL.parent.parent == Path(scadm.__file__).resolve().parent
    assert (DEFAULT_MODEL / "model_index.json").is_file()
