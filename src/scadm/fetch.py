"""Known weight files and datasets, downloaded when asked: ``scadm fetch NAME``.

This is the only module of scadm that opens a network connection, and nothing calls it but
``scadm fetch`` (and :func:`fetch` in the API). Every name has pinned sources, tried in order:

* the Hugging Face Hub, through ``huggingface_hub`` (its resumable transfer, its timeouts, and
  the Hub's own redirects to its file servers);
* plain URLs and Google Drive, through ``gdown`` 6 (a resumable ``.part`` file continued with
  HTTP Range requests, Google Drive's "cannot scan for viruses" confirmation page, a timeout and
  retries). pooch was the other candidate; it has no resume, and these files run to gigabytes.

A file goes into one cache, ``$SCADM_HOME`` or else the platform's cache folder
(``~/.cache/scadm`` on Linux), under the name's folder. It is checked before it is used: its
size and sha256 where they are known, never an HTML page saved in its place; a file that fails
is deleted, so nothing is left that a later command would take as valid (a transfer cut short
keeps its partial file, and the next fetch continues it). What a name needs after the download
(conversion, unpacking) is done at once, and the result is moved into place atomically, so a
fetched name is ready: ``--model sca-dm`` resolves to the converted folder on every command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ASSETS", "Asset", "FetchError", "Source", "fetch", "fetched", "home", "resolve"]

HOME_ENV = "SCADM_HOME"
#: seconds to wait for a host to answer (connect) and for the next bytes of a transfer (read)
TIMEOUT = 20.0
#: Google Drive's download endpoint (gdown asks it, and follows its confirmation page)
DRIVE_URL = "https://drive.google.com/uc?id={id}"
#: the architecture ``sca-dm`` and ``vq-f4`` are converted as (the released model's)
CONVERT_CONFIG = "paper-256"


class FetchError(RuntimeError):
    """A name could not be fetched; the message is one line and says what to do."""


@dataclass(frozen=True)
class Source:
    """Where a file can be downloaded from: ``hub`` ("owner/repo/path/in/repo"), ``url`` or ``drive`` (a file id)."""

    kind: str
    ref: str

    @property
    def label(self) -> str:
        if self.kind == "hub":
            return f"Hugging Face Hub {self.ref}"
        if self.kind == "drive":
            return f"Google Drive file {self.ref}"
        return self.ref

    @property
    def url(self) -> str:
        """The address a person would open to download it by hand."""
        if self.kind == "hub":
            repo, path = _hub_parts(self.ref)
            return f"{_hub_endpoint()}/{repo}/resolve/main/{path}"
        if self.kind == "drive":
            return f"https://drive.google.com/file/d/{self.ref}/view"
        return self.ref


@dataclass(frozen=True)
class Asset:
    """A name ``scadm fetch`` knows: what it is, its file, how to check it, where it comes from."""

    name: str
    what: str
    filename: str
    size: int | None
    sha256: str | None
    sources: tuple[Source, ...]
    #: what the folder holds once fetched (relative to the name's folder): the path commands use
    ready: str
    #: licence terms a person must accept (``--accept-terms``) before the download
    terms: str | None = None
    #: how the file is checked when no hash is published
    checked_by: str = "sha256"


ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("parser", "face parser: BiSeNet trained on CelebAMask-HQ (face-parsing.PyTorch), for photos without a mask",
          "79999_iter.pth", 53_289_463, "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
          (Source("hub", "vivym/face-parsing-bisenet/79999_iter.pth"),
           Source("hub", "bes-dev/face_parsing/79999_iter.pth"),
           Source("url", "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"),
           Source("drive", "154JgKpzCPW82qINcVieuPH3fZ2e0P812")),
          ready="79999_iter.pth", terms="MIT licence (zllrunning/face-parsing.PyTorch)"),
    Asset("sca-dm", "the SCA-DM authors' model (CelebAMask-HQ, 256 px), converted to a scadm model folder",
          "sca-dm.ckpt", None, None, (Source("drive", "1dZ4XQv8i3T2vtHnCuSsKXelz__pvUhdj"),),
          ready="model", terms="as the authors publish it (ErgastiAlex/SCA-DM); trained on CelebAMask-HQ, "
                               "non-commercial research use",
          checked_by="the converter's checks of every key and shape; its sha256 is recorded in model/convert-report.json"),
    Asset("vq-f4", "LDM's VQ-f4 first stage (CompVis/latent-diffusion), converted to a diffusers VQModel folder",
          "vq-f4.zip", None, None, (Source("url", "https://ommer-lab.com/files/latent-diffusion/vq-f4.zip"),),
          ready="vqvae", terms="MIT licence (CompVis/latent-diffusion)",
          checked_by="the converter's checks of every key and shape"),
    Asset("celebamask-hq", "the CelebAMask-HQ dataset (30,000 faces, 19-class masks), raw release",
          "CelebAMask-HQ.zip", None, None, (Source("drive", "1badu11NqxGf6qM3PTTooQDJvQbejgbTv"),),
          ready="CelebAMask-HQ", terms="CelebAMask-HQ: non-commercial research and educational use only; the "
                                       "images may not be redistributed (github.com/switchablenorms/CelebAMask-HQ)",
          checked_by="its layout (CelebA-HQ-img/, CelebAMask-HQ-mask-anno/)"),
)}

#: the names that must be accepted before they are downloaded
NEEDS_TERMS = ("celebamask-hq",)


def home() -> Path:
    """The cache every name is fetched into: ``$SCADM_HOME``, else the platform's cache folder."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("scadm", appauthor=False))


