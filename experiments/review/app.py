"""The review app: a Starlette application over one run dir (HTTP API + the review page).

HTTP API (stable; README "Review app"):

``GET /api/clusters[?offset=&limit=&order=rank|learned&verdict=all|unreviewed|confirmed|dismissed]``
    JSON list, one object per cluster: ``scan_id``, ``cluster_id``, ``rank``, ``score``,
    ``reason``, ``verdict`` (null, ``"confirmed"``, ``"dismissed"``), ``note`` (null when never
    written); with ``order=learned`` also ``learned_score`` (null for reviewed clusters).
    ``order=learned``: the unreviewed clusters by the re-ranker's ``learned_score`` (highest
    first), then the reviewed ones by rank; the re-ranker is trained on this run's verdicts
    (needs two confirmed and two dismissed clusters) or, before that, is the model given with
    ``model=PATH``; without either the order stays the rank order (``/api/summary`` says which).
``POST /api/feedback`` (``Content-Type: application/json``)
    ``{"scan_id": str, "cluster_id": int, "verdict": "confirmed" | "dismissed" | null,
    "note": str (optional; absent = keep the current note)}`` -> 200 and the stored record
    ``{scan_id, cluster_id, verdict, note, updated_at, revision}`` once committed.  4xx with a
    one-line ``{"error": ...}`` and nothing stored for: a body that is not a JSON object (400),
    an unknown cluster (404), a bad field or verdict (422), another content type (415), a body
    over 64 KiB (413).
``GET /api/cluster?scan_id=&cluster_id=``
    One cluster for the viewer: the list fields, its box, position, measurements
    (``[[label, text], ...]``) and its scan's image (``available``, ``message``, Deep Zoom sizes).
``GET /api/history?scan_id=&cluster_id=``
    Every write of one cluster, oldest first.
``GET /api/summary``
    Run name, cluster count, reviewed count, verdict counts, the learned order's source.
``GET /tiles/<scan>/<level>/<col>_<row>.jpg[?overlay=0]``
    A Deep Zoom tile (``<scan>`` = row of ``scans.parquet``).

Security: served on 127.0.0.1 by default, where requests must name a loopback host (no DNS
rebinding).  On any other address every request needs the token (``X-Review-Token`` header,
``?token=`` query or the cookie the page gets from the first ``?token=`` visit).  The page
writes data with ``textContent`` only; a Content-Security-Policy forbids inline scripts.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from anomaly.rerank import RerankConfig, RerankModel, apply_reranker, train_reranker
from experiments.reporting.nouns import is_phase_run, object_noun

from .rundata import RunData, fmt_value
from .store import MAX_NOTE, VERDICTS, VerdictStore
from .tiles import TileError, TileRenderer

__all__ = ["ReviewApp", "create_app", "TOKEN_HEADER", "TOKEN_COOKIE"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "x-review-token"
TOKEN_COOKIE = "quantmet_review_token"
MAX_BODY = 64 * 1024
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
_LIST_FIELDS = ("scan_id", "cluster_id", "rank", "score", "reason", "verdict", "note")


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _num(v):
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return x if math.isfinite(x) else None
    return v


class _Guard:
    """ASGI middleware: host check (loopback mode) or token check, and security headers."""

    def __init__(self, app, *, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        if self.loopback:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name not in _LOOPBACK_HOSTS:
                return await _err(421, f"host {host!r} not served: open http://127.0.0.1 instead")(
                    scope, receive, send
                )
        set_cookie = False
        if self.token is not None:
            given = headers.get(TOKEN_HEADER)
            if given is None:
                from urllib.parse import parse_qs

                q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                if q.get("token"):
                    given = q["token"][0]
                    set_cookie = True
            if given is None:
                for part in headers.get("cookie", "").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == TOKEN_COOKIE:
                        given = v
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return await _err(
                    401, "missing or wrong review token (open the URL printed by the server)"
                )(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                h = list(message.get("headers", []))
                h += [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if scope["path"].startswith("/api/"):
                    h.append((b"cache-control", b"no-store"))
                if set_cookie:
                    h.append(
                        (
                            b"set-cookie",
                            f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode(),
                        )
                    )
                message = {**message, "headers": h}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


class ReviewApp:
    """State of one review session: the run, its verdict store, the tiles and the re-ranker."""

    def __init__(
        self,
        run: RunData,
        store: VerdictStore,
        *,
        model: RerankModel | None = None,
        renderer: TileRenderer | None = None,
    ) -> None:
        self.run = run
        self.store = store
        self.model = model
        self.tiles = renderer or TileRenderer(run)
        self._learned_lock = threading.Lock()
        self._learned: tuple[int, RerankModel | None, str] | None = None
        # a phase run's regions are pores, oxides...: the report's word for them ("objects")
        phase_run = is_phase_run(run.layout)
        self._noun, self._noun1 = object_noun(phase_run), object_noun(phase_run, singular=True)

    # ------------------------------------------------------------------ data
    def _records(self) -> dict:
        return self.store.all()

    def _obj(self, i: int, rec: dict | None) -> dict:
        c = self.run.clusters.iloc[i]
        return {
            "scan_id": str(c["scan_id"]),
            "cluster_id": int(c["cluster_id"]),
            "rank": int(c["rank"]),
            "score": _num(c["score"]),
            "reason": str(c["reason"]),
            "verdict": rec["verdict"] if rec else None,
            "note": rec["note"] if rec else None,
        }

    def learned_model(self) -> tuple[RerankModel | None, str]:
        """The re-ranker for ``order=learned`` and a line saying where it comes from."""
        count = self.store.change_count()
        with self._learned_lock:
            if self._learned is not None and self._learned[0] == count:
                return self._learned[1], self._learned[2]
            recs = self._records()
            keys, verdicts = [], []
            for (sid, cid), r in recs.items():
                i = self.run.cluster_index(sid, cid)
                if i is not None and r["verdict"] in VERDICTS:
                    keys.append(i)
                    verdicts.append(r["verdict"])
            need = RerankConfig().min_per_class
            model, source = (
                None,
                f"rank order (the re-ranker needs {need} confirmed and {need} dismissed clusters)",
            )
            if min(verdicts.count("confirmed"), verdicts.count("dismissed")) >= need:
                try:
                    model = train_reranker(
                        self.run.clusters.iloc[keys],
                        pd.Series(verdicts),
                        sources=[str(self.run.layout.root)],
                    )
                    source = (
                        f"re-ranker trained on this run's {len(verdicts)} verdicts "
                        f"({verdicts.count('confirmed')} confirmed, {verdicts.count('dismissed')} dismissed)"
                    )
                except ValueError as exc:
                    model, source = None, f"rank order (re-ranker not trained: {exc})"
            if model is None and self.model is not None:
                model, source = self.model, "re-ranker from the model file given at start"
            self._learned = (count, model, source)
            return model, source

    def ordered(self, order: str) -> list[dict]:
        recs = self._records()
        objs = [
            self._obj(i, recs.get((str(s), int(c))))
            for i, (s, c) in enumerate(
                zip(self.run.clusters["scan_id"], self.run.clusters["cluster_id"])
            )
        ]
        if order != "learned":
            return objs
        model, _ = self.learned_model()
        if model is None:
            for o in objs:
                o["learned_score"] = None
            return objs
        todo = [i for i, o in enumerate(objs) if o["verdict"] is None]
        done = [i for i, o in enumerate(objs) if o["verdict"] is not None]
        scored = apply_reranker(self.run.clusters.iloc[todo], model) if todo else None
        if scored is not None:
            for i, v in zip(todo, scored["learned_score"].to_numpy()):
                objs[i]["learned_score"] = float(v)
            todo = [todo[j] for j in np.argsort(scored["learned_rank"].to_numpy(), kind="stable")]
        for i in done:
            objs[i]["learned_score"] = None
        return [objs[i] for i in todo + done]

    def measurements(self, i: int) -> list[list[str]]:
        c = self.run.clusters.iloc[i]
        ps = self.run.pixel_size(str(c["scan_id"]))
        um = ps is not None

        def has(name):
            return (
                name in c.index
                and c[name] is not None
                and not (isinstance(c[name], float) and math.isnan(c[name]))
            )

        rows = [["rank", f"{int(c['rank'])} of {len(self.run.clusters)}"]]
        if has("percentile"):
            rows.append(["place in the run", str(c["percentile"])])
        rows.append(["cluster score", fmt_value(c["score"])])
        if has("norm_score"):
            rows.append(["score / top score", fmt_value(c["norm_score"])])
        noun, one = self._noun, self._noun1
        rows.append([noun, str(int(c["n_regions"])) if has("n_regions") else "–"])
        if um and has("extent_um"):
            rows.append(["extent", f"{fmt_value(c['extent_um'])} µm"])
        elif has("extent_px"):
            rows.append(["extent", f"{fmt_value(c['extent_px'])} px"])
        if um and has("member_area_max_um2"):
            rows.append([f"largest {one}", f"{fmt_value(c['member_area_max_um2'])} µm²"])
            rows.append([f"mean {one} area", f"{fmt_value(c['member_area_mean_um2'])} µm²"])
        elif has("member_area_max_px"):
            rows.append([f"largest {one}", f"{fmt_value(c['member_area_max_px'])} px²"])
            rows.append([f"mean {one} area", f"{fmt_value(c['member_area_mean_px'])} px²"])
        if has("member_elongation_max"):
            rows.append(["elongation (max)", fmt_value(c["member_elongation_max"])])
        for name in ("spatial", "circle", "shape", "combined"):
            if has(f"member_{name}_max"):
                rows.append(
                    [
                        f"{name} score (mean / max)",
                        f"{fmt_value(c[f'member_{name}_mean'])} / {fmt_value(c[f'member_{name}_max'])}",
                    ]
                )
        if has("edge_distance_px"):
            rows.append(["distance to the scan edge", f"{fmt_value(c['edge_distance_px'])} px"])
        rows.append(
            [
                "box (row, col)",
                f"{int(c['bbox_rmin'])}-{int(c['bbox_rmax'])}, "
                f"{int(c['bbox_cmin'])}-{int(c['bbox_cmax'])}"
                if has("bbox_rmin")
                else "–",
            ]
        )
        if has("core_region_ids"):
            rows.append([f"seed {noun}", str(c["core_region_ids"])])
        rows.append(["pixel size", f"{fmt_value(ps)} µm" if um else "not calibrated"])
        return rows

    def detail(self, i: int) -> dict:
        c = self.run.clusters.iloc[i]
        sid = str(c["scan_id"])
        si = self.run.scan_index(sid)
        obj = self._obj(i, self.store.get(sid, int(c["cluster_id"])))
        box = {
            k: int(c[k])
            for k in ("bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax")
            if k in c.index
        }
        if si is None:
            image = {"available": False, "message": f"scan {sid!r} is not in scans.parquet"}
        else:
            image = {"scan": si, **self.tiles.info(si)}
            if image["available"]:
                image["tiles"] = f"/tiles/{si}/"
        # warm the next clusters' scans so that moving on is instant
        for j in (i + 1, i + 2):
            if j < len(self.run.clusters):
                sj = self.run.scan_index(str(self.run.clusters.iloc[j]["scan_id"]))
                if sj is not None and sj != si:
                    self.tiles.warm(sj)
                    break
        return {
            **obj,
            "position": i,
            "box": box,
            "measurements": self.measurements(i),
            "image": image,
        }

    def summary(self) -> dict:
        recs = self._records()
        known = [r for k, r in recs.items() if self.run.cluster_index(*k) is not None]
        counts = {v: sum(1 for r in known if r["verdict"] == v) for v in VERDICTS}
        _, source = self.learned_model()
        return {
            "run": self.run.layout.root.name,
            "run_dir": str(self.run.layout.root),
            "clusters": len(self.run.clusters),
            "reviewed": sum(counts.values()),
            **counts,
            "learned_order": source,
        }


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    v = request.query_params.get(name)
    if v is None or v == "":
        return default
    try:
        x = int(v)
    except ValueError:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}") from None
    if x < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return x


def create_app(state: ReviewApp, *, token: str | None = None, loopback: bool = True) -> Starlette:
    """The ASGI application of a :class:`ReviewApp` (see the module docstring for the API)."""

    def page(request: Request):
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    def clusters(request: Request):
        try:
            offset = _int_param(request, "offset", 0)
            limit = _int_param(request, "limit", None)
        except ValueError as exc:
            return _err(400, str(exc))
        order = request.query_params.get("order", "rank")
        if order not in ("rank", "learned"):
            return _err(400, f"order must be 'rank' or 'learned', got {order!r}")
        verdict = request.query_params.get("verdict", "all")
        if verdict not in ("all", "unreviewed", *VERDICTS):
            return _err(
                400, f"verdict must be all, unreviewed, confirmed or dismissed, got {verdict!r}"
            )
        objs = state.ordered(order)
        if verdict == "unreviewed":
            objs = [o for o in objs if o["verdict"] is None]
        elif verdict != "all":
            objs = [o for o in objs if o["verdict"] == verdict]
        end = None if limit is None else offset + limit
        return JSONResponse(objs[offset:end])

    def _find(request: Request):
        sid = request.query_params.get("scan_id")
        cid = request.query_params.get("cluster_id")
        if sid is None or cid is None:
            return None, _err(400, "give scan_id and cluster_id")
        try:
            cid_i = int(cid)
        except ValueError:
            return None, _err(400, f"cluster_id must be an integer, got {cid!r}")
        i = state.run.cluster_index(sid, cid_i)
        if i is None:
            return None, _err(404, f"unknown cluster: scan_id={sid!r}, cluster_id={cid_i}")
        return i, None

    def cluster(request: Request):
        i, bad = _find(request)
        return bad or JSONResponse(state.detail(i))

    def history(request: Request):
        i, bad = _find(request)
        if bad:
            return bad
        c = state.run.clusters.iloc[i]
        return JSONResponse(state.store.history(str(c["scan_id"]), int(c["cluster_id"])))

    def summary(request: Request):
        return JSONResponse(state.summary())

    async def feedback(request: Request):
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            return _err(
                415,
                f"send JSON (Content-Type: application/json), got {ctype or 'no content type'!r}",
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _err(413, f"request body over {MAX_BODY} bytes")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _err(400, f"body is not valid JSON: {exc}")
        if not isinstance(data, dict):
            return _err(400, "body must be a JSON object {scan_id, cluster_id, verdict, note?}")
        unknown = sorted(set(data) - {"scan_id", "cluster_id", "verdict", "note"})
        if unknown:
            return _err(
                422, f"unknown field(s) {unknown}; expected scan_id, cluster_id, verdict, note"
            )
        sid, cid = data.get("scan_id"), data.get("cluster_id")
        if not isinstance(sid, str):
            return _err(422, "scan_id must be a string")
        if isinstance(cid, bool) or not isinstance(cid, int):
            return _err(422, "cluster_id must be an integer")
        if "verdict" not in data:
            return _err(422, 'verdict is required: "confirmed", "dismissed" or null')
        verdict = data["verdict"]
        if verdict is not None and verdict not in VERDICTS:
            return _err(
                422,
                f'verdict must be "confirmed", "dismissed" or null, got {json.dumps(verdict)[:80]}',
            )
        note = data.get("note")
        if "note" in data and note is not None and not isinstance(note, str):
            return _err(422, "note must be a string or null")
        if isinstance(note, str) and len(note) > MAX_NOTE:
            return _err(422, f"note longer than {MAX_NOTE} characters")
        if state.run.cluster_index(sid, cid) is None:
            return _err(404, f"unknown cluster: scan_id={sid!r}, cluster_id={cid}")
        client = request.client.host if request.client else None
        import anyio

        rec = await anyio.to_thread.run_sync(
            lambda: state.store.set(
                sid, cid, verdict, note=note, keep_note="note" not in data, client=client
            )
        )
        return JSONResponse(rec)

    def tile(request: Request):
        p = request.path_params
        overlay = request.query_params.get("overlay", "1") != "0"
        try:
            data = state.tiles.tile(p["scan"], p["level"], p["col"], p["row"], overlay=overlay)
        except TileError as exc:
            return Response(str(exc), status_code=404, media_type="text/plain; charset=utf-8")
        return Response(
            data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
        )

    routes = [
        Route("/", page),
        Route("/api/clusters", clusters),
        Route("/api/cluster", cluster),
        Route("/api/history", history),
        Route("/api/summary", summary),
        Route("/api/feedback", feedback, methods=["POST"]),
        Route("/tiles/{scan:int}/{level:int}/{col:int}_{row:int}.jpg", tile),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Guard, token=token, loopback=loopback)
    app.state.review = state
    return app
