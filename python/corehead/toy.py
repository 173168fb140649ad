"""Synthetic grounding probes for corehead's toy VLM (pure numpy + Pillow, no torch).

One generator feeds both the training of the embedded toy model
(`python -m tools.toy.train`, tools/toy/train.py) and every evaluation of it (`corehead demo`, RAM ranking,
ablation), so what the model learned and what it is tested on cannot drift apart.

Scene: a 96x96 RGB image on a cluttered, low-saturation background (noise, grey lines,
grey blobs). 3-6 objects, each a coloured shape on a dark tile filling one cell of the 6x6
grid of 16-pixel cells — the same grid as the vision tower's 16-pixel patches, so one object is one
visual token. Within one image all shapes are distinct and all colours are distinct.

Question templates (each ends with the word that says which object is meant, so the
position that predicts the answer is the one that has to look it up in the image):

    shape  "What shape is red?"           -> "triangle"
    color  "What color is the triangle?"  -> "red"
    where  "Where is red?"                -> "c2"   (cell: column a-f left to right,
                                                       row 1-6 top to bottom)

`probes()` uses TEMPLATES (shape, color): the shipped toy model did not learn "where"
within its CPU training budget; pass templates=ALL_TEMPLATES to get position questions.

Single-word answers. The model's prompt is `<image>` + "\\n" + question, and the answer
follows after one space (see `prompt_text`).

Seeds: `probes(n, seed)` with seed < TRAIN_SEED_BASE is evaluation data; training draws
scenes from seeds >= TRAIN_SEED_BASE only, so train and held-out images never coincide.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 96
CELL = 16
GRID = IMAGE_SIZE // CELL  # 6x6 cells == 6x6 patches of 16 px

SHAPES = ("square", "circle", "triangle", "diamond", "cross", "ring")
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (40, 70, 235),
    "yellow": (240, 220, 20),
    "purple": (150, 40, 205),
    "orange": (250, 135, 0),
    "cyan": (0, 210, 220),
    "pink": (250, 120, 190),
}
TILE = (24, 24, 24)
COLUMNS = "abcdef"
CELLS = tuple(f"{COLUMNS[c]}{r + 1}" for r in range(GRID) for c in range(GRID))
TEMPLATES = ("shape", "color")  # what the shipped toy model was trained on
ALL_TEMPLATES = ("shape", "color", "where")  # "where" is generated but not learned (see tools/toy/train.py)
TRAIN_SEED_BASE = 1_000_000
MIN_OBJECTS, MAX_OBJECTS = 3, 6


def cell_name(col: int, row: int) -> str:
    return f"{COLUMNS[col]}{row + 1}"


def prompt_text(question: str, image_marker: str = "<image>") -> str:
    """The toy model's prompt: image first, then the question; answer follows after ' '."""
    return f"{image_marker}\n{question}"


def _clutter(rng: np.random.Generator) -> Image.Image:
    base = rng.integers(90, 170)
    tint = rng.integers(-12, 13, size=3)
    arr = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    arr[:] = base + tint
    # smooth-ish noise: coarse noise upsampled plus fine noise
    coarse = rng.normal(0, 18, size=(IMAGE_SIZE // 8, IMAGE_SIZE // 8, 1))
    arr += np.kron(coarse, np.ones((8, 8, 1)))
    arr += rng.normal(0, 10, size=(IMAGE_SIZE, IMAGE_SIZE, 1))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(6, 14)):  # grey lines
        g = int(rng.integers(40, 220))
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, IMAGE_SIZE, size=4))
        d.line([x0, y0, x1, y1], fill=(g, g, g), width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(4, 10)):  # grey blobs
        g = int(rng.integers(40, 220))
        x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE, size=2))
        r = int(rng.integers(2, 7))
        d.ellipse([x - r, y - r, x + r, y + r], fill=(g, g, g))
    return img


