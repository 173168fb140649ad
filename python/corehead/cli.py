"""The `corehead` command line: info, run, bench, rank, ablate, explore, serve, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import corehead
from corehead.engine import inspect


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def _table(title: str, rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def format_info(facts: dict) -> str:
    """The readable table `corehead info` prints."""
    parts = []
    m = facts.get("model")
    if m:
        rows = [
            ("file", m["path"]),
            ("architecture", m["arch"]),
            ("name", m["name"] or "-"),
            ("file type", m["file_type"]),
            ("layers", m["n_layer"]),
            ("attention heads", m["n_head"]),
            ("KV heads", m["n_head_kv"]),
            ("head size", m["head_dim"]),
            ("embedding size", m["n_embd"]),
            ("feed-forward size", m["n_ff"]),
            ("vocabulary", m["n_vocab"]),
            ("training context", m["n_ctx_train"]),
            ("tokenizer", f"{m['tokenizer'] or '-'} ({m['tokenizer_pre'] or 'default'}), {m['n_tokens']} tokens"),
            ("tensors", m["n_tensors"] if not m["vocab_only"] else "0 (vocabulary-only file)"),
            ("parameters", f"{m['n_params']:,}"),
            ("file size", _human_bytes(m["file_size"])),
        ]
        parts.append(_table("model", rows))
    v = facts.get("vision")
    if v:
        rows = [
            ("file", v["path"]),
            ("projector", v["projector"]),
            ("name", v["name"] or "-"),
            ("file type", v["file_type"]),
            ("image size", f"{v['image_size']} px, patch {v['patch_size']} px"),
            ("layers", v["n_layer"]),
            ("attention heads", v["n_head"]),
            ("embedding size", v["n_embd"]),
            ("output size", v["n_out"]),
            ("tensors", v["n_tensors"]),
            ("parameters", f"{v['n_params']:,}"),
            ("file size", _human_bytes(v["file_size"])),
        ]
        parts.append(_table("vision (mmproj)", rows))
    return "\n\n".join(parts)


def cmd_info(args: argparse.Namespace) -> int:
    if args.system:
        from corehead.system import format_system_info, system_info

        sysinfo = system_info()
        print(json.dumps(sysinfo, indent=2) if args.json else format_system_info(sysinfo))
        if not args.model and not args.mmproj:
            return 0
    facts = inspect(args.model, mmproj=args.mmproj)
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print(format_info(facts))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Generate from a prompt, streaming to the terminal."""
    if args.prompt is None:
        args.prompt = sys.stdin.read()
    sparse = _sparse_kwargs(args)  # CoRe-sparse KV cache (corehead.sparse)
    with corehead.Engine(args.model, mmproj=args.mmproj, n_threads=args.threads, n_ctx=args.ctx_size, **sparse) as eng:
        kwargs = dict(max_tokens=args.n_predict, temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                      min_p=args.min_p, repeat_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop or (),
                      stream=True, images=args.image or (), videos=args.video or (), fps=args.fps,
                      max_frames=args.max_frames)
        if args.image_marker:
            eng.image_marker = args.image_marker
        if args.chat:
            pieces = eng.chat([{"role": "user", "content": args.prompt}], **kwargs)
        else:
            pieces = eng.generate(args.prompt, **kwargs)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Time to first token, decode tokens/s and KV bytes held; with --core-heads, dense and
    CoRe-sparse side by side (each the median of --reps runs after one warm-up)."""
    from corehead.images import load_images
    from corehead.sparse import median_generation

    if args.reps < 1 or args.n_predict < 2:
        raise ValueError("bench needs --reps >= 1 and --n-predict >= 2 (decode speed needs two tokens)")
    images = load_images(args.image or ())
    prompt = args.prompt if args.prompt is not None else "Describe what you see in detail."
    modes = [("dense", {})]
    if args.core_heads:
        modes.append(("sparse", _sparse_kwargs(args)))
    rows = []
    for name, extra in modes:
        with corehead.Engine(args.model, mmproj=args.mmproj, n_threads=args.threads, n_ctx=args.ctx_size,
                             **extra) as eng:
            row = median_generation(eng, prompt, images, args.n_predict, args.reps)
            row["mode"] = name
            rows.append(row)
    print(f"{'mode':8} {'ttft s':>8} {'decode tok/s':>13} {'KV held':>11} {'speed-up':>9}")
    for r in rows:
        speedup = r["decode_tok_s"] / rows[0]["decode_tok_s"]
        print(f"{r['mode']:8} {r['ttft_s']:8.3f} {r['decode_tok_s']:13.1f} {_human_bytes(int(r['kv_bytes'])):>11} "
              f"{speedup:8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    """Rank heads by RAM over a probe file; save the ranking, print the top heads."""
    from corehead.probes import load_probes
    from corehead.ram import rank_heads

    probes = load_probes(args.probes)
    with corehead.Engine(args.model, mmproj=args.mmproj, n_threads=args.threads, n_ctx=args.ctx_size) as eng:
        ranking = rank_heads(eng, probes, query=args.query, only_correct=args.only_correct, progress=True,
                             score=args.score)
    ranking.save(args.output)
    print(f"{args.score} over {ranking.n_probes} probes (query={args.query}); saved {args.output}")
    print(ranking.table(args.top))
    top = ranking.top(0.05)
    print(f"CoRe heads (top 5%, {len(top)} of {ranking.ram.size}): {', '.join(f'L{a}H{b}' for a, b in top)}")
    if args.plot:
        ranking.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Agreement of head rankings (corehead.compare): top-k Jaccard, Spearman, Kendall, bootstrap CIs."""
    from corehead.agreement import compare
    from corehead.ram import HeadRanking

    if len(args.rankings) < 2:
        raise ValueError("corehead compare needs at least two ranking files")
    rankings = []
    for path in args.rankings:
        if not Path(path).exists():
            raise FileNotFoundError(f"ranking file not found: {path}")
        r = HeadRanking.load(path)
        rankings.append(r.by(args.score) if args.score else r)
    names = args.names.split(",") if args.names else [Path(p).stem for p in args.rankings]
    report = compare(rankings, names=names, n_boot=args.boot, seed=args.seed,
                     pairs="all" if args.all_pairs else "reference")
    print(report.table())
    if args.json:
        report.save(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        report.plot(args.plot, rankings)
        print(f"wrote {args.plot}")
    return 0


def _load_heads(path: str):
    """A HeadRanking file (from `corehead rank`) or a JSON list of [layer, head] pairs."""
    from corehead.ram import HeadRanking

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"heads file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if isinstance(data, dict):
        return HeadRanking.load(path)
    if isinstance(data, list) and all(isinstance(h, list) and len(h) == 2 for h in data):
        return [tuple(h) for h in data]
    raise ValueError(f"{path}: expected a HeadRanking file (corehead rank -o) or a list of [layer, head] pairs")


def cmd_ablate(args: argparse.Namespace) -> int:
    """Ablation curve (a ranking file) or one ablation (a list of heads) over a probe file."""
    from corehead.probes import load_probes
    from corehead.ram import HeadRanking

    probes = load_probes(args.probes)
    heads = _load_heads(args.heads)
    with corehead.Engine(args.model, mmproj=args.mmproj, n_threads=args.threads, n_ctx=args.ctx_size) as eng:
        if isinstance(heads, HeadRanking):
            curve = eng.ablation_curve(heads, probes, fractions=args.fractions, baselines=args.baselines,
                                       seeds=args.seeds, method=args.method, metric=args.metric, progress=True,
                                       queries=args.queries)
            print(curve.table())
            if args.json:
                curve.save(args.json)
                print(f"wrote {args.json}")
            if args.plot:
                curve.plot(args.plot)
                print(f"wrote {args.plot}")
            return 0
        metric = args.metric or ("choice" if all(p.choices for p in probes) else "exact")
        base = eng.evaluate(probes, metric=metric)
        with eng.ablated(heads, method=args.method, reference=probes if args.method == "mean" else None,
                         queries=args.queries):
            ablated = eng.evaluate(probes, metric=metric)
    print(f"unablated: {base}")
    print(f"ablated {len(heads)} heads ({args.method}): {ablated}")
    print(f"drop: {100 * (base.accuracy - ablated.accuracy):.1f} points")
    if args.json:
        Path(args.json).write_text(json.dumps({"heads": [list(h) for h in heads], "method": args.method,
                                               "unablated": base.to_dict(), "ablated": ablated.to_dict()}, indent=1))
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    """One self-contained HTML page: the RAM grid, each head's attention over the probes' images."""
    from corehead.explore import build_report
    from corehead.probes import load_probes
    from corehead.ram import HeadRanking

    heads = _load_heads(args.heads)
    if not isinstance(heads, HeadRanking):
        raise ValueError(f"{args.heads}: explore needs a head ranking (corehead rank -o heads.json), not a head list")
    probes = load_probes(args.probes)
    with corehead.Engine(args.model, mmproj=args.mmproj, n_threads=args.threads, n_ctx=args.ctx_size) as eng:
        if args.image_marker:
            eng.image_marker = args.image_marker
        out = build_report(eng, heads, probes, args.output, curve=args.curve, max_probes=args.max_probes,
                           max_heads=args.max_heads, max_side=args.max_side, title=args.title, progress=True,
                           max_mb=args.max_mb)
    print(f"wrote {out['path']} ({_human_bytes(out['bytes'])}): {out['probes']} probes, attention of "
          f"{out['heads']} of {out['n_heads']} heads")
    return 0


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"fractions must be comma-separated numbers, got {text!r}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """The OpenAI-compatible server (corehead.serve) until Ctrl-C."""
    from corehead.serve import serve

    if args.parallel < 1 or args.max_queue < 0:
        raise ValueError("serve needs --parallel >= 1 and --max-queue >= 0")
    threads = args.threads
    if threads is None and args.parallel > 1:  # share the cores between the engines
        import os

        threads = max(1, (os.cpu_count() or 1) // args.parallel)
    sparse = _sparse_kwargs(args)
    sparse.pop("core_heads", None)
    serve(host=args.host, port=args.port, log_level=args.log_level, model=args.model, mmproj=args.mmproj,
          parallel=args.parallel, max_queue=args.max_queue, n_ctx=args.ctx_size, n_threads=threads,
          core_heads=args.core_heads, model_id=args.alias, chat_template=args.chat_template,
          api_key=args.api_key, **sparse)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The paper's finding on the embedded toy VLM (see corehead.demo)."""
    from corehead import demo

    demo.run(args.out, threads=args.threads, progress=not args.no_progress)
    return 0


_HF_HELP = "a GGUF repo of the Hugging Face Hub (and quant, default Q4_K_M), like llama.cpp"


def _model_command(sub, name: str, help: str, func) -> argparse.ArgumentParser:
    """A subcommand that loads a model: -m / -hf / --mmproj, -t / -c."""
    cmd = sub.add_parser(name, help=help)
    cmd.add_argument("-m", "--model", help="language-model GGUF (or -hf)")
    cmd.add_argument("-hf", "--hf-repo", metavar="REPO[:QUANT]", help=_HF_HELP)
    cmd.add_argument("--mmproj", help="vision projector GGUF")
    cmd.add_argument("-t", "--threads", type=int, default=None)
    cmd.add_argument("-c", "--ctx-size", type=int, default=4096)
    cmd.set_defaults(func=func)
    return cmd


def _sparse_args(cmd: argparse.ArgumentParser, core_help: str) -> None:
    cmd.add_argument("--core-heads", metavar="HEADS_JSON", help=core_help)
    cmd.add_argument("--core-fraction", type=float, default=0.05, help="with a ranking file: top fraction (0.05)")
    cmd.add_argument("--visual-budget", type=int, default=0,
                     help="with --core-heads: visual tokens per image the other heads keep (default 0)")
    cmd.add_argument("--visual-keep", choices=["snapkv", "first", "last"], default="snapkv",
                     help="how those visual-budget tokens are picked: SnapKV (default), or the first / last "
                          "of each image")


def _sparse_kwargs(args) -> dict:
    """Engine keyword arguments of the CoRe-sparse options ({} without --core-heads)."""
    if not args.core_heads:
        return {}
    return dict(core_heads=args.core_heads, visual_budget=args.visual_budget, core_fraction=args.core_fraction,
                visual_keep=args.visual_keep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corehead", description="Observe and steer the attention heads of GGUF (multimodal) LLMs.")
    p.add_argument("--version", action="version", version=f"corehead {corehead.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="validate a GGUF model (and mmproj) and print its facts")
    info.add_argument("model", nargs="?", help="language-model GGUF")
    info.add_argument("--mmproj", help="vision projector GGUF")
    info.add_argument("-hf", "--hf-repo", metavar="REPO[:QUANT]", help=_HF_HELP)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--system", action="store_true",
                      help="print how corehead was built (native / portable), the CPU variant ggml picked, devices")
    info.set_defaults(func=cmd_info)

    run = _model_command(sub, "run", "generate text from a prompt (streams to the terminal)", cmd_run)
    run.add_argument("-p", "--prompt", help="the prompt (read from stdin when omitted)")
    run.add_argument("--image", action="append", metavar="IMG",
                     help="image file (repeatable; needs --mmproj); goes where the prompt has <__media__>, "
                          "else before the text")
    run.add_argument("--image-marker", default=None, help="the image marker in the prompt (default <__media__>)")
    run.add_argument("--video", action="append", metavar="VIDEO",
                     help="video file (repeatable; needs --mmproj and pip install 'corehead[video]'); goes where the "
                          "prompt has <__video__>, else after the images, before the text (Qwen2-VL, Qwen2.5-VL, "
                          "Qwen3-VL)")
    run.add_argument("--fps", type=float, default=None, help="frames sampled per second of video (default 2)")
    run.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video (default 768)")
    run.add_argument("-n", "--n-predict", type=int, default=128, help="tokens to generate (default 128)")
    run.add_argument("--temp", type=float, default=0.0, help="temperature; 0 = greedy (default)")
    run.add_argument("--top-k", type=int, default=0)
    run.add_argument("--top-p", type=float, default=1.0)
    run.add_argument("--min-p", type=float, default=0.0)
    run.add_argument("--repeat-penalty", type=float, default=1.0)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--stop", action="append", help="stop string (repeatable)")
    run.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    _sparse_args(run, "CoRe-sparse KV cache: only these heads keep the visual tokens (a `corehead rank` output: "
                      "its top --core-fraction; or a head-set file)")

    bench = _model_command(sub, "bench", "time to first token, decode speed and KV memory (dense vs CoRe-sparse)",
                           cmd_bench)
    bench.add_argument("--image", action="append", metavar="IMG", help="an image (repeat for several, e.g. frames)")
    bench.add_argument("-p", "--prompt", help="the prompt (default: a short request; images go first)")
    bench.add_argument("-n", "--n-predict", type=int, default=128, help="tokens generated per run (default 128)")
    bench.add_argument("--reps", type=int, default=3, help="timed runs per mode (default 3, median)")
    _sparse_args(bench, "also run the CoRe-sparse KV cache with these heads (as in `corehead run`)")
    bench.add_argument("--json", help="write the results (JSON)")

    rank = _model_command(sub, "rank", "rank attention heads by Retrieval Attention Mass over probes", cmd_rank)
    rank.add_argument("--probes", required=True, help="probes JSONL: image, question, answer, bbox")
    rank.add_argument("-o", "--output", default="heads.json", help="where to save the ranking (JSON)")
    rank.add_argument("--plot", help="also write a layer x head heatmap (PNG)")
    rank.add_argument("--query", choices=["answer", "last"], default="answer",
                      help="query positions: those predicting the answer (default) or the last prompt position")
    rank.add_argument("--only-correct", action="store_true", help="average only over correctly answered probes")
    rank.add_argument("--top", type=int, default=10, help="rows of the printed table")
    rank.add_argument("--score", choices=["ram", "visual", "retrieval"], default="ram",
                      help="the score that orders the heads (all three are saved): RAM (default), SparseMM's "
                           "visual-head hit score, or the retrieval-head copy score")

    cmp = sub.add_parser("compare", help="agreement of head rankings: top-k Jaccard, Spearman, Kendall with "
                                         "bootstrap CIs over probes")
    cmp.add_argument("rankings", nargs="+",
                     help="HeadRanking JSON files (corehead rank -o); the first is the reference")
    cmp.add_argument("--names", help="comma-separated labels (default: the file names)")
    cmp.add_argument("--score", help="compare by this score of every file (ram, visual, retrieval, ...); "
                                     "default: each file's own")
    cmp.add_argument("--boot", type=int, default=1000, help="bootstrap resamples over probes (default 1000; 0: none)")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--all-pairs", action="store_true", help="every pair, not only each against the first")
    cmp.add_argument("--plot", help="write bars + score scatter plots (PNG)")
    cmp.add_argument("--json", help="write the statistics (JSON)")
    cmp.set_defaults(func=cmd_compare)

    ablate = _model_command(sub, "ablate", "ablation curve: accuracy with the top / bottom / random heads ablated",
                            cmd_ablate)
    ablate.add_argument("--probes", required=True, help="probes JSONL: image, question, answer, bbox (, choices)")
    ablate.add_argument("--heads", required=True,
                        help="a ranking from `corehead rank` (runs the curve) or a JSON list of [layer, head] pairs "
                             "(ablates exactly those)")
    ablate.add_argument("--fractions", type=_fractions, default=[0.01, 0.02, 0.05, 0.1, 0.2],
                        help="fractions of all heads to ablate (default 0.01,0.02,0.05,0.1,0.2)")
    ablate.add_argument("--baselines", type=lambda t: t.split(","), default=["top", "bottom", "random"],
                        help="which head sets: top,bottom,random,layer_random (default top,bottom,random; "
                             "layer_random: as many random heads per layer as the top set has there)")
    ablate.add_argument("--seeds", type=int, default=5, help="random head sets per fraction (default 5)")
    ablate.add_argument("--method", choices=["zero", "mean", "knockout"], default="zero")
    ablate.add_argument("--queries", choices=["after", "all"], default="after",
                        help="knockout: block the visual tokens for the queries after the image (default, as in the "
                             "information-flow literature) or for every query, image tokens included")
    ablate.add_argument("--metric", choices=["exact", "contains", "choice"], default=None,
                        help="default: choice when every probe has choices, else exact")
    ablate.add_argument("--plot", help="write the curve (PNG)")
    ablate.add_argument("--json", help="write the results (JSON)")

    explore = _model_command(sub, "explore", "one self-contained HTML page: the RAM grid; click a head to see its "
                             "attention over the probes' images (without -m the embedded toy VLM)", cmd_explore)
    explore.add_argument("heads", help="a head ranking from `corehead rank -o`")
    explore.add_argument("--probes", required=True, help="probes JSONL, as `corehead rank` reads them")
    explore.add_argument("-o", "--output", default="report.html", help="the HTML file to write (report.html)")
    explore.add_argument("--curve", help="an ablation curve from `corehead ablate --heads RANKING --json` to show")
    explore.add_argument("--max-probes", type=int, default=8, help="probes shown, the file's first (default 8)")
    explore.add_argument("--max-heads", type=int, default=64,
                         help="heads whose attention is stored, the best by RAM (default 64); the grid shows all")
    explore.add_argument("--max-mb", type=float, default=8.0,
                         help="at most this many MB of attention in the page: fewer heads when it would be more (8)")
    explore.add_argument("--max-side", type=int, default=320, help="images are shrunk to this many pixels a side")
    explore.add_argument("--image-marker", default=None, help="the image marker in the probes' prompts")
    explore.add_argument("--title", default=None, help="the page's title")

    srv = _model_command(sub, "serve", "an OpenAI-compatible HTTP server (chat/completions with images, SSE "
                              "streaming); without -m the embedded toy VLM", cmd_serve)
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    srv.add_argument("--parallel", type=int, default=1,
                     help="Engines serving requests side by side, each with its own copy of the model (default 1)")
    srv.add_argument("--max-queue", type=int, default=64,
                     help="requests that may wait while every Engine is busy; more get 503 (default 64)")
    srv.add_argument("--alias", default=None, help="the model name clients pass (default: the file's name)")
    srv.add_argument("--chat-template", default=None,
                     help="'chatml' or a jinja file, for model files without a chat template (default: the GGUF's)")
    srv.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on the API routes")
    srv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _sparse_args(srv, "serve on the CoRe-sparse KV cache with these heads (a `corehead rank` output: its top "
                      "--core-fraction; or a head-set file); requests may override it")

    demo = sub.add_parser("demo", help="run the main job on the embedded default model")
    demo.add_argument("--threads", type=int, default=None)
    demo.add_argument("--out", default="corehead-demo", help="output folder")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command == "info" and not args.model and not args.mmproj and not args.hf_repo and not args.system:
        parser.error("info needs a model path and/or --mmproj, or -hf REPO[:QUANT] (or --system)")
    if args.command in ("run", "bench", "rank", "ablate") and not args.model and not args.hf_repo:
        parser.error(f"{args.command} needs -m MODEL.gguf or -hf REPO[:QUANT]")
    try:
        if getattr(args, "hf_repo", None):  # download (or find in the cache) the repo's GGUF + mmproj
            from corehead import hub

            hub.apply_cli_args(args)
        return args.func(args)
    except (ValueError, FileNotFoundError, TypeError, RuntimeError, ImportError) as e:
        print(f"corehead: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("corehead: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
