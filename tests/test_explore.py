"""Engine.attention_export and `corehead explore`, on the toy VLM embedded in the package (its CoRe
heads are real: tests/test_toy.py).

- the export is read back with plain safetensors + numpy (no corehead) and checked against
  Engine.attention and the toy's processor geometry (16-px cells, rebuilt here from toy.CELL);
- the page's embedded data against the ranking and Engine.attention (dequantized);
- the page in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
  clicking a head redraws the heat canvas to that head's attention, hovering a token redraws it
  to that token's row, the per-probe RAM the page computes matches corehead.ram.score_probe (a
  reduction on the graph, not the rows the page got).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from corehead import HeadRanking, toy
from corehead.cli import main as cli_main
from corehead.ram import score_probe

GRID_CELLS = np.asarray([(c * toy.CELL, r * toy.CELL, (c + 1) * toy.CELL, (r + 1) * toy.CELL)
                         for r in range(toy.GRID) for c in range(toy.GRID)], dtype=np.float32)


def toy_probes(eng, n: int = 3, seed: int = 5):
    return toy.as_probes(toy.probes(n, seed=seed), eng.image_marker)


def read_export(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The file as any tool reads it: safetensors + json, no corehead."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert meta["format"] == "corehead.AttentionExport/1"
    return load_file(str(path)), json.loads(meta["corehead"])


# --- attention_export ------------------------------------------------------------------------


def test_attention_export_of_a_probe(toy_engine, tmp_path):
    eng = toy_engine
    probe = toy_probes(eng)[0]
    heads = [(0, 0), (3, 5), (5, 7)]
    eng.attention_export(probe, heads, tmp_path / "p.safetensors")
    t, meta = read_export(tmp_path / "p.safetensors")

    full = probe.prompt + probe.answer
    n = len(eng.multimodal_tokens(full, [probe.image]))
    n_prompt = len(eng.multimodal_tokens(probe.prompt, [probe.image]))
    answer_positions = list(range(n_prompt - 1, n - 1))  # RAM's query set
    assert t["positions"].tolist() == answer_positions == t["answer_positions"].tolist()
    ref = eng.attention(full, images=[probe.image], positions=answer_positions)  # every layer, every head
    assert t["attention"].shape == (3, len(answer_positions), n)
    for k, (layer, head) in enumerate(heads):
        np.testing.assert_array_equal(t["attention"][k], ref[layer, head])
    assert t["heads"].tolist() == [list(h) for h in heads]
    np.testing.assert_allclose(t["attention"].sum(-1), 1.0, atol=1e-5)  # softmax rows over the context

    # Geometry: the toy's 36 visual tokens are the 16-px cells, row-major, right after BOS.
    np.testing.assert_array_equal(t["visual_token_boxes"], GRID_CELLS)
    np.testing.assert_array_equal(t["visual_token_boxes"], eng.visual_token_boxes(probe.image))
    assert t["visual_positions"].tolist() == list(range(1, 37))
    np.testing.assert_array_equal(t["visual_positions"], eng.visual_token_positions(full, [probe.image]))
    assert t["visual_spans"].tolist() == [[1, 37]]
    assert t["visual_image"].tolist() == [0] * 36
    assert t["image_sizes"].tolist() == [[toy.IMAGE_SIZE, toy.IMAGE_SIZE]]
    np.testing.assert_array_equal(t["target_boxes"], [probe.bbox])
    np.testing.assert_array_equal(t["image_0"], probe.image)
    tokens = meta["tokens"]
    assert len(tokens) == n == len(t["token_ids"])
    assert tokens[0] == "<s>" and set(tokens[1:37]) == {"<image>"}
    assert "".join(tokens[37:]) == "\n" + probe.question + probe.answer
    assert (meta["question"], meta["answer"]) == (probe.question, probe.answer)
    assert meta["model"]["n_layer"] == 6 and meta["model"]["n_head"] == 8


def test_attention_export_of_a_prompt(toy_engine, tmp_path):
    eng = toy_engine
    probe = toy_probes(eng)[1]
    rec = eng.attention_export(probe.prompt, [(0, 6)], tmp_path / "q.safetensors", images=[probe.image],
                               positions=[-1, 0], include_images=False)
    t, meta = read_export(tmp_path / "q.safetensors")
    n = len(eng.multimodal_tokens(probe.prompt, [probe.image]))
    assert t["positions"].tolist() == [0, n - 1]  # negative counts from the end; sorted
    ref = eng.attention(probe.prompt, images=[probe.image], positions=[0, n - 1], layers=[0])[0, 6]
    np.testing.assert_array_equal(t["attention"][0], ref)
    assert "image_0" not in t and t["target_boxes"].shape == (0, 4) and t["answer_positions"].size == 0
    assert rec.meta["tokens"] == meta["tokens"]

    # Text only: no visual tokens, the last position by default.
    eng.attention_export("What shape is red?", [(1, 2)], tmp_path / "t.safetensors")
    t, _ = read_export(tmp_path / "t.safetensors")
    ids = eng.tokenize("What shape is red?")
    assert t["positions"].tolist() == [len(ids) - 1]
    np.testing.assert_array_equal(t["attention"][0], eng.attention(ids, positions=[-1])[1, 2])
    assert t["visual_positions"].size == 0 and t["visual_spans"].shape == (0, 2)


def test_attention_export_refuses_bad_input(toy_engine, tmp_path):
    eng = toy_engine
    probe = toy_probes(eng)[0]
    out = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="layer 6 is out of range"):
        eng.attention_export(probe, [(6, 0)], out)
    with pytest.raises(ValueError, match="empty"):
        eng.attention_export(probe, [], out)
    with pytest.raises(TypeError, match="pairs"):
        eng.attention_export(probe, "L0H0", out)
    with pytest.raises(ValueError, match="outside the"):
        eng.attention_export(probe, [(0, 0)], out, positions=[999])
    with pytest.raises(ValueError, match="its own image"):
        eng.attention_export(probe, [(0, 0)], out, images=[probe.image])
    with pytest.raises(TypeError, match="Probe, a prompt"):
        eng.attention_export(3.5, [(0, 0)], out)
    assert not out.exists()
    from corehead.attention_export import load_attention_export

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_attention_export(bad)


# --- corehead explore ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explored(toy_engine, tmp_path_factory):
    """heads.json, curve.json, probes.jsonl of the toy and the page `corehead explore` wrote."""
    eng = toy_engine
    d = tmp_path_factory.mktemp("explore")
    ranking = eng.rank_heads(toy_probes(eng, 24, seed=101), progress=False)
    ranking.save(d / "heads.json")
    curve = eng.ablation_curve(ranking, toy_probes(eng, 12, seed=202), fractions=(0.05, 0.1), seeds=1,
                               progress=False)
    curve.save(d / "curve.json")
    probes_file = toy.save_probes(toy.probes(6, seed=303), d / "probes", eng.image_marker)
    rc = cli_main(["explore", str(d / "heads.json"), "--probes", str(probes_file), "--curve", str(d / "curve.json"),
                   "-o", str(d / "report.html"), "-t", "2"])
    assert rc == 0
    return d


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="corehead-data">(.*?)</script>', html, re.S)
    assert m, "the page carries its data"
    return json.loads(m.group(1))


def dequantized(view: dict, k: int) -> np.ndarray:
    """Stored head k's rows of one probe: [n_rows, n_tokens] (report.py's quantization, undone)."""
    q = np.frombuffer(base64.b64decode(view["q"]), np.uint8)
    n_rows, n = len(view["rows"]), view["n_tokens"]
    q = q.reshape(-1, n_rows, n)[k].astype(np.float64)
    visual = np.zeros(n, dtype=bool)
    visual[view["visual_positions"]] = True
    scale = np.asarray(view["scale"][k])  # [n_rows, 2]: text keys, visual keys
    return q / 255.0 * np.where(visual, scale[:, 1:2], scale[:, 0:1])


def test_explore_page_is_self_contained_and_carries_the_attention(toy_engine, explored):
    eng = toy_engine
    html = (explored / "report.html").read_text()
    size = len(html.encode())
    print(f"explorer page for the toy: {size} bytes")
    assert size < 1_000_000  # 6 probes x 48 heads, quantized
    # Nothing fetched at view time: every src/href is a data URL or an anchor; no external script/style.
    for attr in re.findall(r'\b(?:src|href)\s*=\s*["\']([^"\']*)', html):
        assert attr.startswith(("data:", "#")), attr
    assert "<link" not in html and "@import" not in html and not re.search(r"url\(\s*['\"]?http", html)

    data = page_data(html)
    ranking = HeadRanking.load(explored / "heads.json")
    np.testing.assert_allclose(data["grid"]["ram"], ranking.ram, atol=1e-5)
    assert data["grid"]["top"] == [list(h) for h in ranking.top(0.05)]
    assert data["heads"] == [list(h) for h in ranking.order()]  # all 48 <= --max-heads 64
    assert len(data["probes"]) == 6
    page_rows = data["curve"]["summary"]  # the columns the page draws, as corehead ablate wrote them
    want = json.loads((explored / "curve.json").read_text())["summary"]
    assert page_rows == [{k: r[k] for k in page_rows[0]} for r in want]

    from corehead import load_probes

    probes = load_probes(explored / "probes" / "probes.jsonl")
    for i in (0, 5):
        view, probe = data["probes"][i], probes[i]
        full = probe.prompt + probe.answer
        assert view["rows"] == [0] + list(range(37, len(view["tokens"])))  # every text position
        ref = eng.attention(full, images=[probe.image], positions=view["rows"])
        for k in (0, 20, 47):
            layer, head = data["heads"][k]
            rows, exact = dequantized(view, k), ref[layer, head]
            # uint8 per row and group: each weight within half a step of its group's maximum
            vis = np.zeros(exact.shape[1], dtype=bool)
            vis[1:37] = True
            group_max = np.where(vis, exact[:, vis].max(-1, keepdims=True), exact[:, ~vis].max(-1, keepdims=True))
            assert (np.abs(rows - exact) <= group_max / 510 + 1e-7).all()
        np.testing.assert_allclose(view["boxes"], GRID_CELLS)  # 96 px: shown unscaled
        np.testing.assert_allclose(view["targets"], [probe.bbox])


def test_explore_caps_the_attention_it_stores(toy_engine, explored):
    from corehead import load_probes
    from corehead.explore import collect

    ranking = HeadRanking.load(explored / "heads.json")
    probes = load_probes(explored / "probes" / "probes.jsonl")[:2]
    data = collect(toy_engine, ranking, probes, max_mb=0.01)
    lengths = [len(toy_engine.multimodal_tokens(p.prompt + p.answer, [p.image])) for p in probes]
    weights_per_head = sum((n - 36) * n for n in lengths)  # every text row over every key
    assert weights_per_head == sum(len(v["rows"]) * v["n_tokens"] for v in data["probes"])
    expected = int(0.01e6 // (weights_per_head * 4 / 3))  # base64: 4/3 byte per uint8 weight
    assert 1 < expected < 48 and len(data["heads"]) == expected
    assert data["heads"] == [list(h) for h in ranking.order()[:expected]]  # the best ones
    for v in data["probes"]:
        assert len(base64.b64decode(v["q"])) == expected * len(v["rows"]) * v["n_tokens"]
        assert len(v["scale"]) == expected
    assert len(collect(toy_engine, ranking, probes, max_heads=5)["heads"]) == 5
    with pytest.raises(ValueError, match="max_mb"):
        collect(toy_engine, ranking, probes, max_mb=0)


def test_explore_refuses_what_it_cannot_show(explored, tmp_path, capsys):
    probes = str(explored / "probes" / "probes.jsonl")
    heads_list = tmp_path / "list.json"
    heads_list.write_text("[[0, 0], [0, 6]]")
    assert cli_main(["explore", str(heads_list), "--probes", probes, "-o", str(tmp_path / "r.html")]) == 1
    assert "needs a head ranking" in capsys.readouterr().err
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"heads": [[0, 0]], "method": "zero", "unablated": {}, "ablated": {}}))
    assert cli_main(["explore", str(explored / "heads.json"), "--probes", probes, "--curve", str(single),
                     "-o", str(tmp_path / "r.html")]) == 1
    assert "one ablation" in capsys.readouterr().err
    other = json.loads((explored / "heads.json").read_text())
    other.pop("per_probe", None)  # per-probe scores are optional in a ranking file
    for key, value in other.items():  # every [layer][head] array: 4 heads of 8
        if isinstance(value, list) and value and isinstance(value[0], list) and len(value[0]) == 8:
            other[key] = [row[:4] for row in value]
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert cli_main(["explore", str(tmp_path / "other.json"), "--probes", probes, "-o", str(tmp_path / "r.html")]) == 1
    assert "6 layers x 4 heads" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# --- the page in a real browser --------------------------------------------------------------


def _browser_binaries() -> tuple[str | None, str | None]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium under Selenium (Debian: apt-get install chromium chromium-driver; .ci/run does)."""
    binary, driver_path = _browser_binaries()
    if not binary or not driver_path:
        reason = ("no Chromium + chromedriver on this machine (Debian: apt-get install chromium chromium-driver); "
                  f"found browser={binary}, driver={driver_path}")
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run installs them, so CI must run this test")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1200", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield drv
    finally:
        drv.quit()


