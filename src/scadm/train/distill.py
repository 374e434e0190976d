"""Distillation (``scadm distill``): a student of a trained model folder that samples and edits in a
few network evaluations. The maths is :mod:`scadm.diffusion.distillation`; this is the loop.

The student is the teacher's UNet with a guidance embedding (``unet.guidance_embedding``), started
from the teacher's weights; the condition encoder is the teacher's, frozen, so a face's style
tokens are the same for both. One run holds both stages, one step counter:

    steps [0, guidance_steps)                       stage A, guidance distillation
    steps [guidance_steps, guidance_steps + consistency_steps)   stage B, consistency distillation

Stage B's teacher is stage A's EMA student, frozen when stage B starts (one pass per guided
output instead of two); its target network is an EMA of the online student (LCM's). The
conditions a student sees are the ones edits make: the face's own style, parts swapped in from
another face of the batch, parts left to noise (the empty style), and the null conditions of
noise-based generation, each at a guidance scale drawn from [0, guidance_max].

Resumable and multi-process like ``scadm train`` (the same determinism: every draw of a sample
comes from its (seed, step, position) generator; see :mod:`scadm.train.batches`); checkpoints
are atomic and hold the online, EMA, target and stage-A networks. The EMA student is exported
to ``RUN/model`` as a model folder whose sampling defaults are the student's: the ``student``
sampler at K steps, virtual inversion, guidance folded in.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from ..conditions import ConditionInputs, Conditions, cat_conditions
from ..config import from_dict, to_dict
from ..diffusion import NoiseSchedule
from ..diffusion.distillation import StudentGrid, ddim_jump, guided, pseudo_huber
from ..diffusion.objective import condition_dropout
from ..models.ldm import SemanticLDM
from .batches import GlobalBatchSampler, make_accelerator, sample_generator
from .checkpoints import Checkpoints, rng_state, set_rng_state
from .diffusion import _cache_latents, _mean_across
from .ema import EMA
from .log import TrainLog, check_finite, progress_bar


@dataclasses.dataclass
class DistillConfig:
    """``scadm distill``'s settings (saved in RUN/config.yaml and in the student's ``distilled``)."""

    #: stage A steps (guidance distillation); 0 skips it (the teacher then guides stage B with two passes)
    guidance_steps: int = 1000
    #: stage B steps (consistency distillation); 0 stops after stage A (a one-pass guided student)
    consistency_steps: int = 3000
    #: K, the student's segments (its step count); 1 is plain LCM
    segments: int = 4
    #: N, the teacher grid's levels (a multiple of K): one teacher DDIM step is T / N timesteps
    teacher_levels: int = 40
    batch_size: int = 32
    lr_guidance: float = 1e-4
    lr_consistency: float = 5e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: the guidance scales a student learns: s ~ U[0, guidance_max] (the model's default lies inside)
    guidance_max: float = 3.0
    #: LCM's target network: an EMA of the online student with this decay
    target_decay: float = 0.95
    #: the exported student: an EMA with this decay (warm-up as in training)
    ema_decay: float = 0.999
    #: pseudo-Huber c of stage B's loss (0: L2)
    huber_c: float = 0.001
    #: of each batch: the share whose style is dropped (noise-based generation's conditions), whose
    #: whole condition is dropped, whose parts are partly swapped in from another face, partly left to noise
    null_style: float = 0.15
    null_all: float = 0.05
    swap_parts: float = 0.3
    noise_parts: float = 0.1
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 250
    keep_last: int = 2
    sample_every: int = 500
    mixed_precision: str = "auto"

    @property
    def max_steps(self) -> int:
        return self.guidance_steps + self.consistency_steps

    def check(self) -> "DistillConfig":
        if self.guidance_steps < 0 or self.consistency_steps < 0 or self.max_steps == 0:
            raise ValueError("guidance_steps and consistency_steps must be >= 0, and one of them > 0")
        StudentGrid(NoiseSchedule(), self.teacher_levels, self.segments)  # raises when N is not a multiple of K
        for name in ("null_style", "null_all", "swap_parts", "noise_parts"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.null_style + self.null_all + self.swap_parts + self.noise_parts > 1:
            raise ValueError("null_style + null_all + swap_parts + noise_parts must not exceed 1")
        return self


def student_config(teacher_cfg: Any, dc: DistillConfig, teacher: str) -> Any:
    """The student's ModelConfig: the teacher's, with the guidance embedding, its own sampling defaults
    (the ``student`` sampler at K steps, virtual inversion) and what it was distilled from."""
    unet = dataclasses.replace(teacher_cfg.unet, guidance_embedding=True)
    sampling = teacher_cfg.sampling  # a guidance-only student samples as its teacher, one pass a step
    if dc.consistency_steps:
        sampling = dataclasses.replace(sampling, sampler="student", steps=dc.segments, eta=0.0, inversion="virtual",
                                       blend=True, clip_x0=None)
    stage = "guidance + consistency" if dc.guidance_steps and dc.consistency_steps else (
        "guidance" if dc.guidance_steps else "consistency")
    distilled = {"teacher": teacher, "stages": stage, "segments": dc.segments,
                 "teacher_levels": dc.teacher_levels, "steps": dc.max_steps,
                 "guidance_max": dc.guidance_max}
    name = teacher_cfg.name if teacher_cfg.name.endswith("-student") else f"{teacher_cfg.name}-student"
    return dataclasses.replace(teacher_cfg, name=name, unet=unet, sampling=sampling, distilled=distilled)


class _Student(nn.Module):
    """What DDP wraps: the online UNet, guidance scale in."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, z_t: Tensor, t: Tensor, cond: Any, s: Tensor) -> Tensor:
        return self.unet(z_t, t, cond, guidance=s)