def resolve(name: str) -> Path | None:
    """The ready path of a fetched name (a file or folder in the cache), or None when it is not fetched."""
    asset = ASSETS.get(name)
    if asset is None:
        return None
    path = home() / name / asset.ready
    done = path.is_file() if Path(asset.ready).suffix else (path / ".complete").is_file() or _is_model(path)
    return path if done else None


def fetched() -> dict[str, Path]:
    """Every name fetched so far, with its ready path."""
    return {n: p for n in ASSETS if (p := resolve(n)) is not None}


def _is_model(path: Path) -> bool:
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


def missing_line(name: str) -> str:
    """What a command says when it needs a name that is not fetched."""
    return f"{name!r} is not fetched yet: run `scadm fetch {name}` (it goes to {home() / name})"


# ---------------------------------------------------------------------------- fetching
def fetch(name: str, *, accept_terms: bool = False, printer: Callable[[str], Any] = print,
          progress: bool = True) -> Path:
    """Download, check and prepare `name`; returns its ready path. Already fetched: returns at once."""
    asset = ASSETS.get(name)
    if asset is None:
        raise FetchError(f"unknown name {name!r}: scadm fetches {', '.join(ASSETS)} (scadm fetch --list)")
    found = resolve(name)
    if found is not None:
        printer(f"{name}: already fetched, {found}")
        return found
    if name in NEEDS_TERMS and not accept_terms:
        raise FetchError(f"{name}: {asset.terms}. Read them, then run `scadm fetch {name} --accept-terms`")
    folder = home() / name
    folder.mkdir(parents=True, exist_ok=True)
    downloads = folder / ".download"
    failures = []
    for source in asset.sources:
        try:
            path = _download(source, asset, downloads, progress)
            digest = _check(path, asset)
        except _SourceFailed as exc:
            failures.append(f"{source.label}: {exc}")
            printer(f"{name}: {source.label} failed ({exc})")
            continue
        printer(f"{name}: downloaded from {source.label}" + (f", sha256 {digest} verified" if asset.sha256 else
                                                                f", sha256 {digest}"))
        ready = _prepare(asset, path, digest, folder, printer)
        shutil.rmtree(downloads, ignore_errors=True)
        printer(f"{name}: ready, {ready}")
        return ready
    first = asset.sources[0]
    raise FetchError(f"{name}: no source worked ({len(failures)} tried: {failures[-1]}). Download it by hand from {first.url}, save it "
                     f"as {folder / '.download' / asset.filename} and run `scadm fetch {name}` again (it is checked "
                     "and prepared the same way)")


class _SourceFailed(Exception):
    """One source did not deliver a good file (the next one is tried)."""


def _download(source: Source, asset: Asset, downloads: Path, progress: bool) -> Path:
    """The file from `source` in `downloads` (continued if a partial transfer is there)."""
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / asset.filename
    if target.is_file():  # put there by hand (it is checked like a download)
        return target
    _reachable(source.url)
    if source.kind == "hub":
        return _from_hub(source, asset, downloads, progress)
    url = DRIVE_URL.format(id=source.ref) if source.kind == "drive" else source.ref
    return _with_gdown(url, target, progress)


def _reachable(url: str) -> None:
    """Ask the host once, within TIMEOUT: offline, an unknown or a silent host fails here in one line, before a
    library's own retries."""
    import requests

    host = urllib.parse.urlparse(url).hostname
    try:
        requests.head(url, timeout=(TIMEOUT, TIMEOUT), allow_redirects=False)
    except requests.Timeout:
        raise _SourceFailed(f"{host} did not answer within {TIMEOUT:.0f} s") from None
    except requests.ConnectionError as exc:
        text = str(exc)
        why = ("offline, or the name is unknown" if "NameResolution" in text or "resolve" in text.lower()
               else "the connection was refused or dropped")
        raise _SourceFailed(f"cannot reach {host}: {why}") from None


