// segbot's Review page: one recognition result, its outlines on a zoomable canvas, edits
// (delete, change class, new outlines by taps or a drag), undo/redo, a score filter, and Save as a
// correction. With ?image=<upload id> the same page is label mode: crop rectangles, a tap proposes
// an outline (the server's annotations.proposer) or takes the model's outline there, the model's
// outlines in the crops as proposals to accept or reject, Save as a LabelMe training file.
// Plain JS, no build step, no CDN; telegram-web-app.js is not needed (see initData()).
"use strict";
(function () {
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"]; // matplotlib's tab10, as on the overlay (annotations.export)
  const TAP_SLOP = 8; // CSS px a finger may move and still tap
  const CLOSE_RADIUS = 16; // CSS px around the first point that closes a polygon
  const TABLE_ROWS = 400;
  const OTHER_IOU = 0.6; // the model's and the proposer's outlines of a tap agree above this
  const IOU_GRID = 64; // samples per side for iou()
  const $ = (id) => document.getElementById(id);

  // ---- Telegram without telegram-web-app.js -------------------------------------------------
  const hash = new URLSearchParams(location.hash.slice(1));

  function initData() {
    // The official script, when a deployment adds it, has it parsed already; else Telegram passes
    // it in the URL fragment (#tgWebAppData=...), which we keep for reloads within the session.
    const fromScript = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData;
    const fromHash = hash.get("tgWebAppData");
    const value = fromScript || fromHash || sessionStorage.getItem("segbot.initData") || "";
    if (value) sessionStorage.setItem("segbot.initData", value);
    return value;
  }

  function postEvent(type, data) {
    // Telegram's client bridge (core.telegram.org/api/web-events): the app's webview, the desktop
    // app, or the web client's parent frame.
    const payload = JSON.stringify(data === undefined ? {} : data);
    try {
      if (window.TelegramWebviewProxy) { window.TelegramWebviewProxy.postEvent(type, payload); return true; }
      if (window.external && "notify" in window.external) {
        window.external.notify(JSON.stringify({ eventType: type, eventData: data })); return true;
      }
      if (window.parent !== window) {
        window.parent.postMessage(JSON.stringify({ eventType: type, eventData: data }), "*"); return true;
      }
    } catch (e) { /* not inside Telegram */ }
    return false;
  }
  const inTelegramApp = () => Boolean(window.TelegramWebviewProxy || (window.external && "notify" in window.external));
  const tgVersion = parseFloat(hash.get("tgWebAppVersion") || "0");

  function applyTheme() {
    let theme = null;
    try { theme = JSON.parse(hash.get("tgWebAppThemeParams") || "null"); } catch (e) { theme = null; }
    if (window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.themeParams) {
      theme = window.Telegram.WebApp.themeParams;
    }
    for (const [key, value] of Object.entries(theme || {})) {
      if (/^#[0-9a-f]{3,8}$/i.test(String(value))) {
        document.documentElement.style.setProperty("--tg-" + key.replace(/_/g, "-"), value);
      }
    }
  }

  function initUser() {
    try { return JSON.parse(new URLSearchParams(initData()).get("user") || "null") || {}; } catch (e) { return {}; }
  }

  // ---- texts ----------------------------------------------------------------------------------
  // From the server's gettext catalogs (GET /api/texts, web/texts.py): per language, key -> pattern,
  // or for a plural message {count: the value's name, forms: {CLDR category: pattern}}.
  let TEXTS = { en: {} };
  let lang = "en";
  async function loadTexts() {
    const response = await fetch("/api/texts");
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    TEXTS = await response.json();
  }
  function pickLang(...candidates) {
    for (const c of candidates) {
      const code = String(c || "").slice(0, 2).toLowerCase();
      if (TEXTS[code]) return code;
    }
    return "en";
  }
  function pattern(key, values) {
    const entry = (TEXTS[lang] || {})[key] || TEXTS.en[key];
    if (entry === undefined || typeof entry === "string") return entry;
    const n = Number(values && values[entry.count]) || 0;
    return entry.forms[new Intl.PluralRules(lang).select(n)] || entry.forms.other;
  }
  function t(key, values) {
    // A placeholder that is no value but another text's key is that text, with the same values.
    const text = pattern(key, values);
    if (text === undefined) return key;
    return text.replace(/\{(\w+)\}/g, (_, k) => {
      if (values && k in values) return values[k];
      return k in (TEXTS[lang] || TEXTS.en) ? t(k, values) : "";
    });
  }
  function translate() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
    document.querySelectorAll("[data-t-title]").forEach((el) => { el.title = t(el.dataset.tTitle); });
  }

  // ---- API ------------------------------------------------------------------------------------
  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({ Authorization: "tma " + initData() }, opts.headers || {});
    const response = await fetch(path, opts);
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  // ---- geometry -------------------------------------------------------------------------------
  function polygonArea(points) {
    let sum = 0;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      sum += points[j][0] * points[i][1] - points[i][0] * points[j][1];
    }
    return Math.abs(sum) / 2;
  }
  function centroid(points) {
    let x = 0, y = 0;
    for (const p of points) { x += p[0]; y += p[1]; }
    return [x / points.length, y / points.length];
  }
  function inside(points, x, y) {
    let hit = false;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [xi, yi] = points[i], [xj, yj] = points[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }
  function bbox(points) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const [x, y] of points) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
    return [x0, y0, x1, y1];
  }
  function iou(a, b) {
    // Intersection over union of two polygons, sampled on a grid over both boxes: enough to tell a
    // clear disagreement (IoU < OTHER_IOU) from two tracings of one particle.
    const [ax0, ay0, ax1, ay1] = bbox(a), [bx0, by0, bx1, by1] = bbox(b);
    const x0 = Math.min(ax0, bx0), y0 = Math.min(ay0, by0);
    const sx = (Math.max(ax1, bx1) - x0) / IOU_GRID, sy = (Math.max(ay1, by1) - y0) / IOU_GRID;
    let both = 0, either = 0;
    for (let i = 0; i < IOU_GRID; i++) {
      for (let j = 0; j < IOU_GRID; j++) {
        const x = x0 + (i + 0.5) * sx, y = y0 + (j + 0.5) * sy;
        const inA = inside(a, x, y), inB = inside(b, x, y);
        if (inA && inB) both += 1;
        if (inA || inB) either += 1;
      }
    }
    return either ? both / either : 0;
  }
  function circlePoints(cx, cy, r, n = 40) {
    const out = [];
    for (let k = 0; k < n; k++) out.push([cx + r * Math.cos((2 * Math.PI * k) / n), cy + r * Math.sin((2 * Math.PI * k) / n)]);
    return out;
  }
  function makeObject(fields) {
    // An immutable object record: edits replace records, so undo keeps old arrays as they were.
    const o = Object.assign({}, fields);
    o.area = o.area !== undefined ? o.area : (o.circle ? Math.PI * o.circle.r * o.circle.r : polygonArea(o.points));
    o.d = o.d !== undefined ? o.d : 2 * Math.sqrt(o.area / Math.PI);
    o.c = o.circle ? [o.circle.cx, o.circle.cy] : centroid(o.points);
    o.box = bbox(o.points);
    return Object.freeze(o);
  }

  // ---- state ----------------------------------------------------------------------------------
  const S = {
    resultId: null, result: null, image: null, original: 0,
    imageId: null, labelling: false, crops: [], nextCrop: 1, blobs: [], sliding: null, proposing: false,
    others: new Map(), // object key -> {model, contrast}: the two outlines of a tap where they disagree
    objects: [], undo: [], redo: [], selected: null, nextNew: 1,
    classes: [], newClass: "particle", minScore: 0, showIds: true, mode: "select",
    draft: [], circle: null, view: { scale: 1, tx: 0, ty: 0 }, sort: { key: "num", dir: 1 },
    dirty: false, saving: false,
  };

  // a model's proposal in label mode is shown dashed and saved only once accepted
  const visible = (o) => !o.proposal && (o.score === null || o.score >= S.minScore);
  // Proposals are drawn (offered) inside her crops, where each must be decided, or everywhere while
  // there is no crop yet (to see where to crop); the rest stay hidden until a tap lands on one.
  // Its guesses under her threshold (o.unsure) only ever inside a crop: everywhere they would bury the image.
  const offered = (o) => o.proposal && (S.crops.some((c) => cropOf(o, c)) || (!S.crops.length && !o.unsure));
  const shown = () => S.objects.filter(visible);
  const colour = (label) => PALETTE[Math.max(0, S.classes.indexOf(label)) % PALETTE.length];
  const scaled = () => Boolean(S.result && S.result.nm_per_px);
  const unit = () => (scaled() ? "nm" : "px");
  const dOf = (o) => (scaled() ? o.d * S.result.nm_per_px : o.d);
  const areaOf = (o) => (scaled() ? o.area * S.result.nm_per_px * S.result.nm_per_px : o.area);

  function fmt(value, digits = 3) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    return Math.abs(value) >= 1000 ? value.toFixed(0) : Number(value.toPrecision(digits)).toString();
  }

  function refreshClasses() {
    const set = new Set(S.result.classes);
    S.objects.forEach((o) => set.add(o.label));
    set.add(S.newClass);
    S.classes = Array.from(set).sort();
  }

  const snapshot = () => ({ objects: S.objects, crops: S.crops, selected: S.selected });
  function commit(objects, selected, crops) {
    // One undoable step.
    S.undo.push(S.sliding || snapshot());
    S.sliding = null;
    if (S.undo.length > 200) S.undo.shift();
    S.redo = [];
    S.objects = objects;
    if (crops !== undefined) S.crops = crops;
    S.selected = selected === undefined ? S.selected : selected;
    changed(true);
  }
  function stepHistory(from, to) {
    if (!from.length) return;
    to.push(snapshot());
    const step = from.pop();
    const before = outlineShown(S.objects, step.selected);
    S.objects = step.objects;
    S.crops = step.crops;
    S.selected = step.selected;
    changed(true);
    // undo/redo of "↻ Other outline" says which outline is shown now, as the swap itself does
    const after = outlineShown(S.objects, S.selected);
    if (after && after !== before) status(t(after === "contrast" ? "showingContrast" : "showingModel"), "ok");
  }
  function outlineShown(objects, key) {
    // "model" or "contrast" for an object with both outlines (S.others), else null
    const o = key && S.others.has(key) ? objects.find((x) => x.key === key) : null;
    return o ? o.outline || "model" : null;
  }
  function changed(edited) {
    if (edited) {
      S.dirty = true;
      postEvent("web_app_setup_closing_behavior", { need_confirmation: true });
    }
    if (S.selected && !S.objects.some((o) => o.key === S.selected)) S.selected = null;
    refreshClasses();
    renderControls();
    renderStats();
    renderTable();
    draw();
  }

  // ---- view -----------------------------------------------------------------------------------
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const toImage = (x, y) => [(x - S.view.tx) / S.view.scale, (y - S.view.ty) / S.view.scale];
  const toScreen = (x, y) => [x * S.view.scale + S.view.tx, y * S.view.scale + S.view.ty];

  function fit() {
    // The whole image, centred: what the page shows first (the browser test relies on it).
    const w = canvas.clientWidth, h = canvas.clientHeight;
    const scale = Math.min(w / S.result.width, h / S.result.height);
    S.view = { scale, tx: (w - S.result.width * scale) / 2, ty: (h - S.result.height * scale) / 2 };
    draw();
  }
  function zoomAt(x, y, factor) {
    const min = Math.min(canvas.clientWidth / S.result.width, canvas.clientHeight / S.result.height) / 4;
    const scale = Math.min(64, Math.max(min, S.view.scale * factor));
    const [ix, iy] = toImage(x, y);
    S.view = { scale, tx: x - ix * scale, ty: y - iy * scale };
    draw();
  }
  function centreOn(o) {
    const [x, y] = toScreen(o.c[0], o.c[1]);
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (x < 0 || y < 0 || x > w || y > h) { S.view.tx += w / 2 - x; S.view.ty += h / 2 - y; }
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(canvas.clientWidth * dpr);
    canvas.height = Math.round(canvas.clientHeight * dpr);
    draw();
  }

  function tracePath(points) {
    ctx.beginPath();
    points.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
  }

  function draw() {
    if (!S.result) return;
    const dpr = window.devicePixelRatio || 1, v = S.view, px = 1 / v.scale;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.tx, dpr * v.ty);
    ctx.imageSmoothingEnabled = v.scale < 2;
    if (S.image) ctx.drawImage(S.image, 0, 0, S.result.width, S.result.height);
    const list = shown();
    for (const o of list) {
      const sel = o.key === S.selected;
      tracePath(o.points);
      ctx.strokeStyle = colour(o.label);
      ctx.lineWidth = (sel ? 4 : 1.8) * px;
      if (sel) { ctx.fillStyle = "rgba(255,255,255,0.35)"; ctx.fill(); }
      ctx.stroke();
    }
    ctx.setLineDash([4 * px, 3 * px]);
    for (const o of S.objects) {
      if (!offered(o)) continue;
      const sel = o.key === S.selected;
      tracePath(o.points);
      if (sel) { ctx.fillStyle = "rgba(255,61,242,0.3)"; ctx.fill(); } // the one ✓ / ✗ would decide
      ctx.strokeStyle = sel ? "#fff" : "#ff3df2"; // magenta: no class colour, seen on grey
      ctx.lineWidth = (sel ? 3 : 2) * px;
      if (o.unsure) ctx.setLineDash([1.5 * px, 3 * px]); // dotted: a guess under her threshold
      ctx.stroke();
      if (o.unsure) ctx.setLineDash([4 * px, 3 * px]);
    }
    ctx.setLineDash([]);
    const boxes = S.crops.concat(S.rect ? [S.rect] : []);
    boxes.forEach((c, k) => {
      ctx.strokeStyle = "#ffd400";
      ctx.lineWidth = 2 * px;
      if (c === S.rect) ctx.setLineDash([6 * px, 4 * px]);
      ctx.strokeRect(c.x0, c.y0, c.x1 - c.x0, c.y1 - c.y0);
      ctx.setLineDash([]);
      if (c === S.rect) return;
      ctx.font = `bold ${13 * px}px system-ui, sans-serif`;
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      ctx.fillStyle = "#ffd400";
      ctx.fillText(String(k + 1), c.x0 + 3 * px, c.y0 + 3 * px);
    });
    if (S.showIds && (list.length <= 600 || v.scale > 1.5)) {
      ctx.font = `${12 * px}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.lineWidth = 3 * px;
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      ctx.fillStyle = "#fff";
      for (const o of list) {
        const label = o.id !== null ? String(o.id) : "+" + o.newNo;
        ctx.strokeText(label, o.c[0], o.c[1]);
        ctx.fillText(label, o.c[0], o.c[1]);
      }
    }
    if (S.draft.length) {
      ctx.strokeStyle = colour(S.newClass);
      ctx.fillStyle = colour(S.newClass);
      ctx.lineWidth = 2 * px;
      ctx.setLineDash([6 * px, 4 * px]);
      ctx.beginPath();
      S.draft.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      ctx.setLineDash([]);
      S.draft.forEach(([x, y], k) => {
        ctx.beginPath();
        ctx.arc(x, y, (k ? 4 : 7) * px, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
    if (S.circle) {
      ctx.strokeStyle = colour(S.newClass);
      ctx.lineWidth = 2 * px;
      ctx.setLineDash([6 * px, 4 * px]);
      ctx.beginPath();
      ctx.arc(S.circle.cx, S.circle.cy, S.circle.r, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  // ---- gestures: pointer events cover touch, pen and mouse ---------------------------------------
  const pointers = new Map();
  let gesture = null;

  function pos(e) {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }
  function pinchState() {
    const [a, b] = Array.from(pointers.values());
    return { d: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1, m: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
  }

  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, pos(e));
    if (pointers.size === 1) {
      gesture = { type: "tap", start: pos(e), view: Object.assign({}, S.view) };
    } else if (pointers.size === 2) {
      S.circle = null;
      const p = pinchState();
      gesture = { type: "pinch", d0: p.d, m0: p.m, view: Object.assign({}, S.view) };
    }
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId) || !gesture) return;
    const p = pos(e);
    pointers.set(e.pointerId, p);
    if (gesture.type === "tap" && Math.hypot(p[0] - gesture.start[0], p[1] - gesture.start[1]) > TAP_SLOP) {
      if (S.mode === "circle") {
        const [cx, cy] = toImage(gesture.start[0], gesture.start[1]);
        gesture.type = "circle";
        S.circle = { cx, cy, r: 0 };
      } else if (S.mode === "crop") {
        gesture.type = "crop";
      } else {
        gesture.type = "pan";
      }
    }
    if (gesture.type === "pan") {
      S.view = { scale: gesture.view.scale, tx: gesture.view.tx + p[0] - gesture.start[0], ty: gesture.view.ty + p[1] - gesture.start[1] };
      draw();
    } else if (gesture.type === "circle") {
      const [x, y] = toImage(p[0], p[1]);
      S.circle.r = Math.hypot(x - S.circle.cx, y - S.circle.cy);
      draw();
    } else if (gesture.type === "crop") {
      const [ax, ay] = toImage(gesture.start[0], gesture.start[1]), [bx, by] = toImage(p[0], p[1]);
      const clampX = (v) => Math.max(0, Math.min(S.result.width, v));
      const clampY = (v) => Math.max(0, Math.min(S.result.height, v));
      S.rect = { x0: clampX(Math.min(ax, bx)), y0: clampY(Math.min(ay, by)), x1: clampX(Math.max(ax, bx)), y1: clampY(Math.max(ay, by)) };
      draw();
    } else if (gesture.type === "pinch" && pointers.size === 2) {
      const now = pinchState(), v = gesture.view;
      const scale = Math.min(64, Math.max(v.scale / 8, (v.scale * now.d) / gesture.d0));
      const ix = (gesture.m0[0] - v.tx) / v.scale, iy = (gesture.m0[1] - v.ty) / v.scale;
      S.view = { scale, tx: now.m[0] - ix * scale, ty: now.m[1] - iy * scale };
      draw();
    }
  });
  function pointerEnd(e) {
    if (!pointers.has(e.pointerId)) return;
    const p = pos(e);
    pointers.delete(e.pointerId);
    if (gesture && e.type === "pointerup") {
      if (gesture.type === "tap") onTap(p);
      else if (gesture.type === "circle") finishCircle();
      else if (gesture.type === "crop") finishCrop();
    }
    if (e.type === "pointercancel") { S.circle = null; S.rect = null; }
    gesture = pointers.size ? { type: "none" } : null; // after a pinch, wait until every finger is up
    draw();
  }
  canvas.addEventListener("pointerup", pointerEnd);
  canvas.addEventListener("pointercancel", pointerEnd);
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [x, y] = pos(e);
    zoomAt(x, y, Math.exp(-e.deltaY * (e.deltaMode ? 0.05 : 0.0015)));
  }, { passive: false });

  function onTap([x, y]) {
    const [ix, iy] = toImage(x, y);
    if (S.mode === "polygon") {
      if (S.draft.length >= 3) {
        const [fx, fy] = toScreen(S.draft[0][0], S.draft[0][1]);
        if (Math.hypot(fx - x, fy - y) <= CLOSE_RADIUS) { finishPolygon(); return; }
      }
      S.draft = S.draft.concat([[ix, iy]]);
      renderControls();
      draw();
      return;
    }
    if (S.mode === "tap") { tapLabel(ix, iy); return; }
    if (S.mode !== "select") return;
    const best = objectAt(ix, iy, S.objects.filter((o) => visible(o) || offered(o)));
    S.selected = best ? best.key : null;
    changed(false);
  }
  function objectAt(ix, iy, list) {
    let best = null;
    for (const o of list) {
      const [x0, y0, x1, y1] = o.box;
      if (ix < x0 || ix > x1 || iy < y0 || iy > y1 || !inside(o.points, ix, iy)) continue;
      if (!best || o.area < best.area) best = o; // the smallest of overlapping outlines
    }
    return best;
  }

  function nearest(ix, iy, list) {
    // The model's outline "at" a tap: one holding it, else the one whose centre is within half its
    // D (a finger lands beside a small particle), the nearest relative to its size.
    const hit = objectAt(ix, iy, list);
    if (hit) return hit;
    let best = null, bestRel = 0.5;
    for (const o of list) {
      const rel = Math.hypot(o.c[0] - ix, o.c[1] - iy) / o.d;
      if (rel <= bestRel) { best = o; bestRel = rel; }
    }
    return best;
  }

  // ---- label mode: a tap selects a proposal (then ✓ or ✗), takes the model's hidden outline, or
  // asks the server for one ---------------------------------------------------------------------
  async function tapLabel(ix, iy) {
    try {
      await answerTap(ix, iy);
    } finally { // for the browser test: this tap is answered
      document.body.dataset.proposals = String(Number(document.body.dataset.proposals || 0) + 1);
    }
  }
  async function answerTap(ix, iy) {
    const drawn = S.objects.filter(offered), mine = shown();
    // A drawn proposal is decided by ✓ or ✗, never by the tap itself: the model's false positive
    // is exactly a spot a finger taps, so a tap alone must not mean "yes".
    const pick = objectAt(ix, iy, drawn) || objectAt(ix, iy, mine) || nearest(ix, iy, drawn);
    if (pick) { S.selected = pick.key; changed(false); return; }
    const hidden = nearest(ix, iy, S.objects.filter((o) => o.proposal && !offered(o)));
    if (hidden) { // her model has an outline here: it beats the contrast threshold
      accept([hidden.key], hidden.key);
      status(t("modelOutline"), "ok");
      await offerOther(hidden, ix, iy);
      return;
    }
    if (S.proposing) return;
    S.proposing = true;
    status("");
    try {
      const found = await propose(ix, iy);
      if (found) addObject({ shape: "polygon", points: found, base: found, factor: 1 });
      else status(t("noOutline"), "error");
    } catch (error) {
      status(error.message, "error");
    } finally {
      S.proposing = false;
    }
  }
  async function propose(ix, iy) {
    // The contrast proposer's outline around a tap (the server's annotations.proposer), or null.
    const response = await api(`/api/images/${S.imageId}/propose`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ x: ix, y: iy }),
    });
    return (await response.json()).points || null;
  }
  async function offerOther(taken, ix, iy) {
    // A young model may draw a blob over several particles or half of one, where the proposer is
    // right (docs/benchmarks.md, issue 28): where the two disagree clearly, she may swap them.
    let found = null;
    try { found = await propose(ix, iy); } catch (error) { return; } // the model's outline stands
    if (!found || iou(taken.points, found) >= OTHER_IOU) return;
    S.others.set(taken.key, { model: taken.points, contrast: found });
    if (S.selected === taken.key) status(t("showingModel"), "ok");
    renderControls();
  }
  function swapOutline() {
    // One undoable step; the outline she did not pick stays offered until she deletes the object.
    const sel = S.objects.find((o) => o.key === S.selected);
    const pair = sel && S.others.get(sel.key);
    if (!pair) return;
    const to = sel.outline === "contrast" ? "model" : "contrast";
    commit(S.objects.map((o) => (o.key === sel.key ? makeObject(Object.assign({}, o, {
      points: pair[to], base: pair[to], factor: 1, area: undefined, d: undefined, outline: to,
    })) : o)));
    status(t(to === "contrast" ? "showingContrast" : "showingModel"), "ok");
  }
  function accept(keys, selected) {
    // The model's outlines become hers, in the model's class (one undoable step); Size works on them.
    const take = new Set(keys);
    commit(S.objects.map((o) => (take.has(o.key)
      ? makeObject(Object.assign({}, o, { proposal: false, unsure: false, score: null, base: o.points, factor: 1 })) : o)), selected);
  }
  function reject(key) {
    // "Nothing here": the proposal goes (undo brings it back); a later tap there asks the server.
    commit(S.objects.filter((o) => o.key !== key), null);
  }
  function finishCrop() {
    const c = S.rect;
    S.rect = null;
    if (!c || (c.x1 - c.x0) * S.view.scale < 12 || (c.y1 - c.y0) * S.view.scale < 12) return;
    commit(S.objects, S.selected, S.crops.concat([Object.assign({ key: "c" + S.nextCrop++ }, c)]));
  }
  function scaledOutline(o, factor) {
    const [cx, cy] = centroid(o.base);
    return makeObject(Object.assign({}, o, {
      factor, area: undefined, d: undefined,
      points: o.base.map(([x, y]) => [cx + (x - cx) * factor, cy + (y - cy) * factor]),
    }));
  }
  $("sel-size").oninput = (e) => {
    const sel = S.objects.find((o) => o.key === S.selected);
    if (!sel || !sel.base) return;
    if (!S.sliding) S.sliding = snapshot(); // the whole slide is one undoable step
    S.objects = S.objects.map((o) => (o.key === sel.key ? scaledOutline(o, parseFloat(e.target.value)) : o));
    draw();
  };
  $("sel-size").onchange = () => { if (S.sliding) commit(S.objects); };

  const inCrops = (list) => list.filter((o) => S.crops.some((c) => cropOf(o, c)));
  // What "accept all" takes: the model's outlines in her crops, as they are (✗ drops one first); its
  // guesses under her threshold, often no particle at all, are decided one by one.
  const acceptable = () => inCrops(S.objects.filter((o) => o.proposal && !o.unsure));
  $("accept-all").onclick = () => { accept(acceptable().map((o) => o.key), null); };
  $("verdict-yes").onclick = () => { if (S.selected) accept([S.selected], S.selected); };
  $("verdict-no").onclick = () => { if (S.selected) reject(S.selected); };
  function cropOf(o, c) { return o.c[0] >= c.x0 && o.c[0] <= c.x1 && o.c[1] >= c.y0 && o.c[1] <= c.y1; }
  function renderCrops() {
    if (!S.labelling) return;
    const objects = shown();
    const lines = [], warnings = [];
    S.crops.forEach((c, k) => {
      const mine = objects.filter((o) => cropOf(o, c));
      lines.push(t("cropCount", { k: k + 1, n: mine.length }));
      // particle-like spots (the server's Otsu + watershed) no outline covers: maybe one was missed
      const ds = mine.map((o) => o.d).sort((a, b) => a - b);
      const floor = ds.length ? 0.5 * ds[Math.floor(ds.length / 2)] : 0;
      const missed = S.blobs.filter(([x, y, d]) => x >= c.x0 && x <= c.x1 && y >= c.y0 && y <= c.y1 && d >= floor
        && !objects.some((o) => inside(o.points, x, y))).length;
      if (missed) warnings.push(t("missed", { k: k + 1, n: missed }));
    });
    if (!S.crops.length) warnings.push(t("noCrops"));
    const pending = S.objects.filter(offered).length;
    if (pending) warnings.push(t("proposals", { n: pending }));
    $("crop-list").replaceChildren(...lines.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
    $("warnings").textContent = warnings.join("\n");
  }

  function addObject(fields) {
    const o = makeObject(Object.assign({ key: "n" + S.nextNew, id: null, newNo: S.nextNew, label: S.newClass, score: null }, fields));
    S.nextNew += 1;
    commit(S.objects.concat([o]), o.key);
  }
  function finishPolygon() {
    if (S.draft.length < 3) return;
    const points = S.draft;
    S.draft = [];
    addObject({ shape: "polygon", points });
  }
  function finishCircle() {
    const c = S.circle;
    S.circle = null;
    if (!c || c.r * S.view.scale < 4) return; // a slip, not a circle
    addObject({ shape: "circle", circle: c, points: circlePoints(c.cx, c.cy, c.r) });
  }

  // ---- controls -------------------------------------------------------------------------------
  function setMode(mode) {
    S.rect = null;
    S.mode = mode;
    S.draft = [];
    S.circle = null;
    if (mode !== "select") S.selected = null;
    changed(false);
  }

  function fillClassSelect(select, value) {
    select.replaceChildren();
    for (const c of S.classes) select.append(new Option(c, c, false, c === value));
    select.append(new Option(t("addClass"), "\u0000new"));
    select.value = value;
  }
  function askClass(select, fallback) {
    const name = (window.prompt(t("addClassPrompt")) || "").trim().slice(0, 100);
    if (!name || name.toLowerCase() === "crop") { select.value = fallback; return null; }
    return name;
  }

  function renderControls() {
    for (const m of ["crop", "tap", "select", "polygon", "circle"]) $("mode-" + m).classList.toggle("on", S.mode === m);
    $("undo").disabled = !S.undo.length;
    $("redo").disabled = !S.redo.length;
    $("ids").classList.toggle("on", S.showIds);
    $("hint").textContent = t({ select: "hintSelect", polygon: "hintPolygon", circle: "hintCircle", crop: "hintCrop", tap: "hintTap" }[S.mode]);
    $("drawbar").hidden = S.mode !== "polygon" || !S.draft.length;
    $("draw-hint").textContent = t("points", { n: S.draft.length });
    $("draw-done").disabled = S.draft.length < 3;
    const sel = S.objects.find((o) => o.key === S.selected);
    $("selbar").hidden = !sel;
    $("verdict").hidden = !(sel && sel.proposal);
    otherButton.hidden = !(sel && !sel.proposal && S.others.has(sel.key));
    if (sel) {
      const name = sel.unsure ? t("modelUnsure") : sel.proposal ? t("modelProposal") : sel.id !== null ? "#" + sel.id : t("newObject") + " +" + sel.newNo;
      $("sel-info").textContent = `${name} · D ${fmt(dOf(sel))} ${unit()}` + (sel.score !== null ? ` · ${sel.score.toFixed(2)}` : "");
      fillClassSelect($("sel-class"), sel.label);
      $("sel-size-row").hidden = !sel.base;
      if (sel.base) $("sel-size").value = String(sel.factor);
      $("sel-delete").hidden = Boolean(sel.proposal); // ✓ / ✗ below instead
      otherButton.textContent = t("otherOutline");
      $("verdict-yes").textContent = "✓ " + sel.label; // "yes, a particle there": the class names it
    }
    fillClassSelect($("new-class"), S.newClass);
    $("score-value").textContent = S.minScore.toFixed(2);
    const hidden = S.objects.length - shown().length;
    $("hidden-count").textContent = hidden ? t("hidden", { n: hidden }) : "";
    const waiting = acceptable().length;
    $("accept-all").hidden = !S.labelling || !waiting;
    $("accept-all").textContent = t("acceptAll", { n: waiting });
    $("save").textContent = S.saving ? t("saving") : t(S.labelling ? "saveLabels" : "save", { n: shown().length });
    $("save").disabled = S.saving;
    $("dirty").hidden = !S.dirty;
  }

  // "↻ Other outline" lives beside Delete; made here so the page's HTML stays as it is
  const otherButton = document.createElement("button");
  Object.assign(otherButton, { type: "button", id: "sel-other", hidden: true, onclick: swapOutline });
  $("selbar").insertBefore(otherButton, $("sel-delete"));
  $("mode-select").onclick = () => setMode("select");
  $("mode-crop").onclick = () => setMode("crop");
  $("mode-tap").onclick = () => setMode("tap");
  $("mode-polygon").onclick = () => setMode("polygon");
  $("mode-circle").onclick = () => setMode("circle");
  $("undo").onclick = () => stepHistory(S.undo, S.redo);
  $("redo").onclick = () => stepHistory(S.redo, S.undo);
  $("ids").onclick = () => { S.showIds = !S.showIds; renderControls(); draw(); };
  $("fit").onclick = () => fit();
  $("draw-done").onclick = () => finishPolygon();
  $("draw-cancel").onclick = () => { S.draft = []; changed(false); };
  $("sel-delete").onclick = () => {
    if (S.selected) commit(S.objects.filter((o) => o.key !== S.selected), null);
  };
  $("sel-class").onchange = (e) => {
    const sel = S.objects.find((o) => o.key === S.selected);
    if (!sel) return;
    let label = e.target.value;
    if (label === "\u0000new") label = askClass(e.target, sel.label);
    if (!label || label === sel.label) { changed(false); return; }
    commit(S.objects.map((o) => (o.key === sel.key ? makeObject(Object.assign({}, o, { label })) : o)));
  };
  $("new-class").onchange = (e) => {
    let label = e.target.value;
    if (label === "\u0000new") label = askClass(e.target, S.newClass);
    if (label) S.newClass = label;
    changed(false);
  };
  $("score").oninput = (e) => { S.minScore = parseFloat(e.target.value) || 0; changed(false); };
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    const proposal = S.objects.some((o) => o.key === S.selected && o.proposal);
    if ((e.key === "Delete" || e.key === "Backspace") && S.selected) $(proposal ? "verdict-no" : "sel-delete").click();
    else if (e.key === "Enter" && proposal) $("verdict-yes").click();
    else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") stepHistory(e.shiftKey ? S.redo : S.undo, e.shiftKey ? S.undo : S.redo);
    else if (e.key === "Enter" && S.mode === "polygon") finishPolygon();
    else if (e.key === "Escape") { S.draft = []; S.selected = null; changed(false); }
  });

  // ---- numbers: counts, histogram, table --------------------------------------------------------
  function renderStats() {
    const counts = {};
    for (const o of shown()) counts[o.label] = (counts[o.label] || 0) + 1;
    const chips = Object.keys(counts).sort().map((label) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      const dot = document.createElement("i");
      dot.style.background = colour(label);
      chip.append(dot, `${label}: ${counts[label]}`);
      return chip;
    });
    $("counts").replaceChildren(...chips);
    drawHistogram(shown().map(dOf));
    renderCrops();
  }

  function drawHistogram(values) {
    const hc = $("hist"), dpr = window.devicePixelRatio || 1;
    hc.width = Math.round(hc.clientWidth * dpr);
    hc.height = Math.round(hc.clientHeight * dpr);
    const g = hc.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const w = hc.clientWidth, h = hc.clientHeight, pad = 22;
    g.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    g.fillStyle = style.getPropertyValue("--hint") || "#888";
    g.font = "11px system-ui, sans-serif";
    $("hist-title").textContent = `${t("histogram")} (${t("dLabel", { unit: unit() })})`;
    if (!values.length) return;
    const lo = Math.min(...values), hi = Math.max(...values);
    const bins = Math.max(5, Math.min(24, Math.round(Math.sqrt(values.length)) + 2));
    const width = (hi - lo) / bins || 1;
    const counts = new Array(bins).fill(0);
    for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1;
    const top = Math.max(...counts);
    const bw = (w - 2 * pad) / bins;
    counts.forEach((c, k) => {
      const bh = ((h - 2 * pad) * c) / top;
      g.fillStyle = style.getPropertyValue("--button") || "#2a7ae2";
      g.fillRect(pad + k * bw + 1, h - pad - bh, Math.max(1, bw - 2), bh);
    });
    g.fillStyle = style.getPropertyValue("--text") || "#000";
    g.textAlign = "left";
    g.fillText(fmt(lo), pad, h - 6);
    g.textAlign = "right";
    g.fillText(fmt(lo + width * bins), w - pad, h - 6);
    g.fillText(String(top), pad - 3, pad + 4);
    g.textAlign = "center";
    g.fillText(`n = ${values.length}`, w / 2, 14);
  }

  function renderTable() {
    $("th-d").textContent = t("dLabel", { unit: unit() });
    $("th-area").textContent = t("areaLabel", { unit: unit() });
    const key = S.sort.key, dir = S.sort.dir;
    const value = {
      num: (o) => (o.id !== null ? o.id : 1e9 + o.newNo), label: (o) => o.label, d: (o) => o.d,
      area: (o) => o.area, score: (o) => (o.score === null ? 2 : o.score),
    }[key];
    const rows = shown().slice().sort((a, b) => {
      const x = value(a), y = value(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    document.querySelectorAll("#table th").forEach((th) => {
      th.classList.toggle("asc", th.dataset.key === key && dir > 0);
      th.classList.toggle("desc", th.dataset.key === key && dir < 0);
    });
    const body = rows.slice(0, TABLE_ROWS).map((o) => {
      const tr = document.createElement("tr");
      tr.dataset.key = o.key;
      if (o.key === S.selected) tr.className = "sel";
      const sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = colour(o.label);
      const cells = [o.id !== null ? String(o.id) : "+" + o.newNo, null, fmt(dOf(o)), fmt(areaOf(o)),
        o.score === null ? "–" : o.score.toFixed(2)];
      cells.forEach((text, k) => {
        const td = document.createElement("td");
        if (k === 1) td.append(sw, o.label); else td.textContent = text;
        tr.append(td);
      });
      return tr;
    });
    $("table").tBodies[0].replaceChildren(...body);
    $("table-more").textContent = rows.length > TABLE_ROWS ? t("more", { n: rows.length - TABLE_ROWS }) : "";
    const selRow = $("table").querySelector("tr.sel");
    // (not while labelling: taps on the picture select the new outline, and the page must not jump)
    if (selRow && selRow.scrollIntoView && !S.labelling) selRow.scrollIntoView({ block: "nearest" });
  }
  document.querySelectorAll("#table th").forEach((th) => {
    th.onclick = () => {
      S.sort = { key: th.dataset.key, dir: S.sort.key === th.dataset.key ? -S.sort.dir : 1 };
      renderTable();
    };
  });
  $("table").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (!tr) return;
    if (S.mode !== "select") setMode("select");
    S.selected = tr.dataset.key;
    const o = S.objects.find((x) => x.key === S.selected);
    if (o) centreOn(o);
    changed(false);
  });

  // ---- save and downloads -----------------------------------------------------------------------
  function status(text, kind) {
    $("status").textContent = text;
    $("status").className = "status " + (kind || "");
  }

  $("save").onclick = async () => {
    if (S.saving) return;
    if (S.labelling) { saveLabels(); return; }
    S.saving = true;
    renderControls();
    status("");
    const objects = shown().map((o) => {
      if (o.id !== null) return { id: o.id, label: o.label };
      if (o.shape === "circle") {
        const c = o.circle;
        return { label: o.label, shape_type: "circle", points: [[c.cx, c.cy], [c.cx + c.r, c.cy]] };
      }
      return { label: o.label, shape_type: "polygon", points: o.points };
    });
    try {
      const response = await api(`/api/results/${S.resultId}/correction`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ objects }),
      });
      const saved = await response.json();
      S.dirty = false;
      postEvent("web_app_setup_closing_behavior", { need_confirmation: false });
      status(t("saved", saved), "ok");
    } catch (error) {
      status(error.message, "error");
    } finally {
      S.saving = false;
      renderControls();
    }
  };

  async function saveLabels() {
    S.saving = true;
    renderControls();
    status("");
    const objects = shown().map((o) => (o.shape === "circle"
      ? { label: o.label, shape_type: "circle", points: [[o.circle.cx, o.circle.cy], [o.circle.cx + o.circle.r, o.circle.cy]] }
      : { label: o.label, shape_type: "polygon", points: o.points }));
    const crops = S.crops.map((c) => [c.x0, c.y0, c.x1, c.y1]);
    try {
      await api(`/api/images/${S.imageId}/labels`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ crops, objects }),
      });
      S.dirty = false;
      postEvent("web_app_setup_closing_behavior", { need_confirmation: false });
      status(t("savedLabels"), "ok");
    } catch (error) {
      status(error.message, "error");
    } finally {
      S.saving = false;
      renderControls();
    }
  }

  async function download(role, e) {
    e.preventDefault();
    try {
      const links = await (await api(`/api/results/${S.resultId}/links`, { method: "POST" })).json();
      const link = links[role];
      const url = new URL(link.url, location.href).href;
      if (inTelegramApp() && tgVersion >= 8) { // the app's webview does not download by itself
        postEvent("web_app_request_file_download", { url, file_name: link.name });
        return;
      }
      const a = document.createElement("a");
      a.href = url;
      a.download = link.name;
      document.body.append(a);
      a.click();
      a.remove();
    } catch (error) {
      status(error.message, "error");
    }
  }
  $("dl-labelme").onclick = (e) => download("labelme", e);
  $("dl-csv").onclick = (e) => download("csv", e);
  window.addEventListener("beforeunload", (e) => { if (S.dirty) { e.preventDefault(); e.returnValue = ""; } });

  // ---- start ----------------------------------------------------------------------------------
  function message(text) {
    $("message").textContent = text;
    $("message").hidden = !text;
  }

  async function showPicker() {
    const me = await (await api("/api/me")).json();
    lang = pickLang(me.language, lang);
    translate();
    const list = $("picker-list");
    list.replaceChildren(...me.results.map((r) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `?result=${r.id}${location.hash}`;
      a.textContent = `${r.name} (${r.n_objects})`;
      li.append(a);
      return li;
    }));
    $("picker").hidden = false;
    message(me.results.length ? "" : t("none"));
  }

  async function start() {
    applyTheme();
    postEvent("web_app_ready");
    postEvent("web_app_expand");
    try {
      await loadTexts();
    } catch (error) {
      message(error.message);
      return;
    }
    lang = pickLang(initUser().language_code, navigator.language);
    translate();
    if (!initData()) { message(t("noAuth")); return; }
    const rid = new URLSearchParams(location.search).get("result");
    const iid = new URLSearchParams(location.search).get("image");
    try {
      if (iid && /^\d{1,12}$/.test(iid)) { await startLabelling(iid); return; }
      if (!rid || !/^\d{1,12}$/.test(rid)) { await showPicker(); return; }
      S.resultId = rid;
      const view = await (await api(`/api/results/${rid}`)).json();
      lang = pickLang(view.language, lang);
      translate();
      S.result = Object.assign({ classes: view.classes }, view.result);
      S.newClass = view.classes[0] || "particle";
      S.objects = view.objects.map((o) => makeObject({
        key: "o" + o.id, id: o.id, label: o.label, points: o.points, score: o.score,
        area: o.area_px, d: o.d_px, shape: "polygon",
      }));
      S.original = S.objects.length;
      S.showIds = view.ids_fit !== false; // off when they would cover the particles (as on the overlay)
      await showImage(`/api/results/${rid}/image`);
    } catch (error) {
      message(error.message);
    }
  }
  async function showImage(path) {
    $("title").textContent = S.result.name;
    document.title = `segbot · ${S.result.name}`;
    const blob = await (await api(path)).blob();
    S.image = await createImageBitmap(blob);
    $("main").hidden = false;
    message("");
    resize();
    fit();
    changed(false);
    document.body.dataset.ready = "1"; // for the browser test: everything is drawn
  }
  async function startLabelling(iid) {
    S.labelling = true;
    S.imageId = iid;
    document.body.classList.add("labelling");
    const view = await (await api(`/api/images/${iid}`)).json();
    lang = pickLang(view.language, lang);
    translate();
    S.result = Object.assign({ classes: view.classes, nm_per_px: null }, view.image);
    S.newClass = view.classes.includes("particle") ? "particle" : view.classes[0];
    S.blobs = view.blobs || [];
    S.crops = view.crops.map(([x0, y0, x1, y1]) => ({ key: "c" + S.nextCrop++, x0, y0, x1, y1 }));
    const fresh = (o, proposal, unsure = false) => makeObject({ key: "n" + S.nextNew, id: null, newNo: S.nextNew++, label: o.label, points: o.points, score: proposal ? o.score : null, shape: "polygon", proposal, unsure });
    // a saved crop is complete: every model outline in it was accepted (it is among her outlines)
    // or rejected, so only the others come back as proposals
    const open = (o) => !S.crops.some((c) => cropOf(o, c));
    S.objects = view.objects.map((o) => fresh(o, false)).concat(view.proposals.map((o) => fresh(o, true)).filter(open),
      (view.unsure || []).map((o) => fresh(o, true, true)).filter(open));
    S.showIds = false; // new outlines have no ids worth reading; the counts are per crop
    const suggest = new URLSearchParams(location.search).get("suggest") === "1";
    if (suggest && !S.crops.length && view.suggested.length) { // "Label where the model is least sure"
      S.crops = view.suggested.map(([x0, y0, x1, y1]) => ({ key: "c" + S.nextCrop++, x0, y0, x1, y1 }));
      status(t("suggested", { n: S.crops.length }), "ok");
    }
    S.mode = S.crops.length ? "tap" : "crop";
    await showImage(`/api/images/${iid}/image`);
  }
  window.addEventListener("resize", () => { if (S.result) { resize(); renderStats(); } });
  start();
})();
