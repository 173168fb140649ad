"""Image inputs: a path, a PIL image or an (H, W[, C]) array -> a contiguous (H, W, 3) uint8 array.

Decoding uses Pillow. Transparency is composited onto white and other modes are converted to RGB
the way transformers' image processors do (``convert_to_rgb``); 16-bit images keep their 8 most
significant bits. Sizes are checked from the file header before any pixel is decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

MAX_PIXELS = 50_000_000  # larger images are refused before decoding


def _check_size(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} is empty ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise ValueError(f"{what} is too large ({width}x{height} = {width * height / 1e6:.1f} megapixels; at most "
                         f"{MAX_PIXELS / 1e6:.0f}): downscale it first")


def _pil_to_rgb(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit grey: Pillow's convert("RGB") clips instead of scaling; keep the high bits.
        a = np.asarray(img)
        if img.mode == "F":
            a = np.clip(a, 0.0, 1.0) * 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else np.clip(a, 0, 255)
            a = np.nan_to_num(a).round().astype(np.uint8)
        else:
            a = (np.clip(a.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _from_array(a: np.ndarray) -> np.ndarray:
    from PIL import Image

    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    _check_size(int(a.shape[1]) if a.ndim >= 2 else 0, int(a.shape[0]), "the image")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (or uint16 / bool), got {a.dtype}; convert with "
                        "(a * 255).round().astype(np.uint8) for floats in [0, 1]")
    if a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if a.shape[2] == 4:
        return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(a), "RGBA"))
    return np.ascontiguousarray(a)


def load_image(image) -> np.ndarray:
    """An image as a contiguous (H, W, 3) uint8 RGB array.

    Accepts a path (str / os.PathLike), a ``PIL.Image.Image`` or a numpy array (uint8, uint16 or
    bool; grey, RGB or RGBA). Raises FileNotFoundError, ValueError (undecodable, empty or larger
    than 50 megapixels) or TypeError.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
                img = Image.open(path)
            with img:
                _check_size(img.width, img.height, f"the image {path}")
                img.load()
                return _pil_to_rgb(img)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"cannot decode the image {path}: {e}") from e
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        _check_size(image.width, image.height, "the image")
        try:
            image.load()
        except (OSError, SyntaxError) as e:
            raise ValueError(f"cannot decode the image: {e}") from e
        return _pil_to_rgb(image)
    raise TypeError(f"an image must be a path, a PIL.Image.Image or a numpy array; got {type(image).__name__}")


def load_images(images) -> list[np.ndarray]:
    """`images` (one image or a sequence of them) as a list of (H, W, 3) uint8 arrays."""
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike, np.ndarray)) or type(images).__module__.startswith("PIL"):
        images = [images]
    return [load_image(im) for im in images]