def _draw_shape(d: ImageDraw.ImageDraw, shape: str, box, rgb) -> None:
    x0, y0, x1, y1 = box  # inclusive pixel box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w = x1 - x0
    if shape == "square":
        d.rectangle([x0, y0, x1, y1], fill=rgb)
    elif shape == "circle":
        d.ellipse([x0, y0, x1, y1], fill=rgb)
    elif shape == "triangle":
        d.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=rgb)
    elif shape == "diamond":
        d.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=rgb)
    elif shape == "cross":
        t = max(2, round(w / 3.5))
        d.rectangle([round(cx - t / 2), y0, round(cx + t / 2) - 1, y1], fill=rgb)
        d.rectangle([x0, round(cy - t / 2), x1, round(cy + t / 2) - 1], fill=rgb)
    elif shape == "ring":
        d.ellipse([x0, y0, x1, y1], outline=rgb, width=max(2, round(w / 5)))
    else:  # pragma: no cover
        raise ValueError(shape)


def scene(rng: np.random.Generator, n_objects: int | None = None) -> dict:
    """One image and its objects: {'image', 'objects': [{shape,color,cell,col,row,bbox}]}."""
    if n_objects is None:
        n_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    n_objects = max(1, min(n_objects, len(SHAPES), len(COLORS)))
    img = _clutter(rng)
    d = ImageDraw.Draw(img)
    shapes = rng.choice(len(SHAPES), size=n_objects, replace=False)
    colors = rng.choice(len(COLORS), size=n_objects, replace=False)
    cells = rng.choice(GRID * GRID, size=n_objects, replace=False)
    names = list(COLORS)
    objects = []
    for s, c, k in zip(shapes, colors, cells):
        row, col = divmod(int(k), GRID)
        size = int(rng.integers(12, 15))  # 12..14 px, corner 1 px inside the 16 px cell
        x0, y0 = col * CELL + 1, row * CELL + 1
        box = (x0, y0, x0 + size - 1, y0 + size - 1)
        # a dark tile behind each object: the shape is then a linear function of the
        # patch's pixels whatever its colour (a from-scratch tower learns it much faster)
        d.rectangle([col * CELL, row * CELL, col * CELL + CELL - 1, row * CELL + CELL - 1], fill=TILE)
        color = names[int(c)]
        _draw_shape(d, SHAPES[int(s)], box, COLORS[color])
        objects.append(
            {
                "shape": SHAPES[int(s)],
                "color": color,
                "cell": cell_name(col, row),
                "col": col,
                "row": row,
                # target box in image pixels, [x0, y0, x1, y1) (exclusive right/bottom)
                "bbox": [float(x0), float(y0), float(x0 + size), float(y0 + size)],
            }
        )
    return {"image": img, "objects": objects}


def question(obj: dict, template: str) -> tuple[str, str, list[str]]:
    """(question, answer, choices) about one object."""
    if template == "where":
        return f"Where is {obj['color']}?", obj["cell"], list(CELLS)
    if template == "shape":
        return f"What shape is {obj['color']}?", obj["shape"], list(SHAPES)
    if template == "color":
        return f"What color is the {obj['shape']}?", obj["color"], list(COLORS)
    raise ValueError(f"unknown template {template!r}; expected one of {ALL_TEMPLATES}")


