"""mmproj files as llama.cpp's converter writes them for real checkpoints, where a metadata key
disagrees with the tensors and llama.cpp goes by the tensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import gguf
import numpy as np
from PIL import Image

from corehead import Engine

DATA = Path(__file__).parent / "data"


def test_qwen2vl_feed_forward_length_is_the_merger_width(tmp_path):
    # For Qwen2-VL the converter stores the config's hidden_size (the merger / language-model
    # width: 1536 in Qwen2-VL-2B, whose ViT MLP is 5120 wide) as clip.vision.feed_forward_length.
    # The fixture's MLP happens to be as wide as its merger, so write a different value.
    d = DATA / "qwen2vl"
    mmproj = tmp_path / "mmproj-f32.gguf"
    shutil.copyfile(d / "mmproj-f32.gguf", mmproj)
    field = gguf.GGUFReader(str(mmproj), "r+").fields["clip.vision.feed_forward_length"]
    assert int(field.parts[field.data[0]][0]) == 64
    field.parts[field.data[0]][0] = 1536
    img = np.asarray(Image.open(d / "image.png").convert("RGB"))
    with Engine(d / "model-f32.gguf", mmproj=mmproj, n_threads=2) as eng:
        assert eng.info["vision"]["n_ff"] == 64
        got = eng.encode_image(img)
    want = np.load(d / "ref.npz")["image_embeds"]
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
