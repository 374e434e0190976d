"""Parity of scadm with the SCA-DM authors' code: same weights, same inputs, same numbers.

Not a test: it needs the authors' repository (github.com/ErgastiAlex/SCA-DM), given as
``--released-src DIR``, with taming-transformers importable (``DIR/src/taming-transformers``
as their environment installs it, or ``--taming-src``) and their Python dependencies einops and
omegaconf (e.g. ``pip install --target /tmp/relpkgs einops omegaconf`` and ``PYTHONPATH=/tmp/relpkgs``).
PyTorch Lightning and torchvision are not needed: the few names the modules import from them are
stubbed, and nothing of theirs runs.

What it does:
1. builds the released ``LatentDiffusion`` (UNet, style encoder, VQ first stage, LitEma) from
   their training config with random weights (every zero-initialised layer and every norm
   randomised, the EMA copy different from the raw weights), at the released size
   (``--size paper``) or the reduced width of the test fixture (``--size tiny``);
2. computes with their code, as their scripts do: the style tokens of a real image and of the
   zero image, eps for the condition and for their null ({zero tokens, zero mask}) under
   ``ema_scope``, a 5-step DDIM run with their DDIMSampler at w = 2.2 (s = 1.2), the decoded
   image and the encoded latent;
3. saves the Lightning checkpoint in their layout (``state_dict`` plus an OmegaConf
   ``hyper_parameters`` entry that ``weights_only=True`` refuses, as real ones do);
4. converts it with ``scadm convert sca-dm`` (a subprocess: its peak memory is reported) and
   computes the same quantities with scadm;
5. prints max abs and relative L2 differences against the targets (tokens and eps <= 1e-5,
   DDIM latents <= 1e-4 relative). ``--write-fixture DIR`` keeps checkpoint, config, inputs and
   the released outputs as the committed test fixture (tests/fixtures/released-tiny);
6. with ``--timing N``: the same weights and inputs timed side by side, one image (batch 1 -> 2
   for guidance), N interleaved repeats of each stage (released, scadm, released, ...):
   the style tokens, one guided denoiser evaluation as their DDIMSampler makes it (and as
   scadm's sampler makes it, with the conditioning prepared once per run), and the first-stage
   decode; medians, the median of the paired ratios, and what they give for a whole edit.

    PYTHONPATH=/tmp/relpkgs .venv/bin/python scripts/released_parity.py --released-src /tmp/SCA-DM --size paper
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"tokens": 1e-5, "eps": 1e-5, "ddim": 1e-4}
W = 2.2  # the released guidance weight of the DDIM run (s = w - 1 = 1.2, the paper's scale)
STEPS = 5

# the reduced width of the fixture: every module type of the released model, a few MB of weights
TINY = {
    "image": 32,
    "unet": dict(model_channels=32, channel_mult=[1, 1], num_res_blocks=1, attention_resolutions=[2]),
    "style": dict(num_downsample=3, num_upsample=2, num_feat=1, output_dim=640),  # 2 x 640 = the asserted 1280
    "vq": dict(ch=32, ch_mult=[1, 1, 1], num_res_blocks=1, n_embed=64),
}


# ---------------------------------------------------------------------------
# The released code, importable without Lightning, torchvision or CUDA
# ---------------------------------------------------------------------------
def import_released(src: Path, taming: Path | None):
    """Their modules, with stubs for the Lightning/torchvision names they import and CPU-only patches."""
    taming = taming or src / "src" / "taming-transformers"
    sys.path[:0] = [str(src), str(taming)]

    pl = types.ModuleType("pytorch_lightning")

    class LightningModule(torch.nn.Module):
        @property
        def device(self) -> torch.device:
            return torch.device("cpu")

    pl.LightningModule = LightningModule
    utilities = types.ModuleType("pytorch_lightning.utilities")
    distributed = types.ModuleType("pytorch_lightning.utilities.distributed")
    distributed.rank_zero_only = lambda f: f
    pl.utilities = utilities
    utilities.distributed = distributed
    tv = types.ModuleType("torchvision")
    tv_utils = types.ModuleType("torchvision.utils")
    tv_utils.make_grid = lambda *a, **k: None
    tv.utils = tv_utils
    sys.modules.update({"pytorch_lightning": pl, "pytorch_lightning.utilities": utilities,
                        "pytorch_lightning.utilities.distributed": distributed,
                        "torchvision": tv, "torchvision.utils": tv_utils})

    from omegaconf import OmegaConf
    import ldm.models.diffusion.ddpm  # noqa: F401  (imports everything the config names, under the stubs)
    from ldm.models.diffusion.ddim import DDIMSampler
    from ldm.util import instantiate_from_config

    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.distributed",
                 "torchvision", "torchvision.utils"):
        del sys.modules[name]  # the stubs served their imports; diffusers must not mistake them for the packages

    # their DDIMSampler moves its tables to CUDA: keep them where the model is
    DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)
    return OmegaConf, instantiate_from_config, DDIMSampler


@contextlib.contextmanager
def cuda_is_cpu():
    """DDPM.__init__ calls .cuda() on its logvar table: make that a no-op while building."""
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


def released_config(OmegaConf, src: Path, size: str):
    cfg = OmegaConf.load(src / "configs" / "latent-diffusion" / "diffusion-sem-with_uc-mask-attn.yaml")
    p = cfg.model.params
    p.first_stage_config.params.pop("ckpt_path", None)  # no pretrained file: random weights
    if size == "tiny":
        p.image_size = TINY["image"] // 4
        p.unet_config.params.update(image_size=TINY["image"] // 4, **TINY["unet"])
        p.cond_stage_config.params.update(TINY["style"])
        dd = p.first_stage_config.params.ddconfig
        dd.update(ch=TINY["vq"]["ch"], ch_mult=TINY["vq"]["ch_mult"], num_res_blocks=TINY["vq"]["num_res_blocks"],
                  resolution=TINY["image"])
        p.first_stage_config.params.n_embed = TINY["vq"]["n_embed"]
    return cfg


def scadm_config(size: str) -> dict | str:
    """The scadm recipe of the same network (paper-256 for the released size)."""
    if size == "paper":
        return "paper-256"
    t = TINY
    return {
        "model": {
            "name": "released-tiny", "image_size": [t["image"], t["image"]], "latent_scale": 1.0,
            "conditioning": {"type": "style", "style_encoder": {
                "channels_per_class": t["style"]["num_feat"], "num_down": t["style"]["num_downsample"],
                "num_levels": t["style"]["num_upsample"], "style_dim": t["style"]["output_dim"], "skip_join": "block"}},
            "unet": {**t["unet"], "context_dim": 1280, "attention_resolutions": t["unet"]["attention_resolutions"]},
        },
        "autoencoder": {"type": "vq", "block_out_channels": [t["vq"]["ch"] * m for m in t["vq"]["ch_mult"]],
                        "layers_per_block": t["vq"]["num_res_blocks"], "num_vq_embeddings": t["vq"]["n_embed"],
                        "vq_embed_dim": 3, "latent_channels": 3, "sample_size": t["image"]},
    }


def randomise(model, seed: int, size: str) -> None:
    """Random weights everywhere (zero-initialised layers and norms too); EMA != raw."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and module.weight is not None:
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, torch.nn.Embedding):  # the VQ codebook: codes as spread as the latents
                module.weight.copy_(torch.randn(module.weight.shape, generator=g))
            elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
        if size == "tiny":  # the fixture stores half precision: use exactly the values it can hold
            for p in model.parameters():
                p.copy_(p.half().float())
        # EMA: a perturbed copy. The tiny fixture shares storage for all but a few tensors (its file stays small)
        ema = model.model_ema
        for pname, p in model.model.named_parameters():
            sname = ema.m_name2s_name[pname]
            distinct = size == "paper" or pname.endswith(("out.2.weight", "out.2.bias")) or "time_embed" in pname \
                or "middle_block.1" in pname
            if distinct:
                value = p + 0.05 * p.std().clamp_min(1e-3) * torch.randn(p.shape, generator=g)
                ema._buffers[sname] = value.half().float() if size == "tiny" else value
            else:
                ema._buffers[sname] = p.data


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def make_inputs(size: int, seed: int) -> dict[str, torch.Tensor]:
    from scadm.data.synthetic import render_face

    faces = [render_face(i, seed=seed, size=size) for i in (3, 11)]
    image = torch.stack([torch.from_numpy(f.image).permute(2, 0, 1).float() / 127.5 - 1 for f in faces])
    labels = torch.stack([torch.from_numpy(f.label.astype(np.int64)) for f in faces])
    mask = F.one_hot(labels, 19).permute(0, 3, 1, 2).float()
    g = torch.Generator().manual_seed(seed + 1)
    h = size // 4
    return {"image": image, "labels": labels, "mask": mask, "z_t": torch.randn(2, 3, h, h, generator=g) * 1.5,
            "t": torch.tensor([17, 731]), "x_T": torch.randn(2, 3, h, h, generator=g)}


