"""GGUF models from the Hugging Face Hub (``Engine.from_pretrained``, the CLI's ``-hf``).

    eng = Engine.from_pretrained("ggml-org/SmolVLM-256M-Instruct-GGUF", quant="Q8_0")
    corehead run -hf ggml-org/SmolVLM-256M-Instruct-GGUF:Q8_0 --image cat.jpg -p "What is this?"

How the files are picked (like llama.cpp's ``-hf repo[:quant]``):

- the model: the repo's ``*.gguf`` files whose name does not contain ``mmproj``, and whose
  name holds the quantization name (``Q4_K_M``, ``Q8_0``, ``F16`` …; case-insensitive, as a
  whole token: ``Q4_K`` does not match ``Q4_K_M``). ``quant=None`` takes the first of
  :data:`AUTO_QUANTS` the repo has, or its only model file. ``filename=`` skips the search.
- the vision projector: the repo's GGUF named ``*mmproj*`` of the same quantization, else F16, BF16,
  Q8_0, F32, else the first one; None when the repo has none (a text model). ``mmproj=False``
  loads none; ``mmproj="name.gguf"`` takes that file of the repo.

Downloads go through ``huggingface_hub.hf_hub_download`` into the normal cache
(``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ~/.cache/huggingface/hub), so files are shared with
llama.cpp, transformers and the ``hf`` command. With ``HF_HUB_OFFLINE=1`` nothing goes to the
network: the repo's files are listed from the cached snapshot and must all be there. Both
variables are read at call time.

huggingface_hub is an optional dependency: ``pip install 'corehead[hub]'``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

#: ``quant=None`` takes the first of these the repo has (llama.cpp's default tag is Q4_K_M).
AUTO_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32")
#: Projector quantizations tried after the model's own.
MMPROJ_QUANTS = ("F16", "BF16", "Q8_0", "F32")
#: Quantization names recognised in file names (to pair a given model file with its mmproj).
KNOWN_QUANTS = ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q6_K_L", "Q5_K_M", "Q5_K_S", "Q5_K_L", "Q5_1", "Q5_0",
                "Q4_K_M", "Q4_K_S", "Q4_K_L", "Q4_1", "Q4_0", "Q3_K_XL", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K_L",
                "Q2_K", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS",
                "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ1_0", "TQ2_0", "MXFP4")

_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


class HubError(ValueError):
    """A repo, revision or file that cannot be resolved; the message says what to do."""


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError("Engine.from_pretrained and -hf need huggingface_hub: pip install 'corehead[hub]' "
                          "(or pip install huggingface_hub)") from None
    return huggingface_hub


def is_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/true/yes/on), read now."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def cache_dir() -> Path:
    """The Hub cache folder, from the environment as it is now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _check_repo_id(repo_id) -> str:
    if not isinstance(repo_id, str) or not re.fullmatch(r"[\w.\-]+/[\w.\-]+", repo_id):
        raise HubError(f"repo_id must look like 'org/name', got {repo_id!r}")
    return repo_id


def has_quant(filename: str, quant: str) -> bool:
    """Whether the file name holds `quant` as a whole token (``Q4_K`` is not in ``…-Q4_K_M.gguf``)."""
    name = PurePosixPath(filename).name
    pat = r"(?<![A-Za-z0-9])" + re.escape(quant) + r"(?![A-Za-z0-9])(?!_[A-Za-z0-9])"
    return re.search(pat, name, re.IGNORECASE) is not None


def quant_of(filename: str) -> str | None:
    """The quantization name in a GGUF file name, or None."""
    found = [q for q in KNOWN_QUANTS if has_quant(filename, q)]
    return max(found, key=len) if found else None


def is_mmproj(filename: str) -> bool:
    return "mmproj" in PurePosixPath(filename).name.lower()  # mmproj-*.gguf, or *-mmproj-f16.gguf


