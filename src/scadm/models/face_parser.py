"""Face parsers: a photo's mask (scadm.photos), and mIoU / pixel accuracy of generated images (scadm.eval).

- :class:`BiSeNet`: this project's implementation of face-parsing.PyTorch's BiSeNet
  (ResNet-18 context path, attention refinement at 1/16 and 1/32, feature fusion, three
  heads), keyed so that its released ``79999_iter.pth`` loads strictly. Its spatial path is
  the ResNet's stride-8 feature, as in that repository. Nothing is downloaded.
  :class:`BiSeNetParser` wraps it with the repository's preprocessing (512 px, ImageNet
  mean/std) and maps its label order to the official CelebAMask-HQ order.
- :class:`CompactParser`: a small U-Net trained by ``scadm train-parser``
  (:mod:`scadm.train.parser`) on any prepared dataset (synthetic faces, custom label sets);
  its test-split mIoU is the ceiling that generated images can reach.

Both expose ``parse(images in [-1, 1]) -> (B, H, W) ids`` and ``features(images) -> (B, F)``,
and both are diffusers models (``ModelMixin`` + ``ConfigMixin``): a pipeline's optional
``face_parser`` component is saved as ``config.json`` + ``diffusion_pytorch_model.safetensors``.
A compact parser's config keeps what ``scadm train-parser`` recorded about it (label set,
metrics, the side it was trained at, the domain of its data) under ``info``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..labels import CELEBAMASK_HQ, FACE_PARSING_NAMES, FACE_PARSING_TO_OFFICIAL
from ..nn.resnet import ResNet18
from ..weights import MissingWeightsError, load_state_dict, load_strict

__all__ = [
    "BiSeNet",
    "BiSeNetParser",
    "load_bisenet",
    "CompactParser",
    "save_compact_parser",
    "load_parser",
    "BISENET_WEIGHTS",
    "BISENET_SOURCE",
]

BISENET_WEIGHTS = "79999_iter.pth"
#: the domain of a parser trained on scadm's own procedural faces: it cannot parse photos
SYNTHETIC_DOMAIN = "scadm synthetic faces"
#: the domain of face-parsing.PyTorch's BiSeNet (trained on CelebAMask-HQ photos)
BISENET_DOMAIN = "CelebAMask-HQ face photos"
BISENET_SOURCE = "face-parsing.PyTorch (github.com/zllrunning/face-parsing.PyTorch, README: the Google Drive link to 79999_iter.pth)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ============================================================================ BiSeNet
class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3, 1, 1)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        att = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * att


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18(in_channels=3, num_classes=None)
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, feat8, feat16, feat32 = self.resnet.features(x)
        avg = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        avg_up = F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = F.interpolate(self.arm32(feat32) + avg_up, feat16.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(feat32_up)
        feat16_up = F.interpolate(self.arm16(feat16) + feat32_up, feat8.shape[2:], mode="nearest")
        feat16_up = self.conv_head16(feat16_up)
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1, 1, 0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], 1))
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat * att + feat


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's BiSeNet; ``forward`` returns the three heads' logits at input size."""

    def __init__(self, n_classes: int = 19) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def fused(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        return self.ffm(feat_res8, feat_cp8), feat_cp8, feat_cp16

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        fuse, cp8, cp16 = self.fused(x)
        outs = (self.conv_out(fuse), self.conv_out16(cp8), self.conv_out32(cp16))
        return tuple(F.interpolate(o, size, mode="bilinear", align_corners=True) for o in outs)


def load_bisenet(path: str | os.PathLike, n_classes: int = 19) -> BiSeNet:
    """Load face-parsing.PyTorch's ``79999_iter.pth`` (strict) into :class:`BiSeNet` (eval mode)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(
            f"face parser: {p} does not exist; bring {BISENET_WEIGHTS} from {BISENET_SOURCE}"
        )
    net = BiSeNet(n_classes)
    load_strict(net, load_state_dict(p), str(p))
    return net.eval()


class BiSeNetParser(ModelMixin, ConfigMixin):
    """BiSeNet with its preprocessing; ``parse`` returns official CelebAMask-HQ ids.

    Args:
        n_classes: the network's classes (19).
        input_size: the side the network sees (512, as face-parsing.PyTorch).
        official_order: map the parser's label order to the official order (default).

    ``from_file("79999_iter.pth")`` loads the released weights; ``from_net(net)`` wraps a loaded
    :class:`BiSeNet`.
    """

    kind = "bisenet"

    @register_to_config
    def __init__(self, n_classes: int = 19, input_size: int = 512, official_order: bool = True) -> None:
        super().__init__()
        self.net = BiSeNet(n_classes).eval()
        self.input_size = input_size
        self.official_order = official_order
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("to_official", torch.as_tensor(FACE_PARSING_TO_OFFICIAL), persistent=False)
        self.num_classes = n_classes
        self.num_features = 256

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class names of ``parse``'s ids (the official CelebAMask-HQ order unless disabled)."""
        return CELEBAMASK_HQ.names if self.official_order else FACE_PARSING_NAMES

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> "BiSeNetParser":
        return cls.from_net(load_bisenet(path), **kwargs)

    @classmethod
    def from_net(cls, net: BiSeNet, **kwargs) -> "BiSeNetParser":
        parser = cls(net.n_classes, **kwargs)
        parser.net = net.eval()
        return parser

    def _prep(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float().clamp(-1, 1) + 1) / 2
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, (self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 19, S, S) logits of the first head in the parser's own label order."""
        return self.net(self._prep(images))[0]

    @torch.no_grad()
    def parse(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, H, W) long ids (official order unless disabled)."""
        ids = self.logits(images).argmax(1)
        if self.official_order:
            ids = self.to_official[ids]
        if ids.shape[-2:] != images.shape[-2:]:
            ids = F.interpolate(ids[:, None].float(), images.shape[-2:], mode="nearest")[:, 0].long()
        return ids

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 256) globally pooled fused features."""
        return self.net.fused(self._prep(images))[0].mean(dim=(2, 3))


# ============================================================================ compact parser
def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(cin, cout), *_conv_bn(cout, cout))


