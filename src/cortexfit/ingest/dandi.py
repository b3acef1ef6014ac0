"""NWB files from the DANDI archive by id: ``dandi:<dandiset>[@<version>]/<asset path>`` -> a verified local file.

``cortexfit fetch-dandi SPEC OUT`` calls :func:`run`; the workflow's ``dandi_download`` rule calls it for every
row of the datasets sheet whose ``nwb`` column names a DANDI asset, and ingests the local copy like any file.

What it does, through the DANDI REST API (base URL ``$CORTEXFIT_DANDI_API``, default :data:`DEFAULT_API`):

1. the version: the one given after ``@``, else the dandiset's most recent published version, else ``draft``
   (``GET /dandisets/{id}/``);
2. the asset: ``GET /dandisets/{id}/versions/{version}/assets/?path=...`` and the exact path among the results;
   when there is none, the error lists the dandiset's NWB assets nearest to the path (:mod:`difflib`);
3. its checksum and size: ``GET /dandisets/{id}/versions/{version}/assets/{asset_id}/`` (metadata ``digest``,
   ``dandi:sha2-256``, and ``contentSize``);
4. the bytes: ``GET /assets/{asset_id}/download/`` (a redirect to the blob store) into ``OUT.part``; a
   dropped connection is retried with an HTTP ``Range`` request from the bytes already on disk, and so is
   the next run after a killed one, so nothing is fetched twice;
5. the SHA-256 of the whole file is compared with the archive's, and only then is ``OUT.part`` renamed to
   ``OUT``; a mismatch deletes the partial file (and the folders this call made) and stops with both sums.

A small resolver over ``requests`` rather than the ``dandi`` client: the four calls above are all the workflow
needs, while ``dandi`` 0.81 brings about sixty packages into the environment (zarr, tensorstore, deno,
cryptography, keyring, aiohttp, nwbinspector, ...) to download one file.

Examples
--------
>>> parse_spec("dandi:000128@0.220113.0400/sub-Jenkins/sub-Jenkins_ses-full_desc-test_ecephys.nwb")
DandiSpec(dandiset='000128', version='0.220113.0400', path='sub-Jenkins/sub-Jenkins_ses-full_desc-test_ecephys.nwb')
>>> local_path(parse_spec("dandi:000129/sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb"))
'data/dandi/000129/sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb'
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortexfit.core.errors import IngestError

log = logging.getLogger(__name__)

DEFAULT_API = "https://api.dandiarchive.org/api"
API_ENV = "CORTEXFIT_DANDI_API"  # base URL of the DANDI API (tests point it at a local server)
LOCAL_ROOT = "data/dandi"  # where the workflow keeps downloaded assets: data/dandi/<dandiset>/<asset path>
CHUNK = 1 << 16  # bytes per read of the download
ATTEMPTS = 5  # tries of one download; each resumes from the bytes already on disk
TIMEOUT_S = 60.0  # connect / read timeout of every request
_SPEC = re.compile(r"^dandi:(?P<dandiset>\d{6})(?:@(?P<version>[^/\s]+))?/(?P<path>\S(?:.*\S)?)$")


class DandiError(IngestError):
    """A DANDI asset cannot be resolved, downloaded or verified."""


@dataclass(frozen=True)
class DandiSpec:
    """``dandi:<dandiset>[@<version>]/<path>`` split into its parts (``version`` None: the latest)."""

    dandiset: str
    version: str | None
    path: str

    def __str__(self) -> str:
        version = f"@{self.version}" if self.version else ""
        return f"dandi:{self.dandiset}{version}/{self.path}"


def is_spec(text: str) -> bool:
    """Whether a datasets-sheet ``nwb`` cell names a DANDI asset (starts with ``dandi:``)."""
    return str(text).startswith("dandi:")


def parse_spec(text: str) -> DandiSpec:
    """``dandi:000128[@0.220113.0400]/sub-Jenkins/x.nwb`` -> :class:`DandiSpec`; anything else is an error."""
    m = _SPEC.match(str(text).strip())
    if not m or ".." in m["path"].split("/") or m["path"].startswith("/"):
        raise DandiError(f"{text}: not a DANDI asset; expected dandi:<6-digit dandiset>[@<version>]/<asset path>")
    return DandiSpec(m["dandiset"], m["version"], m["path"])


def local_path(spec: DandiSpec, root: str = LOCAL_ROOT) -> str:
    """Where the workflow keeps the asset: ``<root>/<dandiset>/<asset path>``."""
    return f"{root}/{spec.dandiset}/{spec.path}"


def api_url(api: str | None = None) -> str:
    """The API base URL: ``api``, else ``$CORTEXFIT_DANDI_API``, else :data:`DEFAULT_API` (no trailing slash)."""
    return (api or os.environ.get(API_ENV) or DEFAULT_API).rstrip("/")


@dataclass(frozen=True)
class Asset:
    """A resolved asset: where to download it and what it must hash to."""

    spec: DandiSpec
    version: str
    asset_id: str
    size: int | None
    sha256: str
    download_url: str


def _get_json(session, url: str, what: str, params: dict | None = None) -> Any:
    import requests

    try:
        resp = session.get(url, params=params, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise DandiError(f"{what}: cannot reach the DANDI API at {url}: {exc}") from None
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise DandiError(f"{what}: the DANDI API answered {resp.status_code} for {resp.url}")
    try:
        return resp.json()
    except ValueError:
        raise DandiError(f"{what}: the DANDI API sent something that is not JSON from {resp.url}") from None


def _pages(session, url: str, what: str, params: dict):
    """Every result of a paginated list endpoint (follows ``next``)."""
    page = _get_json(session, url, what, params)
    while page:
        yield from page.get("results", [])
        nxt = page.get("next")
        page = _get_json(session, nxt, what) if nxt else None


def _version(session, api: str, spec: DandiSpec) -> str:
    if spec.version:
        return spec.version
    info = _get_json(session, f"{api}/dandisets/{spec.dandiset}/", str(spec))
    if info is None:
        raise DandiError(f"{spec}: dandiset {spec.dandiset} not found at {api}")
    published = info.get("most_recent_published_version") or {}
    return published.get("version") or (info.get("draft_version") or {}).get("version") or "draft"


def nearest_assets(paths: list[str], path: str, n: int = 5) -> list[str]:
    """The NWB paths of ``paths`` nearest to ``path`` (difflib), else the first few of them.

    >>> nearest_assets(["sub-A/a_train.nwb", "sub-A/a_test.nwb", "dandiset.yaml"], "sub-A/a_trian.nwb", n=1)
    ['sub-A/a_train.nwb']
    """
    nwb = sorted(p for p in paths if p.endswith(".nwb"))
    close = difflib.get_close_matches(path, nwb, n=n, cutoff=0.4)
    return close or nwb[:n]


def resolve(spec: DandiSpec | str, api: str | None = None, session=None) -> Asset:
    """Look the asset up in the archive: version, asset id, size, SHA-256 and download URL."""
    import requests

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    base = api_url(api)
    session = session or requests.Session()
    version = _version(session, base, spec)
    assets_url = f"{base}/dandisets/{spec.dandiset}/versions/{version}/assets/"
    if _get_json(session, f"{base}/dandisets/{spec.dandiset}/versions/{version}/", str(spec)) is None:
        raise DandiError(f"{spec}: dandiset {spec.dandiset} has no version {version} at {base}")
    found = [a for a in _pages(session, assets_url, str(spec), {"path": spec.path}) if a.get("path") == spec.path]
    if not found:
        paths = [a.get("path", "") for a in _pages(session, assets_url, str(spec), {"page_size": 1000})]
        near = nearest_assets(paths, spec.path)
        listing = ", ".join(near) if near else "none"
        raise DandiError(f"{spec}: no asset {spec.path!r} in dandiset {spec.dandiset} version {version}; "
                         f"nearest NWB assets: {listing}")
    asset_id = found[0]["asset_id"]
    meta = _get_json(session, f"{assets_url}{asset_id}/", str(spec)) or {}
    sha = (meta.get("digest") or {}).get("dandi:sha2-256")
    if not sha:
        raise DandiError(f"{spec}: the archive gives no dandi:sha2-256 digest for asset {asset_id} (a Zarr asset, "
                         "or metadata not computed yet); cannot verify a download")
    size = meta.get("contentSize", found[0].get("size"))
    return Asset(spec, version, asset_id, int(size) if size is not None else None, str(sha).lower(),
                 f"{base}/assets/{asset_id}/download/")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _fetch_once(session, asset: Asset, part: Path) -> None:
    """Append the missing bytes of ``asset`` to ``part`` (a Range request when some are there already)."""
    have = part.stat().st_size if part.exists() else 0
    if asset.size is not None and have >= asset.size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(asset.download_url, headers=headers, stream=True, timeout=TIMEOUT_S) as resp:
        if resp.status_code == 416 and have:  # nothing left to send: the partial file is complete or wrong
            return
        if resp.status_code not in (200, 206):
            raise DandiError(f"{asset.spec}: download answered {resp.status_code} for {resp.url}")
        mode = "ab" if have and resp.status_code == 206 else "wb"  # a server ignoring Range sends it all
        if have and mode == "wb":
            log.info("%s: the server ignored the Range request; starting over", asset.spec)
        with open(part, mode) as fh:
            for block in resp.iter_content(chunk_size=CHUNK):
                fh.write(block)
                fh.flush()


def download(asset: Asset, out: str | os.PathLike, attempts: int = ATTEMPTS, session=None) -> Path:
    """Download ``asset`` to ``out`` atomically (via ``out.part``), resuming, then verify its SHA-256."""
    import requests

    out = Path(out)
    part = out.with_name(out.name + ".part")
    made = [p for p in [out.parent, *out.parent.parents] if not p.exists()]  # folders this call creates
    out.parent.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    start = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(session, asset, part)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                raise DandiError(f"{asset.spec}: download interrupted after {have} bytes ({exc.__class__.__name__}); "
                                 f"run again to resume from {part}") from None
            log.info("%s: connection lost after %d bytes (%s); resuming (attempt %d of %d)", asset.spec, have,
                     exc.__class__.__name__, attempt + 1, attempts)
    got = _sha256(part) if part.exists() else hashlib.sha256(b"").hexdigest()
    if got != asset.sha256:
        size = part.stat().st_size if part.exists() else 0
        part.unlink(missing_ok=True)
        for folder in made:  # deepest first: remove what this call created, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise DandiError(f"{asset.spec}: checksum mismatch: the downloaded {size} bytes have sha256 {got}, the "
                         f"archive says {asset.sha256} (asset {asset.asset_id}); nothing was kept")
    os.replace(part, out)
    log.info("%s: %d bytes verified (sha256 %s) in %.1f s -> %s", asset.spec, out.stat().st_size, got[:12],
             time.monotonic() - start, out)
    return out


def fetch(spec: DandiSpec | str, out: str | os.PathLike | None = None, api: str | None = None,
          attempts: int = ATTEMPTS) -> Path:
    """Resolve and download one asset to ``out`` (default :func:`local_path`); an existing file with the
    archive's checksum is kept as it is."""
    import requests

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    out = Path(out) if out is not None else Path(local_path(spec))
    with requests.Session() as session:
        asset = resolve(spec, api=api, session=session)
        log.info("%s: version %s, asset %s, %s bytes", spec, asset.version, asset.asset_id, asset.size)
        if out.is_file() and _sha256(out) == asset.sha256:
            log.info("%s: %s is already there and verified", spec, out)
            return out
        return download(asset, out, attempts=attempts, session=session)


def run(spec: str, out: str, api: str | None = None, attempts: int = ATTEMPTS) -> None:
    """``cortexfit fetch-dandi SPEC OUT [--api URL] [--attempts N]``."""
    fetch(spec, out, api=api, attempts=attempts)