def _ggufs(files) -> tuple[list[str], list[str]]:
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    return [f for f in ggufs if not is_mmproj(f)], [f for f in ggufs if is_mmproj(f)]


def _quants(files) -> str:
    qs = sorted({quant_of(f) or PurePosixPath(f).name for f in files})
    return ", ".join(qs) if qs else "none"


def pick_model(repo_id: str, files, quant: str | None) -> str:
    """The model file of `files` (repo-relative paths) for `quant` (see the module docstring)."""
    models, _ = _ggufs(files)
    if not models:
        raise HubError(f"{repo_id} has no GGUF model file (files: {', '.join(sorted(files)[:20]) or 'none'}); "
                       "corehead reads GGUF: pick a '-GGUF' repo or convert the checkpoint (see the README)")
    if quant is None:
        for q in AUTO_QUANTS:
            if any(has_quant(f, q) for f in models):
                quant = q
                break
        else:
            if len({_SPLIT.sub(".gguf", f) for f in models}) == 1:
                return _single(repo_id, models)
            raise HubError(f"{repo_id} has several model files and none of {', '.join(AUTO_QUANTS)}: "
                           f"pass quant= or filename= (files: {', '.join(models)})")
    if not isinstance(quant, str) or not quant:
        raise HubError(f"quant must be a quantization name like 'Q4_K_M', got {quant!r}")
    hits = [f for f in models if has_quant(f, quant)]
    if not hits:
        raise HubError(f"{repo_id} has no {quant} model file; it has: {_quants(models)}. Pass quant= one of those "
                       f"(CLI: -hf {repo_id}:QUANT) or filename=")
    return _single(repo_id, hits)


def _single(repo_id: str, hits: list[str]) -> str:
    split = [f for f in hits if _SPLIT.search(f)]
    if split:
        raise HubError(f"{repo_id}: {PurePosixPath(split[0]).name} is split into several files; corehead loads "
                       "single-file GGUFs: merge them with llama.cpp's `llama-gguf-split --merge`, or pick another "
                       "quant")
    if len(hits) > 1:
        raise HubError(f"{repo_id} has several matching model files ({', '.join(hits)}): pass filename=")
    return hits[0]


def pick_mmproj(files, model_file: str) -> str | None:
    """The repo's projector for `model_file`: same quantization, else F16/BF16/Q8_0/F32, else the
    first; None when the repo has no mmproj file."""
    _, projs = _ggufs(files)
    if not projs:
        return None
    want = quant_of(model_file)
    for q in ((want,) if want else ()) + MMPROJ_QUANTS:
        hits = [f for f in projs if has_quant(f, q)]
        if hits:
            return hits[0]
    return projs[0]


def snapshot_files(repo_id: str, revision: str | None = None, cache: Path | None = None) -> list[str]:
    """Files of the cached snapshot of `repo_id` at `revision` (a branch, tag or commit), as
    huggingface_hub lays it out: models--org--name/refs/<revision> holds the commit hash and
    snapshots/<hash>/ the files (links into blobs/)."""
    cache = Path(cache) if cache is not None else cache_dir()
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    commit = rev
    ref = repo_dir / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
    elif not _HEX40.match(rev):
        raise HubError(f"{repo_id} (revision {rev}) is not in the Hugging Face cache {cache} and HF_HUB_OFFLINE is "
                       "set: download it once online (unset HF_HUB_OFFLINE, or `hf download "
                       f"{repo_id}`), or point HF_HUB_CACHE/HF_HOME at the cache that holds it")
    snap = repo_dir / "snapshots" / commit
    if not snap.is_dir():
        raise HubError(f"{repo_id}: the cache {cache} has no snapshot {commit} (revision {rev}); download it once "
                       "online or unset HF_HUB_OFFLINE")
    return sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file() or p.is_symlink())


