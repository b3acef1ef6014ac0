"""cortexfit.ingest.dandi against a local DANDI API on 127.0.0.1 (offline).

The server (``http.server`` in a thread) answers the endpoints the resolver uses -- the dandiset, a version,
the paginated asset list with its ``path`` filter, an asset's metadata (``digest`` ``dandi:sha2-256``,
``contentSize``) and ``/assets/{id}/download/`` as a redirect to a blob that honours ``Range`` -- for one
dandiset holding a small NWB file made by :mod:`nwb_factory`. Knobs per test: a wrong digest, and a blob that
drops the connection after N bytes the first time it is asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from cortexfit import cli
from cortexfit.ingest import dandi
from nwb_factory import make_units_file

ROOT = Path(__file__).resolve().parents[1]
DANDISET, VERSION = "000999", "0.240101.1200"
ASSET = "sub-01/sub-01_ses-a_ecephys.nwb"
OTHER = ["sub-01/sub-01_ses-b_behavior+ecephys.nwb", "sub-02/sub-02_ses-a_ecephys.nwb", "dandiset.yaml"]


class Archive:
    """What the fake archive serves, and what it was asked."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self.sha256 = hashlib.sha256(blob).hexdigest()
        self.drop_after: int | None = None  # first blob request: close the connection after this many bytes
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.assets = {f"id-{i}": p for i, p in enumerate([ASSET, *OTHER])}