class CompactParser(ModelMixin, ConfigMixin):
    """A small U-Net for semantic parsing of any label set, cheap enough to train on a CPU.

    A single full-resolution conv (stem) feeds an encoder at 1/2, 1/4 and 1/8 resolution;
    the decoder comes back to 1/2, is upsampled, concatenated with the stem and refined by
    one full-resolution conv before the 1x1 classifier. ``width`` 24 gives about 0.27 M, 32 about 0.48 M
    parameters. Input (B, in_channels, H, W) in [-1, 1], H and W divisible by 8; output
    (B, num_classes, H, W) logits. ``info``: what ``scadm train-parser`` recorded (``label_set``,
    ``metrics``, ``size``, ``domain``, ``data`` ...).
    """

    kind = "compact"

    @register_to_config
    def __init__(self, num_classes: int = 19, width: int = 24, in_channels: int = 3, info: dict | None = None) -> None:
        super().__init__()
        self.num_classes, self.width, self.in_channels = num_classes, width, in_channels
        info = info or {}
        self.label_names = tuple(info.get("label_set", {}).get("classes", ()))
        size = info.get("size")  # the side it was trained at (None: the data's own size, not recorded)
        self.input_size = int(max(size)) if size else None
        self.metrics = info.get("metrics", {})
        w = width
        self.stem = nn.Sequential(*_conv_bn(in_channels, w // 2))
        self.enc1 = _block(w // 2, w)  # 1/2
        self.enc2 = _block(w, 2 * w)  # 1/4
        self.mid = _block(2 * w, 4 * w)  # 1/8
        self.dec2 = _block(4 * w + 2 * w, 2 * w)  # 1/4
        self.dec1 = _block(2 * w + w, w)  # 1/2
        self.out = nn.Sequential(*_conv_bn(w + w // 2, w // 2))  # full resolution
        self.head = nn.Conv2d(w // 2, num_classes, 1)
        self.num_features = 4 * w + w

    def architecture(self) -> dict:
        return {"num_classes": self.num_classes, "width": self.width, "in_channels": self.in_channels}

    def _encode(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"CompactParser needs sides divisible by 8, got {h}x{w}")
        s = self.stem(x)
        e1 = self.enc1(F.max_pool2d(s, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        return s, e1, e2, m

    @staticmethod
    def _up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

    def _decode(self, s, e1, e2, m) -> tuple[torch.Tensor, torch.Tensor]:
        d2 = self.dec2(torch.cat([self._up(m), e2], 1))
        d1 = self.dec1(torch.cat([self._up(d2), e1], 1))
        return d1, self.out(torch.cat([self._up(d1), s], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._decode(*self._encode(x))[1])

    @torch.no_grad()
    def parse(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, H, W) long ids in the training data's label set."""
        return self.forward(images.float()).argmax(1)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 5 * width): pooled bottleneck and pooled 1/2-resolution decoder features."""
        s, e1, e2, m = self._encode(images.float())
        d1, _ = self._decode(s, e1, e2, m)
        return torch.cat([m.mean(dim=(2, 3)), d1.mean(dim=(2, 3))], 1)


def save_compact_parser(parser: CompactParser, out: str | os.PathLike, info: dict) -> Path:
    """Write ``parser.safetensors`` + ``parser.json`` (config, label names, metrics, training args)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in parser.state_dict().items()}, str(out / "parser.safetensors"))
    meta = {"kind": "compact-parser", "config": parser.architecture(), **info}
    (out / "parser.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def dataset_domain(data: str | os.PathLike) -> str:
    """What a dataset folder holds: scadm's synthetic faces (it has synth.json), else 'photos'."""
    return SYNTHETIC_DOMAIN if (Path(data) / "synth.json").is_file() else "photos"


def _component_config(folder: Path) -> dict | None:
    """A parser component folder's config.json (a pipeline's face_parser/), or None."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    return cfg if cfg.get("_class_name") in ("CompactParser", "BiSeNetParser") else None


def parser_domain(spec: str | os.PathLike) -> str:
    """What a parser file knows: a compact parser's recorded domain (older folders: from their training
    data's name), a BiSeNet .pth: CelebAMask-HQ photos."""
    p = Path(spec)
    folder = p if p.is_dir() else p.parent
    component = _component_config(folder) if p.is_dir() else None
    if component is not None:
        if component["_class_name"] == "BiSeNetParser":
            return BISENET_DOMAIN
        meta = component.get("info") or {}
        return str(meta.get("domain", "photos"))
    meta_path = folder / "parser.json"
    if p.suffix == ".pth" or not meta_path.is_file():
        return BISENET_DOMAIN
    meta = json.loads(meta_path.read_text())
    if "domain" in meta:
        return str(meta["domain"])
    return SYNTHETIC_DOMAIN if "synthetic" in str(meta.get("data", "")) else "photos"


def _load_compact(folder: Path) -> nn.Module:
    from safetensors.torch import load_file

    component = _component_config(folder)
    if component is not None:  # a pipeline's face_parser/ component
        cls = CompactParser if component["_class_name"] == "CompactParser" else BiSeNetParser
        return cls.from_pretrained(str(folder), low_cpu_mem_usage=False).eval()
    meta_path, weights = folder / "parser.json", folder / "parser.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: no parser.safetensors; train one with `scadm train-parser`")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if not meta or meta.get("kind") != "compact-parser":
        raise ValueError(f"{meta_path}: not a compact-parser description (written by `scadm train-parser`)")
    info = {k: v for k, v in meta.items() if k not in ("kind", "config")}
    model = CompactParser(**meta["config"], info=info)
    load_strict(model, load_file(str(weights)), str(weights))
    return model.eval()


def load_parser(path: str | os.PathLike) -> nn.Module:
    """A parser from a compact-parser run folder (or its parser.json / parser.safetensors), or a
    BiSeNet ``.pth`` (face-parsing.PyTorch's ``79999_iter.pth``) -> :class:`BiSeNetParser`.

    Both have ``parse(images in [-1, 1])`` (ids in the label set they were trained on; BiSeNet
    maps to the official CelebAMask-HQ order) and ``features(images)``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: parser not found; give a `scadm train-parser` run folder or {BISENET_WEIGHTS} ({BISENET_SOURCE})"
        )
    if p.is_dir():
        return _load_compact(p)
    if p.name in ("parser.json", "parser.safetensors"):
        return _load_compact(p.parent)
    if p.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        return BiSeNetParser.from_file(p).eval()
    raise ValueError(f"{p}: unknown parser file; expected a run folder with parser.json or a BiSeNet .pth")


