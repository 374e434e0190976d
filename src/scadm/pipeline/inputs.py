"""The input side of the pipeline, in the role of diffusers' image processors: images, masks and
photos in whatever form a user has them, checked and brought to the model's size.

    inputs = pipe.inputs
    x, ids, photo = inputs.face(("t.png", "t_mask.png"))   # (1, 3, H, W) in [-1, 1], (1, H, W) ids, None
    x, ids, photo = inputs.face(Face("photo.jpg"))          # a photo: mask parsed, face framed and cut out

Images and masks are file paths, PIL images, numpy arrays or tensors; masks are id maps or colour
images in the label set's palette. A file or PIL image that is not at the model's size, a face
given without its mask (``Face(image)``), or a :class:`~scadm.photos.Photo` is a photo
(:mod:`scadm.photos`): its mask is parsed when not given, its face framed and cut out at the
model's size, and an edit's result is pasted back into it. Arrays and tensors are crops, resized
to the model's size with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .. import checks
from ..labels import LabelSet
from ..photos import Framing, Photo
from .tokens import per_image, rows

ImageLike = Union[str, Path, Image.Image, np.ndarray, Tensor]
MaskLike = Union[str, Path, Image.Image, np.ndarray, Tensor]


class EditWarning(UserWarning):
    """An edit asked for something the inputs cannot give (a part the target does not have)."""


@dataclass
class Face:
    """An image and its semantic mask (class ids in the model's label set); without a mask it is parsed."""

    image: ImageLike | Photo
    mask: MaskLike | None = None


#: what :meth:`FaceInputs.face` and :meth:`FaceInputs.faces` give: images (B, 3, H, W) in [-1, 1],
#: class ids (B, H, W), and the photo each came from (None for a crop)
Faces = tuple[Tensor, Tensor, list[Photo | None]]


class FaceInputs:
    """Loads, checks and fits a model's inputs: images, masks, faces, photos and part names.

    `parser`: gives the photo parser when a photo comes without its mask (None: none is set);
    `device`: gives the device the tensors go to; `model_folder`: named in a missing parser's error.
    """

    def __init__(self, image_size: tuple[int, int], label_set: LabelSet, device: Callable[[], torch.device],
                 parser: Callable[[], Any] = lambda: None, framing: Framing = Framing(),
                 model_folder: str | Path | None = None) -> None:
        self.image_size, self.label_set = tuple(image_size), label_set
        self.device, self.parser, self.framing, self.model_folder = device, parser, framing, model_folder

    # ------------------------------------------------------------------ faces
    def face(self, face: Face | tuple | Photo) -> Faces:
        """One face: a Face, an (image, mask) pair or a Photo."""
        if isinstance(face, Photo):
            return self.image_and_mask(face, None)
        if isinstance(face, tuple):
            face = Face(*face)
        return self.image_and_mask(face.image, face.mask)

    def faces(self, faces: Any) -> Faces:
        """One face or a sequence of them, as a batch."""
        if isinstance(faces, (Face, Photo)) or (isinstance(faces, tuple) and len(faces) == 2
                                                and not isinstance(faces[0], (Face, tuple, Photo))):
            return self.face(faces)
        return _cat([self.face(f) for f in faces])

    def batch(self, images: Any, masks: Any) -> Faces:
        """Single inputs or equal-length sequences of images and masks (or faces), as a batch."""
        if isinstance(images, (Face, Photo)) and masks is None:
            return self.face(images)
        if isinstance(images, (list, tuple)) and not isinstance(images, Face):
            if masks is None:
                masks = [None] * len(images)
            if not isinstance(masks, (list, tuple)) or len(masks) != len(images):
                raise ValueError("give as many masks as images")
            return _cat([self.image_and_mask(i, m) for i, m in zip(images, masks)])
        return self.image_and_mask(images, masks)

    def image_and_mask(self, image: Any, mask: Any) -> Faces:
        """An image and its mask (or a Face) at the model's size, and the Photo they come from."""
        if isinstance(image, Face) and mask is None:
            image, mask = image.image, image.mask
        if not self.is_photo(image, mask):
            return self.load_image(image), self.load_mask(mask), [None]
        photo = image if isinstance(image, Photo) else self.photo(image, mask)
        return self.load_image(photo.crop), self.load_mask(photo.crop_mask), [photo]

    def is_photo(self, image: Any, mask: Any) -> bool:
        """A photo rather than a crop: a Photo, an image without a mask, or a file / PIL image not at the model's size."""
        if isinstance(image, Photo) or mask is None:
            if isinstance(image, Tensor):
                raise ValueError("a tensor image needs its mask; give a file, PIL image or uint8 array to have it parsed")
            return True
        if not self.frames_faces:
            return False
        if isinstance(image, (str, Path)):
            path = checks.input_file(image, "image", "image file")
            try:
                with Image.open(path) as im:  # the header only: a large photo is decoded once, later
                    size = im.size
            except Exception:  # noqa: BLE001 - open_image says what is wrong with the file, in one line
                from ..data.layout import open_image

                open_image(path).close()
                raise
        elif isinstance(image, Image.Image):
            size = image.size
        else:
            return False
        return tuple(size[::-1]) != self.image_size

    @property
    def frames_faces(self) -> bool:
        """Whether photos can be framed: the model's label set is a face label set (it has skin)."""
        return "skin" in self.label_set.names

    def photo(self, image: ImageLike, mask: MaskLike | None = None, framing: Framing | None = None,
              mask_option: str = "mask=") -> Photo:
        """A photo made ready for the model: mask given or parsed, face framed and cut out (scadm.photos).
        `mask_option`: how the caller gives this photo's mask, named in errors (the CLI's option)."""
        from ..photos import no_parser_error, prepare_photo

        parser = None
        if mask is None:
            parser = self.parser()
            if parser is None:
                raise no_parser_error(str(image) if isinstance(image, (str, Path)) else "the photo", mask_option,
                                      self.model_folder)
        return prepare_photo(image, mask, size=self.image_size, label_set=self.label_set, parser=parser,
                             framing=framing or self.framing, mask_option=mask_option)

    # ------------------------------------------------------------------ masks to generate with
    def generation_mask(self, mask: Any) -> tuple[Tensor, Photo | None]:
        """A generation mask: a Face / Photo (framed; the result is pasted into it), a mask file or PIL
        image not at the model's size (framed by its face), or a crop's mask."""
        if isinstance(mask, (Face, Photo)):
            _, ids, photos = self.face(mask)
            return ids, photos[0]
        if isinstance(mask, (str, Path, Image.Image)):
            from ..photos import face_class_ids, frame_mask, read_mask

            arr = read_mask(checks.input_file(mask, "mask", "mask file") if isinstance(mask, (str, Path)) else mask,
                            self.label_set)
            if arr.shape != self.image_size and self.frames_faces:
                if not np.isin(arr, face_class_ids(self.label_set)).any():
                    h, w = arr.shape
                    raise ValueError(f"{mask}: a {w}x{h} mask, not at the model's size, is framed by its face (any size "
                                     "or aspect ratio), but this one has no face pixels (skin, eyes, mouth ...); give "
                                     f"a mask of a face, or one at {self.image_size[1]}x{self.image_size[0]}")
                arr, _ = frame_mask(arr, self.image_size, self.label_set, self.framing, name=str(mask))
            return self.load_mask(arr), None
        return self.load_mask(mask), None

    def new_mask(self, new_mask: MaskLike, photo: Photo | None) -> Tensor:
        """An edited mask at the model's size: for a photo, the photo's whole mask, cut with its face's square."""
        if photo is None:
            return self.load_mask(new_mask)
        return self.load_mask(photo.with_mask(mask_array(new_mask, self.label_set)))

    # ------------------------------------------------------------------ crops
    def load_image(self, image: ImageLike) -> Tensor:
        """-> (1, 3, H, W) in [-1, 1] at the model's size (bicubic resize with a warning)."""
        if isinstance(image, Tensor):
            x = image.float()
            x = x[None] if x.ndim == 3 else x
            if x.min() >= 0 and x.max() > 1.0:  # uint8-like values
                x = x / 127.5 - 1
        else:
            if isinstance(image, (str, Path)):
                from ..data.layout import load_image

                arr = load_image(checks.input_file(image, "image", "image file"))
            elif isinstance(image, Image.Image):
                arr = np.asarray(image.convert("RGB"))
            else:
                arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"an image must be H x W x 3, got shape {arr.shape}")
            x = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        return self._fit(x, "image", mode="bicubic").clamp(-1, 1).to(self.device())

    def load_mask(self, mask: MaskLike) -> Tensor:
        """-> (1, H, W) long class ids at the model's size (nearest resize with a warning)."""
        if isinstance(mask, (str, Path)):
            from ..data.layout import load_mask_file

            ids = torch.from_numpy(load_mask_file(checks.input_file(mask, "mask", "mask file"), self.label_set).astype(np.int64))
        elif isinstance(mask, Image.Image):
            arr = np.asarray(mask)
            ids = torch.from_numpy((self.label_set.from_colors(arr) if arr.ndim == 3 else arr).astype(np.int64))
        elif isinstance(mask, np.ndarray):
            colour = mask.ndim == 3 and mask.shape[-1] in (3, 4)  # (H, W, 3) colour image; (B, H, W) id maps
            ids = torch.from_numpy((self.label_set.from_colors(mask) if colour else mask).astype(np.int64))
        else:
            ids = mask.long()
            if ids.ndim == 4:  # one-hot (B, C, H, W)
                ids = ids.argmax(1)
        ids = ids[None] if ids.ndim == 2 else ids
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.label_set.num_classes):
            raise ValueError(f"mask has class id {int(ids.max())}; the label set has {self.label_set.num_classes} classes")
        ids = self._fit(ids[:, None].float(), "mask", mode="nearest")[:, 0].long()
        return ids.to(self.device())

    def _fit(self, x: Tensor, what: str, mode: str) -> Tensor:
        h, w = self.image_size
        if tuple(x.shape[-2:]) == (h, w):
            return x
        ih, iw = x.shape[-2:]
        if abs(ih / iw - h / w) > 0.01:
            raise ValueError(f"{what} is {ih}x{iw} but the model works at {h}x{w}: the aspect ratio differs; crop it first")
        warnings.warn(f"{what} resized from {ih}x{iw} to {h}x{w} ({mode})", stacklevel=4)
        if mode == "nearest":
            return F.interpolate(x, size=(h, w), mode="nearest")
        return F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True)

    # ------------------------------------------------------------------ parts
    def parts(self, parts: Iterable[str | int] | str | None) -> list[int] | list[list[int]] | None:
        """Part names or ids -> class ids (None stays None = every part; one list per image stays per image)."""
        if parts is None:
            return None
        if per_image(parts):
            return [self.label_set.indices(p) for p in parts]
        return self.label_set.indices(parts)

    def warn_absent_parts(self, ids: Tensor, classes: Any, what: str) -> None:
        """An EditWarning naming the asked-for parts a face does not have (nothing of them can change)."""
        if classes is None:
            return
        for i, (m, row) in enumerate(zip(ids, rows(classes, ids.shape[0]))):
            absent = [self.label_set.names[c] for c in row if not bool((m == c).any())]
            if absent:
                face = f"{what} {i + 1}" if ids.shape[0] > 1 else f"the {what}"
                warnings.warn(f"{face} has no {', '.join(absent)} in its mask, so "
                              f"{'that part is' if len(absent) == 1 else 'those parts are'} not edited "
                              "(edit its mask to add a part)", EditWarning, stacklevel=4)


