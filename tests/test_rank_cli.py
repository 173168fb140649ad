"""corehead rank (CLI) and the attention overlay, end to end on the llava fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from corehead import Engine, HeadRanking, Probe
from corehead.cli import main as cli_main
from corehead.plot import attention_overlay

DATA = Path(__file__).parent / "data" / "llava"


def write_probes(tmp_path: Path) -> Path:
    shutil.copy(DATA / "image.png", tmp_path / "img.png")
    prompt = json.loads((DATA / "meta.json").read_text())["prompt"]
    lines = [{"image": "img.png", "question": "", "prompt": prompt, "answer": " red", "bbox": b}
             for b in ([0, 0, 48, 32], [40, 20, 96, 64])]
    path = tmp_path / "probes.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_cli_rank_writes_ranking_and_plot(tmp_path, capsys):
    probes = write_probes(tmp_path)
    out, png = tmp_path / "heads.json", tmp_path / "ram.png"
    rc = cli_main(["rank", "-m", str(DATA / "model-f32.gguf"), "--mmproj", str(DATA / "mmproj-f32.gguf"),
                   "--probes", str(probes), "-o", str(out), "--plot", str(png), "--query", "last", "-t", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "CoRe heads (top 5%" in text and "rank  layer  head" in text
    ranking = HeadRanking.load(out)
    assert ranking.n_probes == 2 and ranking.ram.shape == (2, 4)
    assert ranking.params["query"] == "last"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The saved scores are what the Python API computes.
    with Engine(DATA / "model-f32.gguf", mmproj=DATA / "mmproj-f32.gguf", n_threads=2) as eng:
        from corehead import load_probes, rank_heads

        again = rank_heads(eng, load_probes(probes), query="last", progress=False)
    np.testing.assert_allclose(ranking.ram, again.ram, atol=1e-6)


def test_cli_rank_reports_a_bad_probe(tmp_path, capsys):
    probes = write_probes(tmp_path)
    lines = probes.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["bbox"] = [50, 50, 10, 10]  # inverted
    probes.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    rc = cli_main(["rank", "-m", str(DATA / "model-f32.gguf"), "--mmproj", str(DATA / "mmproj-f32.gguf"),
                   "--probes", str(probes), "-o", str(tmp_path / "h.json"), "--query", "last"])
    assert rc == 1
    assert "probe 1" in capsys.readouterr().err


def test_attention_overlay(tmp_path):
    prompt = json.loads((DATA / "meta.json").read_text())["prompt"]
    probe = Probe(image=str(DATA / "image.png"), question="", prompt=prompt, answer=" red", bbox=[0, 0, 48, 32])
    with Engine(DATA / "model-f32.gguf", mmproj=DATA / "mmproj-f32.gguf", n_threads=2) as eng:
        mass = attention_overlay(eng, probe, 1, 2, tmp_path / "overlay.png")
        full = eng.attention(prompt, images=[probe.image], positions=[-1], layers=[1])[0, 2, 0]
        vis = eng.visual_token_positions(prompt, [probe.image])
    np.testing.assert_allclose(mass, full[vis], atol=1e-6)
    assert (tmp_path / "overlay.png").read_bytes()[:4] == b"\x89PNG"
