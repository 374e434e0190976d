"""Tests of the diffusion engine: schedules, objective, samplers, guidance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scadm.conditions import Conditions
from scadm.diffusion import (
    ClassifierFreeGuidance,
    NoiseSchedule,
    ScheduleConfig,
    apply_dropout,
    diffusion_loss,
    dropout_keep,
    p2_weight,
    region_weights,
    released_w_to_s,
    s_to_released_w,
    sample,
    timesteps_for,
)
import scadm.diffusion.guidance as guidance_mod

SAMPLERS = ["ddim", "ddpm", "dpm++", "unipc"]


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


_LDM = NoiseSchedule()


def toy_eps(x, t, cond):
    """A smooth, non-trivial, well-conditioned eps-predictor depending on x and t
    (the exact eps for N(0, I) data plus a t-dependent offset), so samples stay O(1)."""
    shape = (-1, *([1] * (x.dim() - 1)))
    ab = _LDM.alpha_bar(t).view(shape)
    tt = t.to(torch.float64).view(shape)
    return ((1 - ab).sqrt() * x.double() + 0.05 * torch.sin(tt / 100.0)).to(x.dtype)


def gaussian_oracle(schedule, mu, sigma):
    """Exact E[eps | x_t] for data x0 ~ N(mu, sigma^2 I)."""

    def fn(x, t, cond):
        assert torch.all(t == t[0])  # samplers use one timestep per step; keep the oracle cheap
        ab = float(schedule.alpha_bar(t[0]))
        var = ab * sigma**2 + (1 - ab)
        return math.sqrt(1 - ab) / var * (x - math.sqrt(ab) * mu)

    return fn


# --------------------------------------------------------------------------- schedules
def test_ldm_schedule_values():
    s = NoiseSchedule()
    expected = np.linspace(math.sqrt(0.0015), math.sqrt(0.0195), 1000) ** 2
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float64
    np.testing.assert_allclose(s.betas.numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - expected), rtol=1e-12)
    alias = NoiseSchedule(ScheduleConfig(kind="scaled_linear"))
    assert torch.equal(alias.betas, s.betas)


def test_linear_and_cosine_sane():
    lin = NoiseSchedule(ScheduleConfig(kind="linear", beta_start=1e-4, beta_end=0.02))
    np.testing.assert_allclose(lin.betas.numpy(), np.linspace(1e-4, 0.02, 1000), atol=1e-15)
    cos = NoiseSchedule(ScheduleConfig(kind="cosine"))
    assert cos.betas.max() <= 0.999
    for sch in (lin, cos, NoiseSchedule()):
        ab = sch.alphas_cumprod
        assert torch.all(ab > 0) and torch.all(ab < 1)
        assert torch.all(ab[1:] < ab[:-1])
    # cosine alpha_bar follows the closed form (before clipping matters)
    t = torch.arange(1, 500)
    f = lambda u: torch.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(cos.alphas_cumprod[t - 1].numpy(), (f(t.double()) / f(torch.zeros(1).double())).numpy(), rtol=1e-10)
    with pytest.raises(ValueError):
        NoiseSchedule(ScheduleConfig(kind="nope"))


def test_diffusers_ddim_matches_ldm_settings():
    from diffusers import DDIMScheduler

    s = NoiseSchedule()
    ours = s.make_scheduler("ddim")
    ref = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.0015,
        beta_end=0.0195,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )
    torch.testing.assert_close(ours.betas, ref.betas, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=1e-6, atol=1e-9)
    for n in (50, 200):
        ref.set_timesteps(n)
        assert torch.equal(timesteps_for("ddim", n, s), ref.timesteps.long())
    # LDM's make_ddim_timesteps("uniform"): range(0, T, T // n) + 1, descending
    assert timesteps_for("ddim", 200, s).tolist() == [t + 1 for t in range(0, 1000, 5)][::-1]
    # steps == T cannot use offset 1 (t = T would be out of range): full chain instead
    assert timesteps_for("ddim", 1000, s).tolist() == list(range(999, -1, -1))
    assert timesteps_for("ddpm", 1000, s).tolist() == list(range(999, -1, -1))


def test_q_sample_formula_and_dtype():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    ab = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(s.q_sample(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    # other ranks and dtypes
    x2 = x0.reshape(4, -1).float()
    out = s.q_sample(x2, t, eps.reshape(4, -1).float())
    assert out.dtype == torch.float32 and out.shape == (4, 75)
    assert s.q_sample(x0.bfloat16(), t, eps.bfloat16()).dtype == torch.bfloat16
    torch.testing.assert_close(s.snr(t), s.alphas_cumprod[t] / (1 - s.alphas_cumprod[t]))
    torch.testing.assert_close(s.alpha_bar(t), s.alphas_cumprod[t])


# --------------------------------------------------------------------------- objective
def test_p2_weight_formula():
    s = NoiseSchedule()
    t = torch.arange(0, 1000, 37)
    ab = s.alphas_cumprod[t]
    for k, gamma in [(1.0, 0.5), (1.0, 1.0), (2.0, 0.5), (0.5, 1.0)]:
        w = p2_weight(s, t, k=k, gamma=gamma, dtype=torch.float64)
        torch.testing.assert_close(w, (k + ab / (1 - ab)) ** -gamma)
    for gamma in (0.5, 1.0):
        torch.testing.assert_close(p2_weight(s, t, 1.0, gamma, dtype=torch.float64), (1 - ab) ** gamma)
    w = p2_weight(s, t)
    assert w.dtype == torch.float32 and w.shape == t.shape
    assert torch.all(w[1:] >= w[:-1])  # down-weights the low-noise (high SNR) steps


def test_diffusion_loss_p2_and_oracle():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 3, 4, 4, generator=g)
    noise = torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([0, 5, 100, 400, 800, 999])
    zero = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    loss, info = diffusion_loss(zero, x0, None, s, t=t, noise=noise)
    mse = noise.pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(info["mse_per_sample"], mse)
    torch.testing.assert_close(loss, mse.mean())
    loss_p2, info = diffusion_loss(zero, x0, None, s, t=t, noise=noise, p2=(1.0, 0.5))
    w = (1 - s.alphas_cumprod[t]).sqrt().float()
    torch.testing.assert_close(info["loss_per_sample"], w * mse)
    torch.testing.assert_close(loss_p2, (w * mse).mean())
    assert torch.equal(info["t"], t)

    # the model sees x_t from q_sample and the cond as given
    seen = {}

    def spy(x, tt, c):
        seen.update(x=x, t=tt, c=c)
        return torch.zeros_like(x)

    cond = object()
    diffusion_loss(spy, x0, cond, s, t=t, noise=noise)
    assert seen["c"] is cond and torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["x"], s.q_sample(x0, t, noise))

    # perfect oracle (recovers the true eps from x_t and the known x0) -> loss ~ 0
    def oracle(x, tt, c):
        ab = s.alpha_bar(tt).view(-1, 1, 1, 1)
        return ((x.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()).float()

    loss, info = diffusion_loss(oracle, x0, None, s, generator=torch.Generator().manual_seed(3))
    assert loss.item() < 1e-8
    assert info["t"].min() >= 0 and info["t"].max() < 1000


def test_region_weights_favour_small_parts_and_weight_the_loss():
    # 8x8 image: class 0 covers 48 pixels (left 6 columns), class 1 the 16 pixels of columns 6-7
    mask = torch.zeros(1, 3, 8, 8)
    mask[0, 0, :, :6] = 1
    mask[0, 1, :, 6:] = 1
    assert torch.equal(region_weights(mask, (4, 4), 0.0), torch.ones(1, 1, 4, 4))
    w = region_weights(mask, (4, 4), 1.0)
    assert w.shape == (1, 1, 4, 4)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    # gamma 1: each present class gets the same total weight; the absent class 2 adds nothing
    torch.testing.assert_close(w[..., :3].sum(), w[..., 3:].sum())
    # latent column 2 is all class 0, column 3 all class 1: weight ratio = (48 / 16)^gamma
    w = region_weights(mask, (4, 4), 0.5)
    torch.testing.assert_close(w[0, 0, 0, 3] / w[0, 0, 0, 2], torch.tensor(3.0**0.5))
    # a latent pixel shared by classes gets their weights in proportion to the area each covers
    w = region_weights(mask, (2, 2), 1.0)  # column 1 of the 2x2 latents: half class 0, half class 1
    per = torch.tensor([64 / 48, 64 / 16])
    torch.testing.assert_close(w[0, 0, 0, 1] / w[0, 0, 0, 0], (per[0] / 2 + per[1] / 2) / per[0])

    # in the loss: squared errors are weighted per latent pixel; the logged mse stays unweighted
    s = NoiseSchedule()
    x0 = torch.zeros(1, 2, 4, 4)
    noise = torch.zeros(1, 2, 4, 4)
    err = torch.zeros(1, 2, 4, 4)
    err[..., 3] = 1.0  # the model errs only on the small class's column
    fn = lambda x, t, c: err  # noqa: E731
    t = torch.tensor([10])
    plain, info = diffusion_loss(fn, x0, None, s, t=t, noise=noise)
    w = region_weights(mask, (4, 4), 0.5)
    weighted, winfo = diffusion_loss(fn, x0, None, s, t=t, noise=noise, pixel_weight=w)
    torch.testing.assert_close(plain, torch.tensor(0.25))
    torch.testing.assert_close(weighted, 0.25 * w[0, 0, 0, 3])
    assert weighted > plain
    torch.testing.assert_close(winfo["mse_per_sample"], info["mse_per_sample"])
    with pytest.raises(ValueError, match="pixel_weight must have shape"):
        diffusion_loss(fn, x0, None, s, t=t, noise=noise, pixel_weight=torch.ones(1, 1, 2, 2))


def test_diffusion_loss_random_draws_seeded_and_differentiable():
    s = NoiseSchedule()
    x0 = torch.randn(8, 2, 3, 3)
    lin = torch.nn.Conv2d(2, 2, 1)
    fn = lambda x, t, c: lin(x)  # noqa: E731
    l1, i1 = diffusion_loss(fn, x0, None, s, generator=torch.Generator().manual_seed(7), p2=(1.0, 1.0))
    l2, i2 = diffusion_loss(fn, x0, None, s, generator=torch.Generator().manual_seed(7), p2=(1.0, 1.0))
    assert torch.equal(i1["t"], i2["t"]) and torch.equal(l1, l2)
    assert i1["t"].dtype == torch.long
    l1.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_dropout_keep_and_apply():
    keep = dropout_keep(20000, 0.5, generator=torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and keep.shape == (20000,)
    assert abs((~keep).float().mean().item() - 0.5) < 0.02
    keep2 = dropout_keep(20000, 0.2, generator=torch.Generator().manual_seed(0))
    assert abs((~keep2).float().mean().item() - 0.2) < 0.02
    again = dropout_keep(20000, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, again)
    assert dropout_keep(10, 0.0).all() and not dropout_keep(10, 1.0).any()

    x = torch.randn(4, 3, 8, 8)
    k = torch.tensor([True, False, True, False])
    y = apply_dropout(x, k)
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    assert torch.count_nonzero(y[1]) == 0 and torch.count_nonzero(y[3]) == 0
    m = torch.randint(0, 2, (4, 19, 8, 8), dtype=torch.uint8)
    ym = apply_dropout(m, k)
    assert ym.dtype == torch.uint8 and torch.equal(ym[0], m[0]) and ym[1].sum() == 0


# --------------------------------------------------------------------------- samplers
def ref_ddim(eps_fn, alphas_cumprod, steps, x_T, eta=0.0, noise_gen=None):
    """Independent LDM-style DDIM in float64 (leading timesteps, offset 1, ab_prev = ab[0] at the end)."""
    ab = alphas_cumprod.double()
    T = ab.shape[0]
    ts = [i * (T // steps) + 1 for i in range(steps)]
    prevs = [None] + ts[:-1]
    x = x_T.double()
    for t, tp in zip(reversed(ts), reversed(prevs)):
        a_t = ab[t]
        a_prev = ab[0] if tp is None else ab[tp]
        tb = torch.full((x.shape[0],), t, dtype=torch.long)
        eps = eps_fn(x, tb, None).double()
        x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        x = a_prev.sqrt() * x0_hat + (1 - a_prev - sigma**2).sqrt() * eps
        if eta > 0:
            x = x + sigma * noise_gen(x.shape).double()
    return x


def ref_ddpm(eps_fn, alphas_cumprod, timesteps, x_T, noise_gen):
    """Independent strided ancestral DDPM with the fixed_small (posterior) variance."""
    ab = alphas_cumprod.double()
    x = x_T.double()
    ts = list(timesteps)
    for i, t in enumerate(ts):
        a_t = ab[t]
        a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - a_t / a_prev
        eps = eps_fn(x, torch.full((x.shape[0],), t, dtype=torch.long), None).double()
        x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        mean = a_prev.sqrt() * beta / (1 - a_t) * x0_hat + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t) * x
        if t > 0:
            var = (1 - a_prev) / (1 - a_t) * beta
            x = mean + var.sqrt() * noise_gen(x.shape).double()
        else:
            x = mean
    return x


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_eta0_matches_reference(steps):
    s = NoiseSchedule()
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = sample(toy_eps, x_T.shape, None, s, sampler="ddim", steps=steps, eta=0.0, x_T=x_T)
    ref = ref_ddim(toy_eps, s.alphas_cumprod, steps, x_T)
    assert (ours.double() - ref).abs().max() < 1e-5
    assert ours.dtype == torch.float32


def test_ddim_eta1_matches_reference_with_same_noise():
    s = NoiseSchedule()
    shape = (3, 2, 4, 4)
    # single generator: x_T first, then one draw per step
    ours = sample(toy_eps, shape, None, s, sampler="ddim", steps=20, eta=1.0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(shape, generator=g)
    ref = ref_ddim(toy_eps, s.alphas_cumprod, 20, x_T, eta=1.0, noise_gen=lambda sh: torch.randn(sh, generator=g))
    assert (ours.double() - ref).abs().max() < 1e-5
    # list of generators: row i from generator i
    ours = sample(toy_eps, shape, None, s, sampler="ddim", steps=20, eta=1.0, generator=gens(1, 2, 3))
    gl = gens(1, 2, 3)
    rows = lambda sh: torch.cat([torch.randn((1, *sh[1:]), generator=q) for q in gl])  # noqa: E731
    ref = ref_ddim(toy_eps, s.alphas_cumprod, 20, rows(shape), eta=1.0, noise_gen=rows)
    assert (ours.double() - ref).abs().max() < 1e-5
    # the noise matters (eta = 1 differs from eta = 0 with the same x_T)
    det = sample(toy_eps, shape, None, s, sampler="ddim", steps=20, eta=0.0, generator=gens(1, 2, 3))
    assert (det - ours).abs().max() > 1e-2


def test_ddpm_matches_reference():
    s = NoiseSchedule()
    shape = (2, 3, 4, 4)
    ts = timesteps_for("ddpm", 10, s)
    assert ts.tolist() == list(range(900, -1, -100))
    ours = sample(toy_eps, shape, None, s, sampler="ddpm", steps=10, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    x_T = torch.randn(shape, generator=g)
    ref = ref_ddpm(toy_eps, s.alphas_cumprod, ts.tolist(), x_T, lambda sh: torch.randn(sh, generator=g))
    assert (ours.double() - ref).abs().max() < 1e-4


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_sample_and_batch_independence(sampler):
    s = NoiseSchedule()
    kw = dict(sampler=sampler, steps=15, eta=1.0)
    a = sample(toy_eps, (3, 2, 4, 4), None, s, generator=torch.Generator().manual_seed(0), **kw)
    b = sample(toy_eps, (3, 2, 4, 4), None, s, generator=torch.Generator().manual_seed(0), **kw)
    c = sample(toy_eps, (3, 2, 4, 4), None, s, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    batch = sample(toy_eps, (3, 2, 4, 4), None, s, generator=gens(1, 2, 3), **kw)
    for i, seed in enumerate((1, 2, 3)):
        alone = sample(toy_eps, (1, 2, 4, 4), None, s, generator=gens(seed), **kw)
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-6, atol=1e-6)
    # a different batch composition does not change an image either
    other = sample(toy_eps, (2, 2, 4, 4), None, s, generator=gens(7, 2), **kw)
    torch.testing.assert_close(other[1], batch[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "sampler,steps,eta", [("ddim", 200, 0.0), ("ddim", 1000, 1.0), ("ddpm", 1000, 0.0), ("dpm++", 20, 0.0), ("unipc", 20, 0.0)]
)
def test_gaussian_data_analytic(sampler, steps, eta):
    """With the exact eps for x0 ~ N(mu, sigma^2), samples have mean ~ mu and std ~ sigma.

    (Residual bias comes from the discretisation and from LDM's alpha_bar_T ~ 1.4e-4 > 0;
    it shrinks with more steps. DDIM ends at alpha_bar[0], a negligible noise level.)
    """
    s = NoiseSchedule()
    mu, sigma = 0.7, 0.4
    x = sample(gaussian_oracle(s, mu, sigma), (10000, 1), None, s, sampler=sampler, steps=steps, eta=eta,
               generator=torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - mu) < 0.015
    assert abs(x.std().item() - sigma) < 0.015


@pytest.mark.parametrize("solver", ["dpm++", "unipc"])
def test_multistep_solvers_are_accurate_with_few_steps(solver):
    """DPM++ 2M (log-SNR spacing) and UniPC (Karras sigmas), our defaults, at 20 steps beat DDIM at 20 steps on narrow data."""
    s = NoiseSchedule()
    fn = gaussian_oracle(s, 0.0, 0.1)
    kw = dict(steps=20, generator=torch.Generator().manual_seed(0))
    fast = sample(fn, (20000, 1), None, s, sampler=solver, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    ddim = sample(fn, (20000, 1), None, s, sampler="ddim", **kw)
    assert abs(fast.std().item() - 0.1) < 0.01
    assert abs(fast.std().item() - 0.1) < abs(ddim.std().item() - 0.1)


def test_log_snr_spacing_keeps_few_step_samples_dispersed():
    """DPM++ at 10 steps with the default log-SNR spacing keeps the spread of narrow data (std 0.1);
    diffusers' uniform-t spacing, whose last step jumps from t = 100 to x_0, shrinks it to about a
    fifth, and Karras sigmas keep less of it."""
    s = NoiseSchedule()
    fn = gaussian_oracle(s, 0.0, 0.1)

    def std(**kw):
        return sample(fn, (20000, 1), None, s, sampler="dpm++", steps=10, generator=torch.Generator().manual_seed(0),
                      scheduler_kwargs=kw).std().item()

    assert s.make_scheduler("dpm++").config.use_lu_lambdas
    ours, karras = std(), std(use_lu_lambdas=False, use_karras_sigmas=True)
    assert abs(ours - 0.1) < 0.012
    assert abs(ours - 0.1) < abs(karras - 0.1)
    assert std(use_lu_lambdas=False) < 0.03


def test_a_spacing_asked_for_replaces_the_default():
    s = NoiseSchedule()
    assert (s.spacing("dpm++"), s.spacing("unipc"), s.spacing("ddim")) == ("log-SNR", "Karras", "leading")
    assert NoiseSchedule(ScheduleConfig(kind="cosine")).spacing("dpm++") == "linspace"
    karras = s.make_scheduler("dpm++", use_karras_sigmas=True)
    assert karras.config.use_karras_sigmas and not karras.config.use_lu_lambdas
    assert timesteps_for("dpm++", 9, s, use_karras_sigmas=True).tolist() != timesteps_for("dpm++", 9, s).tolist()
    # diffusers refuses two of these at once, so the default Karras must make way
    assert not s.make_scheduler("unipc", use_exponential_sigmas=True).config.use_karras_sigmas


def test_sample_callback_x_T_and_conditions_passthrough():
    s = NoiseSchedule()
    calls, seen = [], []
    cond = Conditions(tokens=torch.ones(2, 3, 4))

    def fn(x, t, c):
        seen.append(c)
        assert t.dtype == torch.long and t.shape == (2,)
        return toy_eps(x, t, c)

    x_T = torch.randn(2, 3, 4, 4)
    out = sample(fn, (2, 3, 4, 4), cond, s, steps=7, x_T=x_T, callback=lambda i, t, x: calls.append((i, t, x.shape)),
                 progress=True)
    assert [c[0] for c in calls] == list(range(7))
    assert [c[1] for c in calls] == timesteps_for("ddim", 7, s).tolist()
    assert all(c is cond for c in seen)
    assert out.shape == (2, 3, 4, 4)
    # x_T reproduces a generator draw
    g_out = sample(toy_eps, (2, 3, 4, 4), None, s, steps=7, generator=torch.Generator().manual_seed(4))
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sample(toy_eps, (2, 3, 4, 4), None, s, steps=7, x_T=x_T), g_out)
    with pytest.raises(ValueError):
        sample(toy_eps, (2, 3), None, s, sampler="euler")
    with pytest.raises(ValueError):
        sample(toy_eps, (2, 3), None, s, generator=gens(1))


def test_other_schedules_sample():
    for kind in ("linear", "cosine"):
        s = NoiseSchedule(ScheduleConfig(kind=kind, beta_start=1e-4, beta_end=0.02))
        for sampler in SAMPLERS:
            steps = 50 if sampler in ("dpm++", "unipc") else 100
            x = sample(gaussian_oracle(s, 0.5, 1.0), (5000, 2), None, s, sampler=sampler, steps=steps,
                       generator=torch.Generator().manual_seed(0))
            assert torch.isfinite(x).all()
            assert abs(x.mean().item() - 0.5) < 0.05
            assert abs(x.std().item() - 1.0) < 0.05


# --------------------------------------------------------------------------- guidance
class CountingModel:
    def __init__(self):
        self.calls = []

    def __call__(self, x, t, cond):
        self.calls.append((x.shape[0], t.clone(), cond))
        # eps depends on the condition so that cond and null give different predictions
        scale = cond.tokens.mean(dim=(1, 2)).view(-1, *([1] * (x.dim() - 1)))
        return 0.1 * x + scale + 0.001 * t.view(-1, *([1] * (x.dim() - 1))).float()


def test_guidance_formula_and_single_doubled_pass():
    model = CountingModel()
    cond = Conditions(mask=torch.ones(2, 19, 8, 8), tokens=torch.full((2, 19, 5), 2.0))
    null = Conditions(mask=torch.zeros(2, 19, 8, 8), tokens=torch.zeros(2, 19, 5))
    cfg = ClassifierFreeGuidance(model, null, s=1.2)
    x = torch.randn(2, 3, 4, 4)
    t = torch.tensor([10, 10])
    out = cfg(x, t, cond)
    assert len(model.calls) == 1 and model.calls[0][0] == 4
    assert torch.equal(model.calls[0][1], torch.tensor([10, 10, 10, 10]))
    doubled = model.calls[0][2]
    assert torch.equal(doubled.tokens[:2], cond.tokens) and torch.equal(doubled.tokens[2:], null.tokens)
    assert torch.equal(doubled.mask[2:], null.mask)
    eps_c = CountingModel()(x, t, cond)
    eps_u = CountingModel()(x, t, null)
    torch.testing.assert_close(out, eps_c + 1.2 * (eps_c - eps_u))
    # equivalence with the released form eps_u + w (eps_c - eps_u), w = 1 + s
    w = s_to_released_w(1.2)
    assert w == pytest.approx(2.2) and released_w_to_s(w) == pytest.approx(1.2)
    torch.testing.assert_close(out, eps_u + w * (eps_c - eps_u))
    cfg_w = ClassifierFreeGuidance.from_released_w(CountingModel(), null, w=1.0)
    assert cfg_w.s == 0.0


def test_guidance_s0_single_conditional_pass():
    model = CountingModel()
    cond = Conditions(tokens=torch.full((2, 19, 5), 2.0))
    null = Conditions(tokens=torch.zeros(2, 19, 5))
    cfg = ClassifierFreeGuidance(model, null, s=0.0)
    x, t = torch.randn(2, 3, 4, 4), torch.tensor([3, 3])
    out = cfg(x, t, cond)
    assert len(model.calls) == 1 and model.calls[0][0] == 2 and model.calls[0][2] is cond
    torch.testing.assert_close(out, CountingModel()(x, t, cond))


def test_guidance_memoises_concatenation(monkeypatch):
    n_cat = []
    real = guidance_mod.cat_conditions

    def counting_cat(a, b):
        n_cat.append(1)
        return real(a, b)

    monkeypatch.setattr(guidance_mod, "cat_conditions", counting_cat)
    model = CountingModel()
    cond = Conditions(tokens=torch.full((2, 19, 5), 2.0))
    null = Conditions(tokens=torch.zeros(2, 19, 5))
    cfg = ClassifierFreeGuidance(model, null, s=1.2)
    s = NoiseSchedule()
    sample(cfg, (2, 3, 4, 4), cond, s, steps=12, generator=torch.Generator().manual_seed(0))
    assert len(model.calls) == 12 and all(c[0] == 4 for c in model.calls)
    assert len(n_cat) == 1 and cfg.num_cats == 1
    assert all(c[2] is model.calls[0][2] for c in model.calls)  # the same doubled object every step
    # a new cond object -> a new concatenation
    cond2 = Conditions(tokens=torch.full((2, 19, 5), 3.0))
    cfg(torch.randn(2, 3, 4, 4), torch.tensor([1, 1]), cond2)
    assert len(n_cat) == 2
    # a callable null builds the null condition from the cond
    cfg2 = ClassifierFreeGuidance(CountingModel(), lambda c: Conditions(tokens=torch.zeros_like(c.tokens)), s=1.2)
    out = cfg2(torch.zeros(2, 3, 4, 4), torch.tensor([0, 0]), cond)
    torch.testing.assert_close(out, torch.full_like(out, 2.0 + 1.2 * 2.0))


# --------------------------------------------------------------------------- v-prediction


def v_from_eps_oracle(schedule, eps_fn):
    """The same exact model as eps_fn, answering v = sqrt(ab) eps - sqrt(1 - ab) x0_hat."""

    def fn(x, t, cond):
        ab = float(schedule.alpha_bar(t[0]))
        eps = eps_fn(x, t, cond)
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        return math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0

    return fn


def test_v_target_formula_and_loss_oracle():
    s = NoiseSchedule(prediction_type="v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 3, 2, 2, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    ab = s.alpha_bar(t).view(-1, 1, 1, 1).float()
    torch.testing.assert_close(s.target(x0, t, eps), ab.sqrt() * eps - (1 - ab).sqrt() * x0)
    # eps-prediction keeps eps as the target
    assert torch.equal(NoiseSchedule().target(x0, t, eps), eps)

    def oracle(x, tt, c):  # recovers v from x_t and the known x0
        a = s.alpha_bar(tt).view(-1, 1, 1, 1).float()
        e = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return a.sqrt() * e - (1 - a).sqrt() * x0

    loss, _ = diffusion_loss(oracle, x0, None, s, generator=torch.Generator().manual_seed(3))
    assert loss.item() < 1e-8
    # and a model answering eps is wrong under the v objective
    loss_eps, _ = diffusion_loss(lambda x, tt, c: eps, x0, None, s, t=t, noise=eps)
    assert loss_eps.item() > 0.1
    with pytest.raises(ValueError, match="prediction_type"):
        NoiseSchedule(prediction_type="x0")


@pytest.mark.parametrize("sampler,steps", [("ddim", 50), ("ddpm", 1000), ("dpm++", 20), ("unipc", 20)])
def test_v_prediction_samples_like_eps(sampler, steps):
    """The same exact model, parameterised as v, gives the same samples as its eps form."""
    s_eps, s_v = NoiseSchedule(), NoiseSchedule(prediction_type="v_prediction")
    eps_fn = gaussian_oracle(s_eps, 0.7, 0.4)
    kw = dict(sampler=sampler, steps=steps, eta=0.0)
    a = sample(eps_fn, (2000, 1), None, s_eps, generator=torch.Generator().manual_seed(0), **kw)
    b = sample(v_from_eps_oracle(s_v, eps_fn), (2000, 1), None, s_v, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    assert abs(b.mean().item() - 0.7) < 0.03 and abs(b.std().item() - 0.4) < 0.03
