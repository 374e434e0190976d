"""Time and peak memory of editing a large photo (4000 x 3000 by default): load, parse, frame and
crop, generate at the model's size, paste back at full resolution, save.

    python benchmarks/photo_large.py                      # the bundled model, 50 steps
    python benchmarks/photo_large.py --steps 10 --size 6000x4000

The photo is scikit-image's astronaut.png (the test extra) upscaled so that its face is about
1000 px tall, placed in a 4000 x 3000 frame and saved as a quality-95 JPEG; its mask is the
one drawn in tests/test_photos.py, scaled the same way. Parsing is timed with a random-weight
BiSeNet in the released layout (its cost does not depend on its weights; its mask is not used).
Peak memory is the process's peak resident set size above what it held after loading the
model. Figures go to docs/photos.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _test_module():
    spec = importlib.util.spec_from_file_location("test_photos", ROOT / "tests" / "test_photos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_photo(folder: Path, width: int, height: int) -> tuple[Path, Path]:
    """A width x height JPEG with the astronaut's face about height/3 tall, and its id mask (PNG)."""
    t = _test_module()
    src = Image.open(t._astronaut_path()).convert("RGB")
    side = height
    big = np.asarray(src.resize((side, side), Image.Resampling.LANCZOS))
    mask = np.asarray(Image.fromarray(t.draw_astronaut_mask()).resize((side, side), Image.Resampling.NEAREST))
    left = (width - side) // 2
    pad = ((0, 0), (left, width - side - left))
    photo = np.pad(big, pad + ((0, 0),), mode="edge")
    Image.fromarray(photo).save(folder / "large.jpg", quality=95)
    Image.fromarray(np.pad(mask, pad)).save(folder / "large_mask.png")
    return folder / "large.jpg", folder / "large_mask.png"


def _paste(result):
    result._pasted = None  # computed afresh on each run
    return result.photos[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the photo")
    ap.add_argument("--steps", type=int, default=50, help="sampling steps of the generation")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady figures on a shared machine)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage; the best time is reported")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)

    from scadm.models.face_parser import BiSeNet
    from scadm.photos import load_face_parser, load_photo, prepare_photo, save_photo
    from scadm.pipeline import SCADMPipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        import multiprocessing

        maker = multiprocessing.get_context("fork").Process(target=make_photo, args=(folder, width, height))
        maker.start()  # in a child process, so that making the photo does not count in this one's peak
        maker.join()
        photo_path, mask_path = folder / "large.jpg", folder / "large_mask.png"
        torch.manual_seed(0)
        torch.save(BiSeNet(19).state_dict(), folder / "random_bisenet.pth")
        pipe = SCADMPipeline.from_pretrained(device="cpu")
        parser = load_face_parser(folder / "random_bisenet.pth", pipe.label_set)
        base = rss_mib()
        rows = []

        def timed(name, fn):
            """The stage's best time of --repeat runs (other work on the machine only ever adds time)."""
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = fn()
                best = min(best, time.perf_counter() - t0)
            rows.append((name, best, peak_mib() - base))
            return out

        import warnings

        warnings.simplefilter("ignore")
        timed("decode the JPEG (EXIF, RGB)", lambda: load_photo(photo_path))
        photo = timed("read the mask, frame, crop", lambda: prepare_photo(photo_path, mask_path, size=pipe.image_size))
        try:
            timed("parse (BiSeNet 512 px, coarse + fine)",
                  lambda: prepare_photo(photo_path, None, size=pipe.image_size, parser=parser))
        except ValueError as exc:  # random weights may find no face; the passes were still timed
            rows.append((f"parse (no face: {exc})", float("nan"), peak_mib() - base))
        result = timed(f"generate from noise ({args.steps} steps, {pipe.image_size[0]} px)",
                       lambda: pipe.swap(photo, photo, ["hair"], steps=args.steps, inversion="none"))
        pasted = timed("paste back at full resolution", lambda: _paste(result))
        timed("save the JPEG", lambda: save_photo(np.asarray(pasted), folder / "out.jpg", photo.icc_profile))
        peak = peak_mib()

    print(f"photo {width}x{height}, face square {photo.box.side} px, model {pipe.image_size[0]} px, "
          f"{args.threads} threads, best of {args.repeat}, torch {torch.__version__}")
    print("| stage | seconds | peak memory so far (MiB above the loaded model) |\n| --- | --- | --- |")
    for name, sec, mib in rows:
        print(f"| {name} | {sec:.2f} | {mib:.0f} |")
    total = sum(s for _, s, _ in rows if s == s)
    print(f"| total | {total:.2f} | {peak - base:.0f} |")
    print(f"peak memory above the loaded model: {peak - base:.0f} MiB (process peak {peak:.0f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