# ---------------------------------------------------------------------------
# Both sides
# ---------------------------------------------------------------------------
@torch.no_grad()
def released_outputs(model, DDIMSampler, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What their scripts compute (generate_fid_samples.py / gradio_img2img.py), on the inputs `x`."""
    b, _, h, w = x["mask"].shape
    tokens = model.get_learned_conditioning(x["image"], x["mask"])
    cond = {"context": tokens, "y": x["mask"]}
    uc = {"context": torch.zeros(b, 19, 1280), "y": torch.zeros(b, 19, h, w)}  # their null, verbatim in meaning
    out = {"tokens": tokens, "tokens_zero_image": model.get_learned_conditioning(torch.zeros_like(x["image"]), x["mask"]),
           "eps_cond_raw": model.apply_model(x["z_t"], x["t"], cond)}
    with model.ema_scope():
        out["eps_cond"] = model.apply_model(x["z_t"], x["t"], cond)
        out["eps_null"] = model.apply_model(x["z_t"], x["t"], uc)
        sampler = DDIMSampler(model)
        out["ddim"], _ = sampler.sample(S=STEPS, conditioning=cond, batch_size=b, shape=[3, h // 4, w // 4],
                                        verbose=False, unconditional_guidance_scale=W, unconditional_conditioning=uc,
                                        eta=0.0, x_T=x["x_T"].clone())
    out["decoded"] = model.decode_first_stage(out["ddim"])
    out["encoded"] = model.get_first_stage_encoding(model.encode_first_stage(x["image"]))
    return {k: v.detach().float().contiguous() for k, v in out.items()}


@torch.no_grad()
def scadm_outputs(folder: Path, x: dict[str, torch.Tensor], raw_folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The same quantities from a converted scadm model folder (tests/test_convert.py does the same)."""
    from scadm.diffusion import ClassifierFreeGuidance, NoiseSchedule, sample
    from scadm.diffusion.guidance import released_w_to_s
    from scadm.models.ldm import SemanticLDM
    from scadm.pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(folder, device="cpu")
    model, fs = pipe.model, pipe.first_stage
    cond = model.conditions(x["mask"], x["image"])
    null = model.conditioner.null(x["mask"], "zero")
    out = {"tokens": cond.tokens, "tokens_zero_image": model.conditions(x["mask"], torch.zeros_like(x["image"])).tokens,
           "eps_cond": model(x["z_t"], x["t"], cond), "eps_null": model(x["z_t"], x["t"], null)}
    if raw_folder is not None:
        out["eps_cond_raw"] = SemanticLDM.from_pretrained(raw_folder)(x["z_t"], x["t"], cond)
    latent = tuple(x["x_T"].shape[-2:])
    guided = ClassifierFreeGuidance(model.unet, model.prepare(null, latent), released_w_to_s(W))
    out["ddim"] = sample(guided, tuple(x["x_T"].shape), model.prepare(cond, latent), NoiseSchedule(model.cfg.schedule),
                         sampler="ddim", steps=STEPS, eta=0.0, x_T=x["x_T"])
    out["decoded"] = fs.decode(out["ddim"])
    out["encoded"] = fs.encode(x["image"])
    return out


#: `scadm ARGS` in a fresh interpreter that reports its own peak resident memory (VmHWM, kB) on stderr:
#: measured in the child, so the parent's pages (shared at fork) never count
CONVERT_AND_REPORT_PEAK = """
import re, sys
from scadm.cli import main
try:
    main(sys.argv[1:])
finally:
    print(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1), file=sys.stderr)
"""


@torch.no_grad()
def timing(model, folder: Path, x: dict[str, torch.Tensor], repeats: int) -> dict:
    """Interleaved medians of the stages of one edit, released code against scadm (same weights)."""
    import statistics

    from scadm.conditions import cat_conditions
    from scadm.diffusion import ClassifierFreeGuidance
    from scadm.diffusion.guidance import released_w_to_s
    from scadm.pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(folder, device="cpu")
    ours, fs = pipe.model, pipe.first_stage
    image, mask, z, t = x["image"][:1], x["mask"][:1], x["z_t"][:1], x["t"][1:]
    b, _, h, w = mask.shape
    tokens = model.get_learned_conditioning(image, mask)
    c_in = {"context": torch.cat([torch.zeros_like(tokens), tokens]), "y": torch.cat([torch.zeros_like(mask), mask])}

    def released_step():  # DDIMSampler.p_sample_ddim's guided branch
        e_u, e_c = model.apply_model(torch.cat([z] * 2), torch.cat([t] * 2), c_in).chunk(2)
        return e_u + W * (e_c - e_u)

    cond, latent = ours.conditions(mask, image), tuple(z.shape[-2:])
    prepare_times = []
    for _ in range(repeats):  # the conditioning and the null, prepared once per image
        t0 = time.perf_counter()
        guided = ClassifierFreeGuidance(ours.unet, ours.prepare(ours.conditioner.null(mask, "zero"), latent),
                                        released_w_to_s(W))
        prepared = ours.prepare(cond, latent)
        prepare_times.append(time.perf_counter() - t0)
    prepare_s = statistics.median(prepare_times)
    # a distilled student's faithful edit (virtual inversion): the source and edit rows in one batch of 2, one
    # pass a step (guidance folded in), prepared once (one mask: SPADE once); the released code has no such step
    both = cat_conditions(cond, ours.conditions(mask, image.flip(-1)))
    virtual_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prepared_both = ours.prepare(both, latent)
        virtual_times.append(time.perf_counter() - t0)
    out_virtual_prepare = statistics.median(virtual_times)
    zz, tt = torch.cat([z, z]), torch.cat([t, t])
    stages = {
        "style tokens": (lambda: model.get_learned_conditioning(image, mask), lambda: ours.conditions(mask, image)),
        "guided step": (released_step, lambda: guided(z, t, prepared)),
        "student step": (released_step, lambda: ours.unet(zz, tt, prepared_both)),
        "encode": (lambda: model.encode_first_stage(image), lambda: fs.encode(image)),
        "decode": (lambda: model.decode_first_stage(z), lambda: fs.decode(z)),
    }
    out: dict = {"threads": torch.get_num_threads(), "repeats": repeats, "scadm_prepare_s": prepare_s}
    with model.ema_scope():
        diff = (released_step() - guided(z, t, prepared)).norm() / released_step().norm()
        out["guided_step_relative_l2"] = float(diff)
        for name, (theirs, mine) in stages.items():
            pairs = []
            for _ in range(repeats):
                t0 = time.perf_counter(); theirs(); t1 = time.perf_counter(); mine(); t2 = time.perf_counter()
                pairs.append((t1 - t0, t2 - t1))
            out[name] = {"released_s": statistics.median(p[0] for p in pairs),
                         "scadm_s": statistics.median(p[1] for p in pairs),
                         "ratio": statistics.median(p[0] / p[1] for p in pairs),
                         "released_min_s": min(p[0] for p in pairs), "scadm_min_s": min(p[1] for p in pairs)}
            r = out[name]
            print(f"{name:<13} released {r['released_s']:7.3f} s  scadm {r['scadm_s']:7.3f} s  ratio {r['ratio']:5.2f}"
                  f"  (minima {r['released_min_s']:.3f} / {r['scadm_min_s']:.3f} s)", flush=True)
    print(f"scadm prepare (once per image; median of {repeats}): {prepare_s:.3f} s; "
          f"guided step outputs differ by {out['guided_step_relative_l2']:.1e} relative L2")
    out["scadm_virtual_prepare_s"] = out_virtual_prepare
    rel = lambda k: out[k]["released_s"]  # noqa: E731
    mine = lambda k: out[k]["scadm_s"]  # noqa: E731
    released_edit = 2 * rel("style tokens") + 200 * rel("guided step") + rel("decode")
    fixed = 2 * mine("style tokens") + mine("encode") + out_virtual_prepare + mine("decode")
    print(f"released guided DDIM-200 edit: 2 x tokens + 200 x guided step + decode = {released_edit:.1f} s")
    print(f"student's faithful edit (virtual inversion): 2 x tokens + encode + prepare of its 2 rows "
          f"({out_virtual_prepare:.3f} s) + decode = {fixed:.1f} s fixed, + K x {mine('student step'):.2f} s")
    out["student_edit"] = {}
    for k in (1, 2, 4, 8):
        sec = fixed + k * mine("student step")
        out["student_edit"][k] = {"seconds": sec, "speed_up": released_edit / sec}
        print(f"  K = {k}: {sec:6.1f} s, {released_edit / sec:5.1f}x faster than the released edit")
    out["released_edit_s"] = released_edit
    return out


def differences(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> list[dict]:
    rows = []
    for name in theirs:
        if name not in ours:
            continue
        a, b = ours[name].double(), theirs[name].double()
        rows.append({"quantity": name, "max_abs_diff": float((a - b).abs().max()), "max_abs_value": float(b.abs().max()),
                     "relative_l2": float((a - b).norm() / b.norm().clamp_min(1e-30))})
    return rows


def target_of(name: str) -> float | None:
    return next((v for k, v in TARGETS.items() if name.startswith(k)), None)


# ---------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--released-src", type=Path, required=True, help="a checkout of ErgastiAlex/SCA-DM")
    ap.add_argument("--taming-src", type=Path, default=None, help="taming-transformers (default: SRC/src/taming-transformers)")
    ap.add_argument("--size", choices=("paper", "tiny"), default="paper")
    ap.add_argument("--work", type=Path, default=Path("/tmp/scadm-released-parity"), help="scratch folder (checkpoint, conversions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-fixture", type=Path, default=None, help="keep checkpoint, config and outputs here (tiny size)")
    ap.add_argument("--report", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--timing", type=int, default=0, metavar="N", help="also time the stages of an edit side by side, N repeats")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.write_fixture and args.size != "tiny":
        ap.error("--write-fixture needs --size tiny")

    OmegaConf, instantiate_from_config, DDIMSampler = import_released(args.released_src.resolve(), args.taming_src)
    torch.manual_seed(args.seed)
    with cuda_is_cpu():
        model = instantiate_from_config(released_config(OmegaConf, args.released_src, args.size).model).eval()
    randomise(model, args.seed, args.size)
    image_size = TINY["image"] if args.size == "tiny" else 256
    x = make_inputs(image_size, args.seed)
    t0 = time.time()
    theirs = released_outputs(model, DDIMSampler, x)
    print(f"released code: {time.time() - t0:.0f} s")

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sd = model.state_dict()
    if args.size == "tiny":  # half precision on disk; storages shared between raw and EMA stay shared
        halves: dict[int, torch.Tensor] = {}
        sd = {k: (halves.setdefault(v.data_ptr(), v.half()) if v.is_floating_point() and "." in k else v)
              for k, v in sd.items()}
    ckpt = {"epoch": 235, "global_step": 0, "pytorch-lightning_version": "1.4.2", "state_dict": sd,
            "hyper_parameters": released_config(OmegaConf, args.released_src, args.size),  # refused by weights_only
            "optimizer_states": [], "lr_schedulers": []}
    ckpt_path = work / "released.ckpt"
    torch.save(ckpt, ckpt_path)
    del ckpt, sd
    config = scadm_config(args.size)
    if isinstance(config, dict):
        import yaml

        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        config = str(work / "config.yaml")

    peak = {}
    for weights in ("ema", "raw"):
        t0 = time.time()
        run = subprocess.run([sys.executable, "-c", CONVERT_AND_REPORT_PEAK, "convert", "sca-dm", str(ckpt_path),
                              str(work / f"model-{weights}"), "--weights", weights, "--config", config],
                             check=True, capture_output=True, text=True)
        print(run.stdout, end="")
        peak[weights] = (int(run.stderr.strip().splitlines()[-1]), time.time() - t0)
    ours = scadm_outputs(work / "model-ema", x, raw_folder=work / "model-raw")

    rows = differences(ours, theirs)
    size_gb = ckpt_path.stat().st_size / 1e9
    print(f"\nchecked against the released code ({args.size} size, checkpoint {size_gb:.2f} GB; scadm convert: "
          f"{peak['ema'][1]:.0f} s, peak resident memory {peak['ema'][0] / 1e6:.2f} GB, memory-mapped file pages included)\n")
    print(f"{'quantity':<20} {'max abs diff':>13} {'max |value|':>12} {'relative L2':>12}  target")
    ok = True
    for r in rows:
        target = target_of(r["quantity"])
        passed = target is None or r["relative_l2"] <= target
        ok &= passed
        print(f"{r['quantity']:<20} {r['max_abs_diff']:>13.3g} {r['max_abs_value']:>12.3g} {r['relative_l2']:>12.3g}  "
              f"{'<= %g %s' % (target, 'ok' if passed else 'FAILED') if target else '(reported)'}")
    times = None
    if args.timing:
        print(f"\nside by side, {args.timing} interleaved repeats, {torch.get_num_threads()} threads, one image:")
        times = timing(model, work / "model-ema", x, args.timing)
    if args.report:
        args.report.write_text(json.dumps({"size": args.size, "checkpoint_gb": size_gb, "convert_peak_rss_kb": peak["ema"][0],
                                           "rows": rows, "timing": times}, indent=2) + "\n")
    if args.write_fixture:
        from safetensors.torch import save_file

        out = args.write_fixture
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(ckpt_path, out / "released.ckpt")
        shutil.copy(work / "config.yaml", out / "config.yaml")
        save_file({**{f"input.{k}": v.contiguous() for k, v in x.items() if k != "mask"},  # the mask is one_hot(labels)
                   **{f"released.{k}": v for k, v in theirs.items()}}, str(out / "io.safetensors"),
                  metadata={"w": str(W), "steps": str(STEPS)})
        for f in out.iterdir():
            f.chmod(0o644)
        print(f"\nfixture written to {out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