HEAT_ALPHA_JS = """
const c = document.querySelector('[data-probe="' + arguments[0] + '"] canvas.heat');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
return arguments[1].map(([x, y]) => d[4 * (y * c.width + x) + 3]);
"""
CENTERS = [[int(x0 + x1) // 2, int(y0 + y1) // 2] for x0, y0, x1, y1 in GRID_CELLS]


def heat_alpha(drv, probe: int) -> np.ndarray:
    """The heat layer's opacity at the centre of each of the 36 cells of a probe's image."""
    return np.asarray(drv.execute_script(HEAT_ALPHA_JS, probe, CENTERS), dtype=np.float64)


VEIL, HEAT = 0.3, 0.5  # docs/explore.md: opacity = VEIL + HEAT * sqrt(attention of the token)


def assert_draws(alpha: np.ndarray, mass: np.ndarray) -> None:
    """The heat layer's opacity at each cell is the documented absolute encoding of the attention
    the cell's token gets, within the page's uint8 rows (half a step of the image's largest weight)
    and the 8-bit alpha."""
    m = np.asarray(mass, dtype=np.float64)
    half_step = m.max() / 510
    lo, hi = np.sqrt(np.clip(m - half_step, 0, 1)), np.sqrt(np.clip(m + half_step, 0, 1))
    expected = 255 * (VEIL + HEAT * np.sqrt(np.clip(m, 0, 1)))
    tolerance = 255 * HEAT * (hi - lo) + 1.0
    assert (np.abs(alpha - expected) <= tolerance).all(), (alpha, expected, tolerance)
    if m.max() > 0.05:  # a pattern to see: the brightest cell is the one that gets the most
        assert int(np.argmax(alpha)) == int(np.argmax(m))


def test_explorer_in_chromium(toy_engine, explored, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from corehead import load_probes

    eng, drv = toy_engine, browser
    ranking = HeadRanking.load(explored / "heads.json")
    probes = load_probes(explored / "probes" / "probes.jsonl")
    drv.get((explored / "report.html").resolve().as_uri())
    WebDriverWait(drv, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    body = drv.find_element(By.TAG_NAME, "body")

    cells = drv.find_elements(By.CSS_SELECTOR, "#ram-grid td.cell")
    assert len(cells) == 48
    core = {(int(c.get_attribute("data-layer")), int(c.get_attribute("data-head")))
            for c in drv.find_elements(By.CSS_SELECTOR, "#ram-grid td.cell.core")}
    assert core == set(ranking.top(0.05))
    best = ranking.order()[0]
    assert body.get_attribute("data-head") == f"{best[0]},{best[1]}"  # opens on the top head
    before = heat_alpha(drv, 0)

    def mass_on_image(probe, layer, head, position=None):
        full = probe.prompt + probe.answer
        n = len(eng.multimodal_tokens(full, [probe.image]))
        row = eng.attention(full, images=[probe.image], positions=[n - 2 if position is None else position],
                            layers=[layer])[0, head, 0]
        return row[1:37]  # the 36 visual tokens

    assert_draws(before, mass_on_image(probes[0], *best))

    # Click another head: the overlay redraws to that head's attention.
    layer, head = ranking.order()[9]
    drv.find_element(By.CSS_SELECTOR, f'#ram-grid td.cell[data-layer="{layer}"][data-head="{head}"]').click()
    canvas = drv.find_element(By.CSS_SELECTOR, '[data-probe="0"] canvas.heat')
    assert body.get_attribute("data-head") == canvas.get_attribute("data-head") == f"{layer},{head}"
    assert "selected" in drv.find_element(
        By.CSS_SELECTOR, f'#ram-grid td.cell[data-layer="{layer}"][data-head="{head}"]').get_attribute("class")
    clicked = heat_alpha(drv, 0)
    assert np.abs(clicked - before).max() > 10
    for i in (0, 3):
        assert_draws(heat_alpha(drv, i), mass_on_image(probes[i], layer, head))
        # The probe's RAM as the page computes it (dequantized rows x relevance), against the
        # reduction on the graph that `corehead rank` uses.
        shown = float(drv.find_element(By.CSS_SELECTOR, f'[data-probe="{i}"] .stats').get_attribute("data-ram"))
        assert shown == pytest.approx(score_probe(eng, probes[i]).ram[layer, head], abs=5e-3)
    assert drv.find_element(By.ID, "head-info").text.startswith(f"layer {layer}, head {head}: RAM")

    # Back to the top head, then hover the probe's "What": the view becomes that token's row.
    drv.find_element(By.CSS_SELECTOR, f'#ram-grid td.cell[data-layer="{best[0]}"][data-head="{best[1]}"]').click()
    assert canvas.get_attribute("data-query") == "answer"
    token = drv.find_element(By.CSS_SELECTOR, '[data-probe="0"] .tok.text[data-pos="38"]')
    assert token.text == "What"
    ActionChains(drv).move_to_element(token).perform()
    assert canvas.get_attribute("data-query") == "38"
    assert "query" in token.get_attribute("class")
    hovered = heat_alpha(drv, 0)
    assert_draws(hovered, mass_on_image(probes[0], *best, position=38))
    assert np.abs(hovered - before).max() > 10

    # The question's last token predicts the answer: hovering it shows the default view again.
    last = drv.find_elements(By.CSS_SELECTOR, '[data-probe="0"] .tok.text')[-2]
    ActionChains(drv).move_to_element(last).perform()
    n = len(eng.multimodal_tokens(probes[0].prompt + probes[0].answer, [probes[0].image]))
    assert canvas.get_attribute("data-query") == last.get_attribute("data-pos") == str(n - 2)
    np.testing.assert_array_equal(heat_alpha(drv, 0), before)

    # The ablation curve: the top-by-RAM line and the note for the selected head.
    assert drv.find_elements(By.CSS_SELECTOR, "#curve-svg polyline.top")
    assert "5%" in drv.find_element(By.ID, "curve-note").text  # the top head is in every top set

    shot = tmp_path / "explorer.png"
    drv.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if os.environ.get("COREHEAD_EXPLORER_SCREENSHOT"):  # how docs/explorer.png is made (docs/explore.md)
        shutil.copy(shot, os.environ["COREHEAD_EXPLORER_SCREENSHOT"])
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