def distill(
    model: str | Path | None,
    data: str | Path,
    out: str | Path,
    config: DistillConfig | None = None,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    dry_run: bool = False,
    progress: bool = True,
    printer=print,
) -> dict[str, Any]:
    """Distil the model folder `model` (None: the bundled one) on dataset `data` into run folder `out`.

    `max_steps` stops this invocation at that global step (the run continues with ``resume``);
    the student is exported to ``out/model`` when the last step of both stages is done."""
    from ..data import FaceDataset
    from ..pipeline import SCADMPipeline

    dc = (config or DistillConfig()).check()
    out = Path(out)
    pipe = SCADMPipeline.from_pretrained(model, device="cpu")
    teacher_name = str(model) if model is not None else f"bundled {pipe.cfg.name}"
    if pipe.model.unet.guidance_embed is not None:
        raise ValueError(f"{teacher_name} is already a distilled student; distil its teacher instead")
    tcfg = pipe.cfg
    scfg = student_config(tcfg, dc, teacher_name)
    acc = make_accelerator(dc.mixed_precision)
    main, world, rank = acc.is_main_process, acc.num_processes, acc.process_index
    stop = dc.max_steps if max_steps is None else min(int(max_steps), dc.max_steps)
    resolved = {"teacher": teacher_name, "data": str(data), "distill": dataclasses.asdict(dc),
                "student": to_dict(scfg), "resolved": {"processes": world, "global_batch": dc.batch_size * world,
                                                       "mixed_precision": str(acc.mixed_precision)}}
    if main:
        printer(yaml.safe_dump({k: resolved[k] for k in ("teacher", "data", "distill", "resolved")},
                               sort_keys=False).rstrip())
    if dry_run:
        return {"dry_run": True, "config": resolved}

    # --- inputs -----------------------------------------------------------
    mode = pipe.mode
    dataset = FaceDataset(data, split="train", size=tuple(tcfg.image_size), flip=False,
                          with_attributes=mode.takes_attributes)
    if dataset.label_set.num_classes != tcfg.unet.num_classes:
        raise ValueError(f"{data} has {dataset.label_set.num_classes} classes; the model expects {tcfg.unet.num_classes}")
    if mode.takes_attributes and not dataset.has_attributes:
        raise ValueError(f"the model's conditioning {mode.name!r} needs attributes, but {data} has no attributes.csv")
    device = acc.device
    pipe.to(device)
    first_stage, conditioner = pipe.first_stage, pipe.model.conditioner.eval().requires_grad_(False)
    teacher_unet = pipe.model.unet.eval().requires_grad_(False)
    schedule = NoiseSchedule(tcfg.schedule)
    grid = StudentGrid(schedule, dc.teacher_levels, dc.segments)
    ab_levels, t_levels = grid.alpha_bar.to(device), grid.timesteps.to(device)
    pred = schedule.prediction_type

    # --- networks ---------------------------------------------------------
    torch.manual_seed(dc.seed)
    student = type(teacher_unet).from_cfg(scfg.unet).to(device)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or [k for k in missing if not k.startswith("guidance_embed")]:
        raise AssertionError(f"student and teacher differ beyond the guidance embedding: {missing}, {unexpected}")
    ema = EMA(student, dc.ema_decay, True)
    target = stage_a = None  # stage B's target network and frozen teacher, made when stage B starts
    optimizer = torch.optim.AdamW(student.parameters(), lr=dc.lr_guidance, weight_decay=dc.weight_decay)
    ckpts = Checkpoints(out, dc.keep_last)
    start = 0
    if resume:
        latest, tensors, objects, state = ckpts.load_latest()
        student.load_state_dict(tensors["model"])
        ema.load_state_dict(tensors["ema"], state["ema_updates"])
        if "target" in tensors:
            target, stage_a = _frozen(student, tensors["target"]), _frozen(student, tensors["stage_a"])
        optimizer.load_state_dict(objects["optimizer"])
        set_rng_state(objects["rng"])
        start = int(state["step"])
        if main:
            printer(f"resumed from {latest} (step {start})")
    elif ckpts.latest() is not None:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue it or choose a new --out")
    online = acc.prepare(_Student(student))
    optimizer = acc.prepare(optimizer)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    latents = _cache_latents(first_stage, dataset, acc, flip=False)["plain"]
    id_index = {key: i for i, key in enumerate(dataset.ids)}
    sampler = GlobalBatchSampler(len(dataset), dc.batch_size, rank, world, dc.seed, start)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0)
    batches = iter(loader)
    log = TrainLog(out, main, ["loss", "stage", "lr"])
    if resume:
        log.truncate_after(start)
    null_rows = (tcfg.sampling.null_condition, tcfg.sampling.noise_null)
    bar = progress_bar(stop, start, main and progress, f"distill {tcfg.name}")
    last: dict[str, float] = {}
    online.train()
    for step in range(start, stop):
        stage_b = step >= dc.guidance_steps
        if stage_b and target is None:  # stage B starts: stage A's EMA student teaches, the online one goes on
            stage_a = _frozen(student, ema.state_dict())
            target = _frozen(student, student.state_dict())
        lr = dc.lr_consistency if stage_b else dc.lr_guidance
        for g in optimizer.param_groups:
            g["lr"] = lr
        batch = next(batches)
        positions = [rank * dc.batch_size + i for i in range(len(batch["id"]))]
        gens = [sample_generator(dc.seed, step, j) for j in positions]
        B = len(gens)
        coins = torch.stack([torch.rand(3, generator=g) for g in gens])  # condition kind, level, scale
        s = (coins[:, 2] * dc.guidance_max).to(device)
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in gens]).to(device)
        part_coins = torch.stack([torch.rand(tcfg.unet.num_classes, generator=g) for g in gens]).to(device)
        z0 = latents[torch.tensor([id_index[i] for i in batch["id"]])].to(device)
        with torch.no_grad():
            cond, null = _conditions(batch, coins[:, 0].to(device), part_coins, conditioner, pipe, dc, mode,
                                     null_rows, device, acc)
            doubled = cat_conditions(cond, null)  # the teacher's guided batch: cond, then each row's null
            if not stage_b:
                t = (coins[:, 1] * schedule.num_train_timesteps).long().clamp(max=schedule.num_train_timesteps - 1)
                t = t.to(device)
                z_t = schedule.q_sample(z0, t, noise)
                both = teacher_unet(torch.cat([z_t, z_t]), torch.cat([t, t]), doubled)
                goal = guided(*both.float().split(B), s.view(-1, 1, 1, 1))
            else:
                j = (coins[:, 1] * dc.teacher_levels).long().clamp(max=dc.teacher_levels - 1).to(device) + 1  # 1..N
                b = grid.boundary(j)
                t_j, t_prev = t_levels[j], t_levels[j - 1]
                ab_j, ab_prev, ab_b = (ab_levels[k].view(-1, 1, 1, 1) for k in (j, j - 1, b))
                z_t = schedule.q_sample(z0, t_j, noise)
                if stage_a is not None:
                    teach = stage_a(z_t, t_j, cond, guidance=s).float()
                else:  # no stage A: the teacher guides with its doubled batch
                    both = teacher_unet(torch.cat([z_t, z_t]), torch.cat([t_j, t_j]), doubled)
                    teach = guided(*both.float().split(B), s.view(-1, 1, 1, 1))
                z_prev = ddim_jump(teach, z_t, ab_j, ab_prev, pred)
                jumped = ddim_jump(target(z_prev, t_prev, cond, guidance=s).float(), z_prev, ab_prev, ab_b, pred)
                goal = torch.where((j - 1 == b).view(-1, 1, 1, 1), z_prev, jumped)
                t = t_j
        with acc.autocast():
            out_s = online(z_t, t, cond, s).float()  # the student's own SPADE and attention see the conditions
            if stage_b:
                loss = pseudo_huber(ddim_jump(out_s, z_t, ab_j, ab_b, pred), goal, dc.huber_c).mean()
            else:
                loss = F.mse_loss(out_s, goal)
        acc.backward(loss)
        done = step + 1
        last = {"loss": _mean_across(acc, loss.item()), "stage": 2.0 if stage_b else 1.0, "lr": lr}
        check_finite({"loss": last["loss"]}, done, out)
        if dc.grad_clip > 0:
            acc.clip_grad_norm_(student.parameters(), dc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(student)
        if target is not None:
            _ema_into(target, student, dc.target_decay)
        bar.update(1)
        bar.set_postfix(stage="B" if stage_b else "A", loss=f"{last['loss']:.4f}")
        if done % dc.log_every == 0 or done == stop:
            log.log(done, last)
        if main and dc.sample_every and (done % dc.sample_every == 0 or done == dc.max_steps):
            _preview(pipe, scfg, student, ema, data, out / "samples" / f"step-{done:07d}.png")
            log.plot(f"{tcfg.name}: distillation loss (stage A, then B)", ["loss"])
        if done % dc.checkpoint_every == 0 or done == stop:
            acc.wait_for_everyone()
            if main:
                tensors = {"model": student.state_dict(), "ema": ema.state_dict()}
                if target is not None:
                    tensors.update(target=target.state_dict(), stage_a=stage_a.state_dict())
                ckpts.save(done, tensors, {"optimizer": optimizer.state_dict(), "rng": rng_state()},
                           {"step": done, "ema_updates": ema.num_updates, "loss": last["loss"]})
    bar.close()
    acc.wait_for_everyone()
    finished = stop == dc.max_steps
    if main and finished:
        log.plot(f"{tcfg.name}: distillation loss (stage A, then B)", ["loss"])
        _export(pipe, scfg, student, ema, out / "model")
        k = scfg.sampling.steps
        printer(f"done: step {stop}, loss {last.get('loss', float('nan')):.4f}; student (EMA weights) in "
                f"{out / 'model'}: sampler {scfg.sampling.sampler!r}, {k} steps, {k} UNet evaluations an image "
                f"from noise, {2 * k} an edit by virtual inversion")
    elif main:
        printer(f"stopped at step {stop} of {dc.max_steps}; continue with --resume")
    log.close()
    return {"step": stop, "finished": finished, "last": last, "run": str(out)}


# ---------------------------------------------------------------------------- helpers
def _frozen(like: nn.Module, params: dict[str, Tensor]) -> nn.Module:
    """A frozen copy of `like` with these parameters (an EMA's or a checkpoint's)."""
    net = copy.deepcopy(like).eval().requires_grad_(False)
    missing, unexpected = net.load_state_dict(params, strict=False)
    if unexpected or set(missing) - {k for k, _ in net.named_buffers()}:
        raise ValueError(f"distillation checkpoint does not match the student: {missing[:2]}, {unexpected[:2]}")
    return net


@torch.no_grad()
def _ema_into(target: nn.Module, online: nn.Module, decay: float) -> None:
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.mul_(decay).add_(po.detach(), alpha=1 - decay)


def _conditions(batch: dict, kind: Tensor, part_coins: Tensor, conditioner: nn.Module, pipe: Any, dc: DistillConfig,
                mode: Any, null_rows: tuple[str, str], device: torch.device, acc: Any) -> tuple[Conditions, Conditions]:
    """The conditions of a batch, as edits make them, and each row's null condition.

    `kind` (B,) in [0, 1) picks a row's condition: the empty style (noise-based generation), the whole
    condition dropped, parts swapped in from the previous face of the global batch, parts left to noise,
    or the face's own. Rows with the empty style are guided against the model's noise-based null, the
    rest against its edit null (``sampling.null_condition``)."""
    from ..models.conditioning import signed_attributes
    from ..pipeline import swap_tokens

    image, label = batch["image"].to(device), batch["label"].to(device)
    mask = F.one_hot(label, pipe.cfg.unet.num_classes).permute(0, 3, 1, 2).float()
    edges = torch.tensor([dc.null_style, dc.null_all, dc.swap_parts, dc.noise_parts], device=device).cumsum(0)
    which = torch.bucketize(kind.contiguous(), edges, right=True)  # 0 empty style, 1 all dropped, 2 swap, 3 noise parts, 4 own
    attributes = signed_attributes(batch["attributes"].to(device)) if mode.takes_attributes else None
    inputs = ConditionInputs(mask=mask, image=image if mode.takes_style_image else None, attributes=attributes)
    inputs = condition_dropout(inputs, keep_style=which != 0, keep_mask=which != 1,
                               keep_attributes=which != 1 if attributes is not None else None)
    cond = conditioner.encode(inputs)
    nulls: dict[str, Conditions] = {}

    def null_of(name: str) -> Conditions:  # each null encoded once; one that drops the mask is the same for every row
        if name not in nulls:
            one = not mode.null_keeps_mask(name)
            made = conditioner.null(mask[:1] if one else mask, name)
            nulls[name] = Conditions(*(None if v is None else v.expand(len(mask), *v.shape[1:]) for v in
                                       (made.mask, made.tokens))) if one else made
        return nulls[name]

    if cond.tokens is not None and mode.takes_style_image:
        classes = pipe.token_classes
        # the reference of row i is the previous face of the global batch (so N processes see one process's rows)
        if acc.num_processes == 1:
            other = cond.tokens.roll(1, 0)
        else:
            b, rank = cond.tokens.shape[0], acc.process_index
            other = acc.gather(cond.tokens.contiguous()).roll(1, 0)[rank * b:(rank + 1) * b]
        empty = null_of("style").tokens
        chosen = part_coins < 0.5  # (B, C): the parts a swap or a noise row changes
        rows = lambda k: [torch.nonzero(chosen[i]).flatten().tolist() if which[i] == k else []  # noqa: E731
                          for i in range(len(which))]
        tokens = swap_tokens(cond.tokens, other, rows(2), classes)
        tokens = swap_tokens(tokens, empty, rows(3), classes)
        cond = Conditions(mask=cond.mask, tokens=tokens)
    edit_null, noise_null = (null_of(n) for n in null_rows)
    null = Conditions(mask=_where_rows(which == 0, noise_null.mask, edit_null.mask),
                      tokens=_where_rows(which == 0, noise_null.tokens, edit_null.tokens))
    return cond, null


def _where_rows(rows: Tensor, a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None or b is None:
        return a if b is None else b
    return torch.where(rows.view(-1, *([1] * (a.dim() - 1))), a, b)


def _student_model(pipe: Any, scfg: Any, student: nn.Module, ema: EMA | None) -> SemanticLDM:
    unet = copy.deepcopy(student).eval()
    if ema is not None:
        ema.copy_to(unet)
    return SemanticLDM.from_networks(scfg, pipe.model.conditioner, unet)


def _export(pipe: Any, scfg: Any, student: nn.Module, ema: EMA, folder: Path) -> None:
    """The EMA student as a model folder (atomically), with the teacher's first stage and face parser."""
    import shutil

    from ..pipeline import SCADMPipeline
    from ..tempfiles import remove_stale, temp_path

    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent)
    tmp = temp_path(folder)
    SCADMPipeline.from_networks(_student_model(pipe, scfg, student, ema), pipe.first_stage,
                                pipe.components.get("face_parser"), device=pipe.device).save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def _preview(pipe: Any, scfg: Any, student: nn.Module, ema: EMA, data: str | Path, path: Path) -> None:
    from .diffusion import _PreviewFaces

    model = _student_model(pipe, scfg, student, ema)
    _PreviewFaces(data, scfg).render(model, pipe.first_stage, path, scfg.sampling.steps)


def read_distill_config(data: dict | None) -> DistillConfig:
    """A DistillConfig from a mapping (a YAML file's), every field checked."""
    return from_dict(DistillConfig, data or {}).check()