def _cat(items: list[Faces]) -> Faces:
    return torch.cat([i[0] for i in items]), torch.cat([i[1] for i in items]), [p for i in items for p in i[2]]


def mask_array(mask: Any, label_set: LabelSet) -> np.ndarray:
    """A mask file, PIL image or array as (H, W) ids (tensors as their first image)."""
    from ..photos import read_mask

    if isinstance(mask, (str, Path)):
        return read_mask(checks.input_file(mask, "new_mask", "mask file"), label_set, str(mask))
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
        mask = mask[0] if mask.ndim == 3 else mask
    return read_mask(mask, label_set)


def attribute_vector(attributes: Any, batch: int, base: Any = None) -> Tensor:
    """Signed attributes (B, 40) on the CPU: +1 / -1, 0 = unknown. `attributes`: a dict {name: 0/1}
    (applied over `base`, default all unknown), a sequence of 40 values in 0/1, or a tensor (one
    0/1 vector per image when 2-D)."""
    from ..labels import ATTRIBUTE_NAMES
    from ..models.conditioning import signed_attributes

    def vec(a: Any) -> Tensor:
        t = torch.as_tensor(np.asarray(a, dtype=np.float32))
        if t.shape[-1] != len(ATTRIBUTE_NAMES):
            raise ValueError(f"give {len(ATTRIBUTE_NAMES)} attribute values, got {t.shape[-1]}")
        return signed_attributes(t)

    if isinstance(attributes, Tensor) and attributes.ndim == 2:  # one 0/1 vector per image
        if attributes.shape[0] != batch:
            raise ValueError(f"got attributes for {attributes.shape[0]} images, expected {batch}")
        return signed_attributes(attributes.float().cpu())
    out = vec(base).expand(batch, -1).clone() if base is not None else torch.zeros(batch, len(ATTRIBUTE_NAMES))
    if isinstance(attributes, dict):
        for name, value in attributes.items():
            if name not in ATTRIBUTE_NAMES:
                raise ValueError(f"unknown attribute {name!r}; valid: {', '.join(ATTRIBUTE_NAMES)}")
            if value not in (0, 1, True, False):
                raise ValueError(f"attribute {name}={value!r}: use 0 or 1")
            out[:, ATTRIBUTE_NAMES.index(name)] = 1.0 if value else -1.0
    elif attributes is not None:
        out = vec(attributes).expand(batch, -1).clone()
    return out