def _handler(archive: Archive):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            archive.requests.append((url.path, self.headers.get("Range")))
            base = f"/api/dandisets/{DANDISET}"
            if url.path == f"{base}/":
                return self._json({"identifier": DANDISET, "most_recent_published_version": {"version": VERSION},
                                   "draft_version": {"version": "draft"}})
            if url.path == f"{base}/versions/{VERSION}/":
                return self._json({"version": VERSION})
            if url.path == f"{base}/versions/{VERSION}/assets/":
                return self._assets(query)
            m = re.fullmatch(rf"{base}/versions/{VERSION}/assets/(id-\d+)/", url.path)
            if m and m[1] in archive.assets:
                return self._json({"identifier": m[1], "path": archive.assets[m[1]], "contentSize": len(archive.blob),
                                   "digest": {"dandi:dandi-etag": "x-1", "dandi:sha2-256": archive.sha256}})
            m = re.fullmatch(r"/api/assets/(id-\d+)/download/", url.path)
            if m:
                self.send_response(302)
                self.send_header("Location", f"/blobs/{m[1]}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if url.path == "/blobs/id-0":
                return self._blob()
            return self._json({"detail": "Not found."}, 404)

        def _assets(self, query):
            """Paginated, two per page (so the client must follow `next`); `path` filters by prefix."""
            paths = sorted(archive.assets.items(), key=lambda kv: kv[1])
            paths = [(i, p) for i, p in paths if p.startswith(query.get("path", ""))]
            page = int(query.get("page", 1))
            chunk = paths[(page - 1) * 2: page * 2]
            nxt = None
            if page * 2 < len(paths):
                q = "&".join(f"{k}={v}" for k, v in {**query, "page": page + 1}.items())
                nxt = f"http://{self.headers['Host']}{urlparse(self.path).path}?{q}"
            return self._json({"count": len(paths), "next": nxt, "previous": None,
                               "results": [{"asset_id": i, "path": p, "size": len(archive.blob)} for i, p in chunk]})

        def _blob(self):
            data, start = archive.blob, 0
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if m:
                start = int(m[1])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if archive.drop_after is not None:
                cut, archive.drop_after = archive.drop_after, None
                self.wfile.write(data[start:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the connection dies half-way
                return
            self.wfile.write(data[start:])

    return Handler


@pytest.fixture(scope="module")
def nwb_bytes(tmp_path_factory) -> bytes:
    path = make_units_file(tmp_path_factory.mktemp("nwb") / "s.nwb", n_units=6, n_trials=40)
    return path.read_bytes()


@pytest.fixture
def archive(nwb_bytes, monkeypatch):
    arch = Archive(nwb_bytes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(arch))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    arch.api = f"http://127.0.0.1:{server.server_address[1]}/api"
    monkeypatch.setenv(dandi.API_ENV, arch.api)
    monkeypatch.setattr(dandi, "CHUNK", 4096)
    yield arch
    server.shutdown()
    server.server_close()


def test_parse_spec():
    spec = dandi.parse_spec("dandi:000128@0.220113.0400/sub-Jenkins/a+b.nwb")
    assert (spec.dandiset, spec.version, spec.path) == ("000128", "0.220113.0400", "sub-Jenkins/a+b.nwb")
    assert str(spec) == "dandi:000128@0.220113.0400/sub-Jenkins/a+b.nwb"
    assert dandi.parse_spec("dandi:000128/x.nwb").version is None
    for bad in ["dandi:128/x.nwb", "dandi:000128", "dandi:000128/../x.nwb", "000128/x.nwb", "dandi:000128//x.nwb"]:
        with pytest.raises(dandi.DandiError, match="not a DANDI asset"):
            dandi.parse_spec(bad)


def test_fetch_downloads_the_latest_version_verified(archive, tmp_path):
    out = tmp_path / "data" / "dandi" / DANDISET / ASSET
    assert cli.main(["fetch-dandi", f"dandi:{DANDISET}/{ASSET}", str(out)]) == 0
    assert out.read_bytes() == archive.blob
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no .part left
    paths = [p for p, _ in archive.requests]
    assert f"/api/dandisets/{DANDISET}/" in paths  # no version given: the latest published one
    assert "/blobs/id-0" in paths  # through the download redirect
    # a second fetch finds the verified file and downloads nothing
    n = len(archive.requests)
    dandi.fetch(f"dandi:{DANDISET}@{VERSION}/{ASSET}", out)
    assert "/blobs/id-0" not in [p for p, _ in archive.requests[n:]]


def test_downloaded_file_ingests_like_a_local_one(archive, tmp_path):
    from cortexfit.ingest import ingest_nwb

    out = dandi.fetch(f"dandi:{DANDISET}@{VERSION}/{ASSET}", tmp_path / "x.nwb")
    ds = ingest_nwb(out, bin_ms=20)
    assert ds.sizes["trial"] == 40 and ds.sizes["unit"] == 6
    assert ds.attrs["source_sha256"] == archive.sha256


def test_wrong_checksum_is_a_clear_error_and_leaves_nothing(archive, tmp_path, capsys):
    archive.sha256 = "0" * 64
    root = tmp_path / "data" / "dandi"
    root.mkdir(parents=True)
    out = root / DANDISET / ASSET
    assert cli.main(["fetch-dandi", f"dandi:{DANDISET}@{VERSION}/{ASSET}", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and "0" * 64 in err[0], err
    assert hashlib.sha256(archive.blob).hexdigest() in err[0]
    assert list(root.rglob("*")) == []


def test_missing_asset_lists_the_nearest_nwb_assets(archive, tmp_path):
    with pytest.raises(dandi.DandiError) as info:
        dandi.fetch(f"dandi:{DANDISET}/sub-01/sub-01_ses-c_ecephys.nwb", tmp_path / "x.nwb")
    msg = str(info.value)
    assert "no asset 'sub-01/sub-01_ses-c_ecephys.nwb'" in msg and VERSION in msg
    listed = msg.split("nearest NWB assets: ")[1].split(", ")
    assert listed[0] == ASSET and "dandiset.yaml" not in listed
    assert not (tmp_path / "x.nwb").exists()


def test_unknown_version_and_dandiset(archive, tmp_path):
    with pytest.raises(dandi.DandiError, match="has no version 9.9"):
        dandi.fetch(f"dandi:{DANDISET}@9.9/{ASSET}", tmp_path / "x.nwb")
    with pytest.raises(dandi.DandiError, match="dandiset 000111 not found"):
        dandi.fetch(f"dandi:000111/{ASSET}", tmp_path / "x.nwb")


def test_interrupted_download_resumes_with_a_range_request(archive, tmp_path):
    total = len(archive.blob)
    assert total > 4 * 4096
    archive.drop_after = total // 2
    out = tmp_path / "data" / "dandi" / DANDISET / ASSET
    part = out.with_name(out.name + ".part")
    with pytest.raises(dandi.DandiError, match="interrupted after .* run again to resume"):
        dandi.fetch(f"dandi:{DANDISET}@{VERSION}/{ASSET}", out, attempts=1)
    have = part.stat().st_size
    assert 0 < have <= total // 2 and not out.exists()
    assert part.read_bytes() == archive.blob[:have]
    n = len(archive.requests)
    dandi.fetch(f"dandi:{DANDISET}@{VERSION}/{ASSET}", out)  # the next run
    assert out.read_bytes() == archive.blob and not part.exists()
    assert [r for p, r in archive.requests[n:] if p == "/blobs/id-0"] == [f"bytes={have}-"]


def test_dropped_connection_is_retried_within_one_run(archive, tmp_path):
    archive.drop_after = len(archive.blob) // 3
    out = dandi.fetch(f"dandi:{DANDISET}@{VERSION}/{ASSET}", tmp_path / "x.nwb")
    assert out.read_bytes() == archive.blob
    ranges = [r for p, r in archive.requests if p == "/blobs/id-0"]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")


def _workflow_copy(tmp_path: Path) -> Path:
    for name in ("Snakefile", "workflow", "config"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return tmp_path


def _snakemake(cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, **(env or {}), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_nlb_sheet_plans_downloads_then_ingests(tmp_path):
    wf = _workflow_copy(tmp_path)
    out = _snakemake(wf, "-n", "--cores", "1", "--config", "datasets=config/datasets.nlb.tsv", "models=[]",
                     "report=false")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert re.search(r"dandi_download\s+4", text) and re.search(r"ingest\s+4", text), text[-3000:]
    assert "data/dandi/000128/sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb" in text
    assert "data/dandi/000129/sub-Indy/sub-Indy_desc-test_ecephys.nwb" in text


def test_workflow_downloads_and_ingests_a_dandi_row(archive, tmp_path):
    wf = _workflow_copy(tmp_path)
    (wf / "sheet.tsv").write_text("id\tnwb\tbin_ms\n"
                                  f"remote\tdandi:{DANDISET}/{ASSET}\t20\n")
    out = _snakemake(wf, "--cores", "1", "--config", "datasets=sheet.tsv", "models=[]", "report=false",
                     env={dandi.API_ENV: archive.api})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (wf / "data" / "dandi" / DANDISET / ASSET).read_bytes() == archive.blob
    assert (wf / "results" / "remote" / "activity.nc").is_file()
    bad = wf / "bad.tsv"
    bad.write_text(f"id\tnwb\nx\tdandi:{DANDISET}\n")
    out = _snakemake(wf, "-n", "--cores", "1", "--config", "datasets=bad.tsv")
    assert out.returncode != 0 and "On instance['nwb']" in out.stdout + out.stderr
