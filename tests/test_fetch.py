"""scadm fetch against a local HTTP server: the Hub, plain URLs and Google Drive stand-ins, never the network.

Requests to the real hosts (github.com, drive.google.com, ...) are routed to the local server by
rewriting their URL; the Hub is the local server through huggingface_hub's endpoint. Anything else
fails as if offline, so no test can reach the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from scadm import fetch as F

FIXTURE = Path(__file__).parent / "fixtures" / "released-tiny"
PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes, the stand-in parser file
HUB_PATH = "/vivym/face-parsing-bisenet/resolve/main/79999_iter.pth"
GITHUB_PATH = "/github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"
DRIVE_ID = "154JgKpzCPW82qINcVieuPH3fZ2e0P812"

CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="https://drive.usercontent.google.com/download" method="get"><input type="hidden" name="id" value="{id}"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="1234"></form>
</body></html>"""


class FakeNet:
    """The local server: a route table of path -> (body, options), and a log of what was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, dict] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.offline = False
        net = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                parts = urllib.parse.urlsplit(self.path)
                net.log.append((self.command, self.path, self.headers.get("Range")))
                route = net.routes.get(parts.path)
                if route is None and parts.path.startswith("/drive.google.com/uc"):
                    route = {"body": CONFIRM_PAGE.format(id=urllib.parse.parse_qs(parts.query)["id"][0]).encode(),
                             "type": "text/html; charset=utf-8"}
                if route is None and parts.path.startswith("/drive.usercontent.google.com/download"):
                    route = net.routes.get("drive:" + urllib.parse.parse_qs(parts.query)["id"][0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, start = route["body"], 0
                rng = self.headers.get("Range")
                if rng and route.get("ranges", True):
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", route.get("type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
                self.send_header("X-Repo-Commit", "a" * 40)
                if route.get("attachment"):
                    self.send_header("Content-Disposition", f'attachment; filename="{route["attachment"]}"')
                self.end_headers()
                if head:
                    return
                cut = route.pop("cut_once", None)  # send only this many bytes, then drop the connection
                if cut is not None and not rng:
                    self.wfile.write(body[start:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def asked(self, path: str) -> int:
        return sum(1 for _, p, _ in self.log if urllib.parse.urlsplit(p).path == path)


@pytest.fixture
def net(tmp_path, monkeypatch):
    """A fresh server and cache; requests to other hosts are routed to it (or fail when offline)."""
    fake = FakeNet()
    monkeypatch.setenv("SCADM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{fake.port}")
    original = requests.Session.request

    def routed(self, method, url, *args, **kwargs):
        parts = urllib.parse.urlsplit(url)
        if fake.offline:
            raise requests.ConnectionError(f"NameResolutionError: Failed to resolve '{parts.hostname}'")
        if parts.hostname not in ("127.0.0.1", "localhost"):
            url = f"http://127.0.0.1:{fake.port}/{parts.hostname}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", routed)
    monkeypatch.setitem(F.ASSETS, "parser", dataclasses.replace(
        F.ASSETS["parser"], size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest()))
    yield fake
    fake.server.shutdown()


def lines():
    said: list[str] = []
    return said, said.append


def test_a_verified_download_from_the_hub_is_ready_and_reused(net):
    net.routes[HUB_PATH] = {"body": PAYLOAD}
    said, printer = lines()
    path = F.fetch("parser", printer=printer, progress=False)
    assert path == F.home() / "parser" / "79999_iter.pth" and path.read_bytes() == PAYLOAD
    assert any("downloaded from Hugging Face Hub vivym/face-parsing-bisenet" in s and "verified" in s for s in said)
    assert F.resolve("parser") == path and F.fetched() == {"parser": path}
    assert not (F.home() / "parser" / ".download").exists()
    gets = net.asked(HUB_PATH)
    again, printer = lines()
    assert F.fetch("parser", printer=printer) == path and "already fetched" in again[0]
    assert net.asked(HUB_PATH) == gets  # the cache: nothing asked the second time


def test_a_wrong_hash_everywhere_is_one_error_and_leaves_nothing(net):
    wrong = PAYLOAD[::-1]
    net.routes[HUB_PATH] = {"body": wrong}
    net.routes["/huggingface.co/bes-dev/face_parsing/resolve/main/79999_iter.pth"] = {"body": wrong}
    net.routes["/bes-dev/face_parsing/resolve/main/79999_iter.pth"] = {"body": wrong}
    net.routes[GITHUB_PATH] = {"body": wrong}
    net.routes["drive:" + DRIVE_ID] = {"body": wrong, "attachment": "79999_iter.pth"}
    said, printer = lines()
    with pytest.raises(F.FetchError, match="no source worked .*Download it by hand"):
        F.fetch("parser", printer=printer, progress=False)
    assert sum("sha256" in s and "expected" in s and "deleted" in s for s in said) == 4
    assert F.resolve("parser") is None
    leftovers = [p for p in (F.home() / "parser").rglob("*") if p.is_file()]
    assert leftovers == []  # nothing a later command could take as valid


def test_an_html_page_is_refused_and_the_next_source_is_used(net):
    net.routes[HUB_PATH] = {"body": b"<!DOCTYPE html><html><body>Quota exceeded</body></html>", "type": "text/html"}
    net.routes[GITHUB_PATH] = {"body": PAYLOAD}
    said, printer = lines()
    path = F.fetch("parser", printer=printer, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert any("HTML page" in s for s in said)
    assert any("bes-dev" in s and "failed" in s for s in said)  # not served: 404, the next one
    assert any(s.startswith("parser: downloaded from https://github.com/xinntao/facexlib") for s in said)


def test_a_truncated_transfer_resumes_where_it_stopped(net, monkeypatch):
    monkeypatch.setitem(F.ASSETS, "parser", dataclasses.replace(F.ASSETS["parser"], sources=(
        F.Source("url", "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"),)))
    big = PAYLOAD * 30  # 3 MB, cut after 2.5 MB: gdown has written its whole 512 KiB chunks by then
    monkeypatch.setitem(F.ASSETS, "parser", dataclasses.replace(F.ASSETS["parser"], size=len(big),
                                                                 sha256=hashlib.sha256(big).hexdigest()))
    net.routes[GITHUB_PATH] = {"body": big, "cut_once": 2_500_000}
    with pytest.raises(F.FetchError, match="no source worked"):
        F.fetch("parser", printer=lambda s: None, progress=False)
    partial = list((F.home() / "parser" / ".download").glob("*.part"))
    assert len(partial) == 1 and F.resolve("parser") is None
    kept = partial[0].stat().st_size
    assert 0 < kept <= 2_500_000
    path = F.fetch("parser", printer=lambda s: None, progress=False)
    assert path.read_bytes() == big
    assert ("GET", GITHUB_PATH, f"bytes={kept}-") in net.log  # continued, not started again


def test_google_drive_through_its_confirmation_page(net, monkeypatch):
    monkeypatch.setitem(F.ASSETS, "parser", dataclasses.replace(F.ASSETS["parser"], sources=(
        F.Source("drive", DRIVE_ID),)))
    net.routes["drive:" + DRIVE_ID] = {"body": PAYLOAD, "attachment": "79999_iter.pth"}
    said, printer = lines()
    assert F.fetch("parser", printer=printer, progress=False).read_bytes() == PAYLOAD
    assert net.asked("/drive.google.com/uc") >= 1 and net.asked("/drive.usercontent.google.com/download") >= 1
    assert any(f"Google Drive file {DRIVE_ID}" in s for s in said)


def test_offline_every_name_gives_its_one_line_quickly(net, run_cli, monkeypatch):
    net.offline = True
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    for name in ("parser", "sca-dm", "vq-f4"):
        start = time.monotonic()
        r = run_cli("fetch", name)
        assert r.code == 1 and r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
        assert f"save it as {F.home() / name / '.download'}" in r.err and "scadm fetch " + name in r.err
        assert time.monotonic() - start < 30
    r = run_cli("fetch", "celebamask-hq")
    assert r.code == 1 and "non-commercial" in r.err and "--accept-terms" in r.err
    r = run_cli("fetch", "--list")
    assert r.code == 0 and "parser" in r.out and "celebamask-hq" in r.out


def test_sca_dm_is_converted_on_arrival_and_the_name_resolves(net, monkeypatch, run_cli):
    import json

    from scadm import checks
    from scadm.pipeline import SCADMPipeline

    ckpt = (FIXTURE / "released.ckpt").read_bytes()
    net.routes["drive:1dZ4XQv8i3T2vtHnCuSsKXelz__pvUhdj"] = {"body": ckpt, "attachment": "epoch=000235.ckpt"}
    monkeypatch.setattr(F, "CONVERT_CONFIG", str(FIXTURE / "config.yaml"))  # the fixture is a reduced-width network
    with pytest.raises(FileNotFoundError, match="not fetched yet: run `scadm fetch sca-dm`"):
        checks.model_folder("sca-dm")
    r = run_cli("fetch", "sca-dm")
    assert r.code == 0, r.err
    folder = F.home() / "sca-dm" / "model"
    report = json.loads((folder / "convert-report.json").read_text())
    assert report["checkpoint_sha256"] == hashlib.sha256(ckpt).hexdigest() and report["checkpoint_sha256"] in r.out
    assert checks.model_folder("sca-dm") == folder
    pipe = SCADMPipeline.from_pretrained("sca-dm", device="cpu")
    assert pipe.model_folder == folder
    info = run_cli("info", "--model", "sca-dm", "--json")
    assert json.loads(info.out)["fetched"] == {"sca-dm": str(folder)}


def test_a_file_that_is_not_the_checkpoint_is_deleted(net, monkeypatch):
    net.routes["drive:1dZ4XQv8i3T2vtHnCuSsKXelz__pvUhdj"] = {"body": PAYLOAD, "attachment": "x.ckpt"}
    with pytest.raises(F.FetchError, match="not the authors' checkpoint"):
        F.fetch("sca-dm", printer=lambda s: None, progress=False)
    assert F.resolve("sca-dm") is None and not list((F.home() / "sca-dm").rglob("*.ckpt"))


def test_the_fetched_parser_is_the_default_for_photo_models_only(net, tmp_path):
    from scadm.photos import FETCHED_PARSER, resolve_parser

    net.routes[HUB_PATH] = {"body": PAYLOAD}
    path = F.fetch("parser", printer=lambda s: None, progress=False)
    photo = tmp_path / "photo-model"
    photo.mkdir()
    (photo / "config.json").write_text('{"name": "p", "domain": "CelebA-HQ face photos"}')
    assert resolve_parser(None, photo) == (path, FETCHED_PARSER)
    from scadm.pipeline import default_model_folder

    assert resolve_parser(None, default_model_folder()) is None  # the bundled model knows synthetic faces only


def test_vq_f4_is_unpacked_and_converted(net, monkeypatch, tmp_path):
    import zipfile

    from test_convert import first_stage_checkpoint

    ckpt = first_stage_checkpoint(tmp_path / "model.ckpt")
    archive = tmp_path / "vq-f4.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ckpt, "vq-f4/model.ckpt")
    net.routes["/ommer-lab.com/files/latent-diffusion/vq-f4.zip"] = {"body": archive.read_bytes()}
    monkeypatch.setattr(F, "CONVERT_CONFIG", str(FIXTURE / "config.yaml"))
    path = F.fetch("vq-f4", printer=lambda s: None, progress=False)
    assert path == F.home() / "vq-f4" / "vqvae" and (path / "config.json").is_file()
    from scadm import checks

    assert checks.fetched("vq-f4", "--autoencoder") == path and checks.fetched("elsewhere", "--autoencoder") == Path("elsewhere")


def test_celebamask_hq_needs_its_terms_then_prepare_finds_it(net, run_cli, tmp_path):
    import io
    import zipfile

    from PIL import Image

    from scadm.data.synthetic import render_face

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(2):
            face = render_face(i, size=32)
            img = io.BytesIO()
            Image.fromarray(face.image).save(img, format="JPEG")
            zf.writestr(f"CelebAMask-HQ/CelebA-HQ-img/{i}.jpg", img.getvalue())
            for part, cls in (("skin", 1), ("hair", 13)):
                m = io.BytesIO()
                Image.fromarray(((face.label == cls) * 255).astype("uint8")).save(m, format="PNG")
                zf.writestr(f"CelebAMask-HQ/CelebAMask-HQ-mask-anno/0/{i:05d}_{part}.png", m.getvalue())
        zf.writestr("CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt", "2\nMale Smiling\n0.jpg 1 -1\n1.jpg -1 1\n")
    net.routes["drive:1badu11NqxGf6qM3PTTooQDJvQbejgbTv"] = {"body": buf.getvalue(), "attachment": "CelebAMask-HQ.zip"}
    with pytest.raises(F.FetchError, match="--accept-terms"):
        F.fetch("celebamask-hq", printer=lambda s: None)
    assert not (F.home() / "celebamask-hq").exists() and net.log == []
    path = F.fetch("celebamask-hq", accept_terms=True, printer=lambda s: None, progress=False)
    assert (path / "CelebA-HQ-img" / "0.jpg").is_file() and F.resolve("celebamask-hq") == path
    r = run_cli("prepare", "celebamask-hq", "celebamask-hq", str(tmp_path / "ds"), "--size", "32")
    assert r.code == 0, r.err
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 2


def test_only_the_fetch_module_opens_network_connections():
    src = Path(F.__file__).parent
    network = ("import requests", "urllib.request", "import httpx", "hf_hub_download", "snapshot_download",
               "import gdown", "http.client")
    offenders = [f"{p.relative_to(src)}: {word}" for p in src.rglob("*.py") if p.name != "fetch.py"
                 for word in network if word in p.read_text()]
    assert offenders == []
