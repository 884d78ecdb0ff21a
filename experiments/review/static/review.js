// quantmet review page. Every value from the server is written with textContent (never innerHTML).
(function () {
  "use strict";

  const ROW_H = 52;
  const token = new URLSearchParams(location.search).get("token");
  const $ = (id) => document.getElementById(id);
  const state = {
    items: [],        // clusters in the chosen order (objects of GET /api/clusters)
    pos: -1,          // index in items of the cluster shown
    filter: "all",
    order: "rank",
    detail: null,     // GET /api/cluster of the shown cluster
    scan: null,       // scan number open in the viewer
    overlay: true,
    pendingBox: null,
  };
  let viewer = null;

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h["X-Review-Token"] = token;
    return h;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: headers(), credentials: "same-origin" });
    const body = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  function status(text) { $("status").textContent = text; }

  function matches(item) {
    if (state.filter === "all") return true;
    if (state.filter === "unreviewed") return item.verdict === null;
    return item.verdict === state.filter;
  }

  function visible() {
    const out = [];
    state.items.forEach((it, i) => { if (matches(it)) out.push(i); });
    return out;
  }

  // ------------------------------------------------------------------ list (virtual)
  function renderList() {
    const list = $("list");
    const vis = visible();
    state.visible = vis;
    $("list-spacer").style.height = (vis.length * ROW_H) + "px";
    const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - 5);
    const last = Math.min(vis.length, first + Math.ceil(list.clientHeight / ROW_H) + 10);
    const rows = $("list-rows");
    rows.style.top = (first * ROW_H) + "px";
    rows.replaceChildren();
    for (let k = first; k < last; k++) {
      const i = vis[k];
      const it = state.items[i];
      const row = document.createElement("div");
      row.className = "row" + (i === state.pos ? " current" : "");
      row.dataset.index = String(i);
      row.setAttribute("data-testid", "row");
      const top = document.createElement("div");
      top.className = "top";
      const rank = document.createElement("span");
      rank.className = "rank";
      rank.textContent = "#" + it.rank;
      const scan = document.createElement("span");
      scan.className = "scan";
      scan.textContent = it.scan_id + " · " + it.cluster_id;
      const badge = document.createElement("span");
      badge.className = "badge " + (it.verdict || "");
      badge.textContent = it.verdict || "open";
      top.append(rank, scan, badge);
      const sub = document.createElement("div");
      sub.className = "sub";
      const learned = typeof it.learned_score === "number" ? "learned " + it.learned_score.toFixed(2) + " · " : "";
      sub.textContent = learned + (it.note ? "note: " + it.note : it.reason);
      row.append(top, sub);
      row.addEventListener("click", () => select(i));
      rows.append(row);
    }
  }

  function renderProgress() {
    const n = state.items.length;
    const done = state.items.filter((it) => it.verdict !== null).length;
    $("progress").textContent = done + " of " + n + " reviewed";
  }

  function scrollToCurrent() {
    const k = (state.visible || []).indexOf(state.pos);
    if (k < 0) return;
    const list = $("list");
    const y = k * ROW_H;
    if (y < list.scrollTop || y + ROW_H > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, y - list.clientHeight / 3);
    }
  }

  // ------------------------------------------------------------------ viewer
  function ensureViewer() {
    if (viewer) return viewer;
    viewer = OpenSeadragon({
      element: $("viewer"),
      prefixUrl: "/static/vendor/openseadragon/images/",
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "TOP_RIGHT",
      maxZoomPixelRatio: 8,
      visibilityRatio: 0.2,
      animationTime: 0.3,
      imageLoaderLimit: 6,
      gestureSettingsMouse: { clickToZoom: false },
    });
    viewer.addHandler("open", () => {
      if (state.pendingBox) { showBox(state.pendingBox.box, state.pendingBox.bounds); state.pendingBox = null; }
    });
    window.quantmetReview.viewer = viewer;
    return viewer;
  }

  function boxRect(box) {
    const w = box.bbox_cmax - box.bbox_cmin + 1;
    const h = box.bbox_rmax - box.bbox_rmin + 1;
    return viewer.viewport.imageToViewportRectangle(box.bbox_cmin, box.bbox_rmin, w, h);
  }

  function fitBox(box, immediately) {
    const w = box.bbox_cmax - box.bbox_cmin + 1;
    const h = box.bbox_rmax - box.bbox_rmin + 1;
    const m = Math.max(40, 0.6 * Math.max(w, h));
    const r = viewer.viewport.imageToViewportRectangle(box.bbox_cmin - m, box.bbox_rmin - m, w + 2 * m, h + 2 * m);
    viewer.viewport.fitBounds(r, !!immediately);
  }

  function showBox(box, bounds) {
    viewer.clearOverlays();
    const el = document.createElement("div");
    el.className = "cluster-box";
    el.setAttribute("data-testid", "cluster-box");
    viewer.addOverlay({ element: el, location: boxRect(box) });
    if (bounds) viewer.viewport.fitBounds(bounds, true);
    else fitBox(box, true);
  }

  function tileSource(img) {
    const q = state.overlay ? "" : "?overlay=0";
    return {
      width: img.width, height: img.height, tileSize: img.tile_size, tileOverlap: img.overlap,
      minLevel: 0, maxLevel: img.max_level,
      getTileUrl: (level, x, y) => img.tiles + level + "/" + x + "_" + y + ".jpg" + q,
    };
  }

  function openImage(d, keepBounds) {
    const img = d.image;
    const gone = $("gone");
    $("image-note").textContent = img.available ? (img.message || "") : "";
    if (!img.available) {
      gone.textContent = img.message || "the scan image is not available";
      gone.hidden = false;
      if (viewer) viewer.close();
      state.scan = null;
      return;
    }
    gone.hidden = true;
    ensureViewer();
    const bounds = keepBounds ? viewer.viewport.getBounds() : null;
    if (state.scan === img.scan && !keepBounds) {
      showBox(d.box, null);
      return;
    }
    state.scan = img.scan;
    state.pendingBox = { box: d.box, bounds: bounds };
    viewer.open(tileSource(img));
  }

  // ------------------------------------------------------------------ panel
  function renderPanel(d) {
    $("title").textContent = "#" + d.rank + " · " + d.scan_id + " · cluster " + d.cluster_id;
    $("reason").textContent = d.reason;
    $("verdict").textContent = d.verdict || "not reviewed";
    $("note").value = d.note || "";
    const body = $("measurements").tBodies[0];
    body.replaceChildren();
    for (const [k, v] of d.measurements) {
      const tr = document.createElement("tr");
      const a = document.createElement("td");
      const b = document.createElement("td");
      a.textContent = k;
      b.textContent = v;
      tr.append(a, b);
      body.append(tr);
    }
  }

  async function select(i) {
    if (i < 0 || i >= state.items.length) return;
    state.pos = i;
    const it = state.items[i];
    renderList();
    scrollToCurrent();
    const q = "scan_id=" + encodeURIComponent(it.scan_id) + "&cluster_id=" + it.cluster_id;
    try {
      const d = await getJSON("/api/cluster?" + q);
      if (state.pos !== i) return; // moved on meanwhile
      state.detail = d;
      renderPanel(d);
      openImage(d, false);
    } catch (e) {
      status("cannot load the cluster: " + e.message);
    }
  }

  function step(delta) {
    const vis = visible();
    if (!vis.length) return;
    let target;
    if (delta > 0) target = vis.find((i) => i > state.pos);
    else target = [...vis].reverse().find((i) => i < state.pos);
    if (target === undefined) { status(delta > 0 ? "last cluster of this list" : "first cluster of this list"); return; }
    select(target);
  }

  async function send(verdict, note) {
    const it = state.items[state.pos];
    if (!it) return;
    const body = { scan_id: it.scan_id, cluster_id: it.cluster_id, verdict: verdict };
    if (note !== undefined) body.note = note;
    try {
      const r = await fetch("/api/feedback", {
        method: "POST", credentials: "same-origin",
        headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
      });
      const rec = await r.json().catch(() => ({ error: r.statusText }));
      if (!r.ok) throw new Error(rec.error || r.statusText);
      it.verdict = rec.verdict;
      it.note = rec.note;
      if (state.detail && state.detail.scan_id === it.scan_id && state.detail.cluster_id === it.cluster_id) {
        state.detail.verdict = rec.verdict;
        state.detail.note = rec.note;
        $("verdict").textContent = rec.verdict || "not reviewed";
      }
      status("saved " + (rec.verdict || "no verdict") + (note !== undefined ? " and note" : "") +
             " (revision " + rec.revision + ")");
      renderList();
      renderProgress();
    } catch (e) {
      status("not saved: " + e.message);
    }
  }

  function current() { return state.items[state.pos]; }

  // ------------------------------------------------------------------ loading
  async function load(keepKey) {
    const items = await getJSON("/api/clusters" + (state.order === "learned" ? "?order=learned" : ""));
    state.items = items;
    let pos = items.length ? 0 : -1;
    if (keepKey) {
      const j = items.findIndex((it) => it.scan_id === keepKey.scan_id && it.cluster_id === keepKey.cluster_id);
      if (j >= 0) pos = j;
    }
    renderProgress();
    state.pos = -1;
    renderList();
    if (pos >= 0) await select(pos);
    else status("this run has no clusters");
    try {
      const s = await getJSON("/api/summary");
      $("run").textContent = s.run;
      $("learned").textContent = state.order === "learned" ? s.learned_order : "";
    } catch (e) { /* the summary is informative only */ }
  }

  function onKey(e) {
    const t = e.target;
    const typing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT");
    if (typing) {
      if (t.id === "note" && e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        send(current() ? current().verdict : null, $("note").value);
      } else if (e.key === "Escape") {
        t.blur();
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const actions = {
      j: () => step(1), k: () => step(-1),
      c: () => send("confirmed"), d: () => send("dismissed"), u: () => send(null),
      n: () => $("note").focus(),
      o: () => { state.overlay = !state.overlay; state.scan = null; if (state.detail) openImage(state.detail, true); },
      "+": () => viewer && viewer.viewport.zoomBy(1.5), "=": () => viewer && viewer.viewport.zoomBy(1.5),
      "-": () => viewer && viewer.viewport.zoomBy(1 / 1.5),
      h: () => viewer && state.detail && fitBox(state.detail.box, false),
    };
    const fn = actions[e.key];
    if (!fn) return;
    e.preventDefault();
    e.stopPropagation(); // the viewer's own keys (w/a/s/d pan) must not see ours
    fn();
  }

  window.quantmetReview = { state: state, viewer: null };
  window.addEventListener("keydown", onKey, true);
  window.addEventListener("DOMContentLoaded", () => {
    $("confirm").addEventListener("click", () => send("confirmed"));
    $("dismiss").addEventListener("click", () => send("dismissed"));
    $("clear").addEventListener("click", () => send(null));
    $("save-note").addEventListener("click", () => send(current() ? current().verdict : null, $("note").value));
    $("filter").addEventListener("change", (e) => { state.filter = e.target.value; renderList(); });
    $("order").addEventListener("change", (e) => {
      state.order = e.target.value;
      const it = current();
      load(it ? { scan_id: it.scan_id, cluster_id: it.cluster_id } : null);
    });
    $("list").addEventListener("scroll", renderList);
    load(null).catch((e) => { $("progress").textContent = "cannot load the clusters: " + e.message; });
  });
})();
