"""The editing and generation API: :class:`SCADMPipeline`, a diffusers ``DiffusionPipeline``.

    pipe = SCADMPipeline.from_pretrained()            # the bundled model; or a model folder
    out = pipe.swap(target=("t.png", "t_mask.png"), reference=("r.png", "r_mask.png"), parts=["l_eye"])
    out.images[0].save("swapped.png")

The rooms, in the order an edit passes through them:

    inputs.py    FaceInputs (``pipe.inputs``): images, masks and photos brought to the model's size
    tokens.py    token edits (swap, interpolate, mix) and mask part swapping, pure functions
    plan.py      plan_edit: what an edit inverts, keeps, and where its noise starts
    pipeline.py  SCADMPipeline: components, loading and saving, sampling, the applications
    outputs.py   EditResult and InversionOutput (diffusers BaseOutputs)
    calls.py     diffusers' call keywords (num_inference_steps, generator, output_type, ...)
    folders.py   the bundled model, export_model, upgrade_folder
"""

from .calls import CallOptions, diffusers_call
from .folders import DEFAULT_MODEL, LegacyFolderNote, default_model_folder, export_model, upgrade_folder
from .inputs import EditWarning, Face, FaceInputs
from .outputs import EditResult, InversionOutput, to_pil
from .pipeline import SCADMPipeline
from .plan import BLEND_MARGIN, EditPlan, Source, plan_edit
from .tokens import interpolate_tokens, mix_mask_parts, mix_tokens, swap_tokens
from ..config import SamplingOptions

__all__ = [
    "SCADMPipeline", "Face", "FaceInputs", "EditResult", "InversionOutput", "EditWarning", "SamplingOptions",
    "DEFAULT_MODEL", "default_model_folder", "export_model", "upgrade_folder", "LegacyFolderNote",
    "swap_tokens", "interpolate_tokens", "mix_tokens", "mix_mask_parts", "to_pil", "plan_edit", "EditPlan",
    "Source", "BLEND_MARGIN", "CallOptions", "diffusers_call",
]