def _hub_endpoint() -> str:
    """The Hub, or the mirror ``$HF_ENDPOINT`` names (read at each call, as huggingface_hub reads it at import)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _hub_parts(ref: str) -> tuple[str, str]:
    owner, repo, path = ref.split("/", 2)
    return f"{owner}/{repo}", path


def _from_hub(source: Source, asset: Asset, downloads: Path, progress: bool) -> Path:
    import httpx
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    repo, path = _hub_parts(source.ref)
    hub_dir = downloads / "hub"  # huggingface_hub keeps its partial file here, and continues it
    if not progress:
        disable_progress_bars()
    try:
        got = Path(hf_hub_download(repo, path, local_dir=hub_dir, endpoint=_hub_endpoint(), etag_timeout=TIMEOUT))
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx.HTTPError, OSError) as exc:
        raise _SourceFailed(_one_line(exc)) from None
    finally:
        if not progress:
            enable_progress_bars()
    target = downloads / asset.filename
    os.replace(got, target)
    shutil.rmtree(hub_dir, ignore_errors=True)
    return target


def _with_gdown(url: str, target: Path, progress: bool) -> Path:
    import gdown
    import requests
    from gdown.exceptions import DownloadError

    try:
        # no cookie file: nothing is written outside the cache (Drive's confirmation works within the session)
        gdown.download(url=url, output=str(target), quiet=not progress, resume=True, timeout=(TIMEOUT, TIMEOUT),
                       use_cookies=False)
    except (DownloadError, requests.RequestException, OSError) as exc:
        raise _SourceFailed(_one_line(exc)) from None
    if not target.is_file():
        raise _SourceFailed("the transfer ended without a file")
    return target


def _check(path: Path, asset: Asset) -> str:
    """sha256 of a downloaded file, after its size, hash and first bytes are checked; a bad file is deleted."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    problem = None
    if head.startswith((b"<!doctype html", b"<html")):
        problem = "it sent an HTML page, not the file (a sign-in, quota or error page)"
    elif asset.size is not None and size != asset.size:
        problem = f"{size:,} bytes, expected {asset.size:,} (a truncated or different file)"
    digest = _sha256(path) if problem is None else None
    if problem is None and asset.sha256 is not None and digest != asset.sha256:
        problem = f"sha256 {digest}, expected {asset.sha256} (a different file)"
    if problem is not None:
        path.unlink(missing_ok=True)
        raise _SourceFailed(problem + "; it was deleted")
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _prepare(asset: Asset, path: Path, digest: str, folder: Path, printer: Callable[[str], Any]) -> Path:
    """The downloaded file made ready in `folder` (moved, converted or unpacked), atomically."""
    from .tempfiles import temp_path

    final = folder / asset.ready
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    if asset.name == "parser":
        os.replace(path, final)
        return final
    if asset.name == "sca-dm":
        from .convert import convert_scadm

        printer("sca-dm: converting the checkpoint (every key and shape is checked)")
        try:
            report = convert_scadm(path, tmp, config=CONVERT_CONFIG)
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            path.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            raise FetchError(f"sca-dm: the downloaded file is not the authors' checkpoint ({_one_line(exc)}); it was "
                             "deleted") from None
        report_file = tmp / "convert-report.json"
        data = json.loads(report_file.read_text()) if report_file.is_file() else {}
        data["checkpoint_sha256"] = digest
        report_file.write_text(json.dumps(data, indent=2) + "\n")
        for line in report.lines():
            printer(line)
    elif asset.name == "vq-f4":
        from .convert import convert_vq

        unpacked = _unzip(path, folder / ".unpacked")
        ckpt = next(iter(sorted(unpacked.rglob("model.ckpt"))), None)
        if ckpt is None:
            raise FetchError(f"vq-f4: {path.name} holds no model.ckpt; delete {folder} and fetch again")
        convert_vq(ckpt, tmp, config=CONVERT_CONFIG)
        shutil.rmtree(unpacked, ignore_errors=True)
    else:  # celebamask-hq: the raw release, unpacked
        unpacked = _unzip(path, tmp.parent / (tmp.name + "-zip"))
        inner = next((p for p in unpacked.iterdir() if p.is_dir() and (p / "CelebA-HQ-img").is_dir()), unpacked)
        if not (inner / "CelebA-HQ-img").is_dir():
            shutil.rmtree(unpacked, ignore_errors=True)
            raise FetchError(f"celebamask-hq: {path.name} does not hold CelebA-HQ-img/; delete {folder} and fetch again")
        os.replace(inner, tmp)
        shutil.rmtree(unpacked, ignore_errors=True)
        (tmp / ".complete").write_text("")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    path.unlink(missing_ok=True)
    return final


def _unzip(path: Path, into: Path) -> Path:
    import zipfile

    shutil.rmtree(into, ignore_errors=True)
    try:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(into)
    except zipfile.BadZipFile:
        path.unlink(missing_ok=True)
        raise FetchError(f"{path.name} is not a zip archive (a damaged download); it was deleted, fetch again") from None
    return into


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def describe() -> list[dict[str, Any]]:
    """What ``scadm fetch --list`` shows: each name, what it is, size, sources, terms, and where it is if fetched."""
    rows = []
    for a in ASSETS.values():
        rows.append({"name": a.name, "what": a.what, "file": a.filename, "size": a.size, "sha256": a.sha256,
                     "checked_by": a.checked_by, "sources": [s.label for s in a.sources], "terms": a.terms,
                     "fetched": str(here) if (here := resolve(a.name)) else None})
    return rows