def probes(n: int, seed: int = 0, templates=TEMPLATES) -> list[dict]:
    """n deterministic probes: dicts with image (PIL), question, answer, bbox, choices.

    Also: template, objects (the whole scene). Templates cycle so every n >= 3 is balanced.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sc = scene(rng)
        obj = sc["objects"][int(rng.integers(len(sc["objects"])))]
        template = templates[i % len(templates)]
        q, a, choices = question(obj, template)
        out.append(
            {
                "image": sc["image"],
                "question": q,
                "answer": a,
                "bbox": list(obj["bbox"]),
                "choices": choices,
                "template": template,
                "objects": sc["objects"],
            }
        )
    return out


def _without(rng: np.random.Generator, key: str, value: str) -> dict:
    """A scene none of whose objects has `key` == `value` (a distractor for a question about it)."""
    while True:
        sc = scene(rng)
        if all(o[key] != value for o in sc["objects"]):
            return sc


def multi_image_probes(n: int, seed: int = 0, n_images: tuple[int, int] = (2, 4), templates=TEMPLATES) -> list[dict]:
    """n deterministic multi-image probes: `probes(n, seed)`'s questions, each asked after
    n_images[0]..n_images[1] images of which only one (at a random position: first, middle or
    last) holds the object asked about. The other images are distractor scenes drawn so that the
    question has one answer across the prompt: no distractor has an object of the asked colour
    ("What shape is red?") or shape ("What color is the triangle?").

    The toy model was trained on one image per prompt only; it answers these anyway (its
    retrieval is by content, not by position), which is what makes them a test of CoRe-sparse
    prefill: each image chunk is prefilled densely, then only the CoRe heads keep its tokens.

    Dicts: images (PIL, in prompt order), target (index of the image asked about), question,
    answer, choices, template, bbox (in the target image)."""
    lo, hi = n_images
    if not 1 <= lo <= hi:
        raise ValueError(f"n_images must be (low, high) with 1 <= low <= high, got {n_images!r}")
    rng = np.random.default_rng([seed, 7])  # distractors and layout: a stream apart from the targets'
    out = []
    for p in probes(n, seed, templates):
        k = int(rng.integers(lo, hi + 1))
        target = int(rng.integers(k))
        key = "color" if p["template"] in ("shape", "where") else "shape"
        value = p["question"].rstrip("?").split()[-1]
        images = [_without(rng, key, value)["image"] for _ in range(k - 1)]
        images.insert(target, p["image"])
        out.append({"images": images, "target": target, "question": p["question"], "answer": p["answer"],
                    "choices": p["choices"], "template": p["template"], "bbox": p["bbox"]})
    return out


def multi_image_prompt(item: dict, image_marker: str = "<__media__>") -> str:
    """The prompt of a `multi_image_probes` item: one marker per image, then the question."""
    return prompt_text(item["question"], image_marker * len(item["images"]))


def multi_image_accuracy(eng, items: list[dict], max_tokens: int = 4):
    """Greedy exact-match accuracy of `eng` on `multi_image_probes` items, as an
    :class:`corehead.evaluate.EvalReport` (metric "exact"): the first line of the greedy answer,
    normalized, equals the truth. Runs with whatever KV cache mode `eng` is in (`eng.sparse`)."""
    from corehead.evaluate import EvalReport
    from corehead.ram import normalize_answer

    answers = [eng.generate(multi_image_prompt(it, eng.image_marker), images=[np.asarray(im) for im in it["images"]],
                            max_tokens=max_tokens).strip().split("\n")[0] for it in items]
    correct = np.array([normalize_answer(a) == normalize_answer(it["answer"]) for a, it in zip(answers, items)])
    return EvalReport("exact", correct, answers, [it["answer"] for it in items])


def as_probes(items: list[dict], image_marker: str = "<__media__>") -> list:
    """`probes()` items as :class:`corehead.Probe` objects for `Engine.rank_heads` and friends.

    Each carries the toy model's own prompt verbatim (`prompt_text` with `image_marker`, which
    must be the engine's ``image_marker``) and the answer with its leading space, so that the
    teacher-forced answer tokenizes exactly as the model was trained (one answer token).
    """
    from corehead.probes import Probe

    return [
        Probe(
            image=np.asarray(p["image"]),
            question=p["question"],
            answer=" " + p["answer"],
            bbox=list(p["bbox"]),
            choices=list(p["choices"]),
            prompt=prompt_text(p["question"], image_marker),
            meta={"template": p["template"]},
        )
        for p in items
    ]


def save_probes(items: list[dict], folder, image_marker: str = "<__media__>"):
    """`probes()` items written as a probe file (what `corehead rank` / `corehead explore` read):
    folder/probes.jsonl with the toy's prompt verbatim and the images as folder/img/NNN.png.
    Returns the JSONL's path."""
    import json
    from pathlib import Path

    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, p in enumerate(items):
        name = f"img/{i:03d}.png"
        p["image"].save(folder / name)
        lines.append(json.dumps({"image": name, "question": p["question"], "answer": " " + p["answer"],
                                 "bbox": list(p["bbox"]), "choices": list(p["choices"]),
                                 "prompt": prompt_text(p["question"], image_marker)}))
    path = folder / "probes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def corpus_lines() -> list[str]:
    """Every question and answer string the toy task can produce (tokenizer training)."""
    lines = []
    for c in COLORS:
        lines.append(f"Where is {c}?")
        lines.append(c)
    for c in COLORS:
        lines.append(f"What shape is {c}?")
    for cell in CELLS:
        lines.append(cell)
    for s in SHAPES:
        lines.append(f"What color is the {s}?")
        lines.append(s)
    return lines