def list_files(repo_id: str, revision: str | None = None, cache: Path | None = None) -> list[str]:
    """The repo's files: from the Hub, or from the cached snapshot when offline."""
    if is_offline():
        return snapshot_files(repo_id, revision, cache)
    hf = _hub()
    from huggingface_hub.utils import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return list(hf.HfApi().list_repo_files(repo_id, revision=revision))
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id} is not a model repo on the Hugging Face Hub (or it is private/gated: log in with "
                       "`hf auth login`)") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r}") from None
    except (HfHubHTTPError, OSError) as e:
        # No network: fall back to the cache, as hf_hub_download itself does.
        try:
            return snapshot_files(repo_id, revision, cache)
        except HubError:
            raise HubError(f"cannot list {repo_id} on the Hugging Face Hub ({e}) and it is not in the cache") from e


def download(repo_id: str, filename: str, revision: str | None = None, cache: Path | None = None) -> str:
    """Local path of one repo file (hf_hub_download into the cache; cache only when offline)."""
    hf = _hub()
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    cache = Path(cache) if cache is not None else cache_dir()
    try:
        return hf.hf_hub_download(repo_id, filename, revision=revision, cache_dir=str(cache),
                                  local_files_only=is_offline())
    except EntryNotFoundError:
        raise HubError(f"{repo_id} has no file {filename!r}") from None
    except LocalEntryNotFoundError:
        raise HubError(f"{repo_id}/{filename} is not in the Hugging Face cache {cache} and cannot be downloaded "
                       "(HF_HUB_OFFLINE is set or there is no network): download it once online") from None


def resolve(repo_id: str, filename: str | None = None, mmproj=None, revision: str | None = None,
            quant: str | None = "Q4_K_M", cache_dir: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """(model path, mmproj path or None) for a Hub repo, downloaded or found in the cache.

    filename: the model file in the repo (None: pick by `quant`). mmproj: None = the repo's
    projector paired with the model (if any), False = none, a str = that file of the repo.
    """
    _check_repo_id(repo_id)
    if revision is not None and not isinstance(revision, str):
        raise HubError(f"revision must be a str (branch, tag or commit), got {type(revision).__name__}")
    cache = Path(cache_dir) if cache_dir is not None else None
    files = None
    if filename is None or mmproj is None:
        files = list_files(repo_id, revision, cache)
    if filename is None:
        filename = pick_model(repo_id, files, quant)
    elif not isinstance(filename, str) or not filename.lower().endswith(".gguf"):
        raise HubError(f"filename must name a .gguf file of the repo, got {filename!r}")
    elif files is not None and filename not in files:
        raise HubError(f"{repo_id} has no file {filename!r}; its GGUF files: "
                       f"{', '.join(f for f in files if f.lower().endswith('.gguf')) or 'none'}")
    if mmproj is None:
        mmproj = pick_mmproj(files, filename)
    elif mmproj is False:
        mmproj = None
    elif not isinstance(mmproj, str):
        raise HubError(f"mmproj must be None (pair automatically), False (none) or a file name of the repo, "
                       f"got {type(mmproj).__name__}")
    model_path = download(repo_id, filename, revision, cache)
    mmproj_path = download(repo_id, mmproj, revision, cache) if mmproj else None
    return model_path, mmproj_path


def parse_hf_arg(text: str) -> tuple[str, str | None]:
    """``org/name[:QUANT]`` (the CLI's -hf) → (repo_id, quant or None)."""
    repo, _, quant = text.partition(":")
    return _check_repo_id(repo), (quant or None)


def apply_cli_args(args) -> None:
    """For ``-hf repo[:quant]``: resolve the files and fill in ``args.model`` / ``args.mmproj``
    (an explicit --mmproj wins)."""
    repo, quant = parse_hf_arg(args.hf_repo)
    if getattr(args, "model", None):
        raise HubError("pass either -m/--model or -hf, not both")
    want_mmproj = None if not getattr(args, "mmproj", None) else False
    model, mmproj = resolve(repo, quant=quant, mmproj=want_mmproj)
    args.model = model
    if mmproj is not None:
        args.mmproj = mmproj
