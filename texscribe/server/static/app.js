// texscribe web page: draw, paste, drop or upload an image of math; get LaTeX back and a KaTeX preview.
// Talks only to this server's /v1 API; KaTeX is served locally from /static/vendor/katex.
"use strict";

const HISTORY_KEY = "texscribe.history.v1";
const HISTORY_SIZE = 12;
const AUTO_DELAY_MS = 700;

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");

// ------------------------------------------------------------------------------------------ drawing
// Strokes are kept as point lists so undo can redraw; coordinates are canvas pixels. While drawing, each
// pointer move paints only its new segments, so a move costs the same after 10 points or 1,000; the
// whole picture is repainted only when it changes as a whole (undo, clear, ink colour). Both paths paint
// the same dot + one path per segment, so a repaint gives exactly the pixels drawn live.
const strokes = [];
let current = null;
let autoTimer = null;
let pendingUpload = null; // a File/Blob chosen by upload, paste or drop (sent instead of the canvas)

function inkColors() {
  return $("ink").value === "light" ? { bg: "#000000", fg: "#ffffff" } : { bg: "#ffffff", fg: "#000000" };
}

function redraw() {
  const { bg, fg } = inkColors();
  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = fg;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of strokes) drawStroke(s);
}

function drawStroke(s) {
  drawDot(s.points[0], s.width);
  for (let i = 1; i < s.points.length; i++) drawSegment(s.points[i - 1], s.points[i], s.width);
}

function drawDot(p, width) {
  drawSegment(p, { x: p.x + 0.1, y: p.y }, width); // a zero-length path paints nothing; round caps make a dot
}

function drawSegment(a, b, width) {
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
}

function showPenWidth() {
  $("width-value").textContent = `${$("width").value} px`;
}

function toCanvas(ev) {
  const r = pad.getBoundingClientRect();
  return { x: ((ev.clientX - r.left) * pad.width) / r.width, y: ((ev.clientY - r.top) * pad.height) / r.height };
}

pad.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0 && ev.pointerType === "mouse") return;
  ev.preventDefault();
  try {
    pad.setPointerCapture(ev.pointerId); // keep the stroke when the pointer leaves the canvas
  } catch {
    /* synthetic or already-released pointers cannot be captured; drawing works without it */
  }
  clearTimeout(autoTimer);
  usingCanvas();
  // pens report pressure; mouse and touch report 0.5 while pressed
  const width = Number($("width").value) * (ev.pointerType === "pen" ? 0.5 + ev.pressure : 1);
  current = { width, points: [toCanvas(ev)], id: ev.pointerId };
  strokes.push(current);
  drawDot(current.points[0], width);
});

pad.addEventListener("pointermove", (ev) => {
  if (!current || ev.pointerId !== current.id) return;
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
  for (const e of events.length ? events : [ev]) {
    const p = toCanvas(e);
    drawSegment(current.points[current.points.length - 1], p, current.width);
    current.points.push(p);
  }
});

function endStroke(ev) {
  if (!current || ev.pointerId !== current.id) return;
  current = null;
  if ($("auto").checked) autoTimer = setTimeout(recognize, AUTO_DELAY_MS);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("undo").addEventListener("click", () => {
  strokes.pop();
  redraw();
});
$("clear").addEventListener("click", () => {
  // a fresh start: no strokes, no image, and nothing left from the last result or a request still out
  clearTimeout(autoTimer);
  strokes.length = 0;
  current = null;
  redraw();
  clearUpload();
  inFlight++; // an answer still on its way is for the cleared input: drop it
  $("recognize").disabled = false;
  $("latex").value = "";
  render();
  showConfidence(null);
  setStatus("");
});
$("ink").addEventListener("change", redraw);
$("width").addEventListener("input", showPenWidth);
document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "z" && document.activeElement !== $("latex")) {
    ev.preventDefault();
    strokes.pop();
    redraw();
  }
});

function usingCanvas() {
  if (pendingUpload) clearUpload();
}

// ------------------------------------------------------------------------------------------ images in
function useImage(blob, label) {
  if (!blob || !blob.type.startsWith("image/")) {
    setStatus(`not an image: ${label || (blob && blob.type) || "unknown"}`, true);
    return;
  }
  pendingUpload = blob;
  const img = $("upload-preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  $("drop-hint").firstChild.textContent = `${label || "image"} — drop, paste or `;
  recognize();
}

function clearUpload() {
  pendingUpload = null;
  const img = $("upload-preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  img.hidden = true;
  $("drop-hint").firstChild.textContent = "Drop an image here, paste one (Ctrl+V), or ";
}

$("file-input").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (file) useImage(file, file.name);
  ev.target.value = "";
});

const drop = $("drop");
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  const file = ev.dataTransfer.files[0];
  if (file) useImage(file, file.name);
});

document.addEventListener("paste", (ev) => {
  if (document.activeElement === $("latex")) return; // pasting text into the editor
  const item = [...(ev.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (!item) return;
  ev.preventDefault();
  useImage(item.getAsFile(), "pasted image");
});

// ------------------------------------------------------------------------------------------ recognition
function canvasBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

// An upload is sent as the file; canvas ink as its pen strokes, which the server draws at the model's
// handwriting scale: a formula drawn small with a thick pen reads like one drawn at any other size.
function predictRequest(blob) {
  const beam = Number($("beam").value);
  if (!pendingUpload) {
    const points = strokes.map((s) => s.points.map((p) => [p.x, p.y]));
    return {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ strokes: points, beam }),
    };
  }
  const form = new FormData();
  form.append("file", blob, pendingUpload.name || "upload.png");
  form.append("beam", String(beam));
  return { method: "POST", body: form };
}

let inFlight = 0;
async function recognize() {
  clearTimeout(autoTimer);
  if (!pendingUpload && strokes.length === 0) {
    setStatus("draw a formula or add an image first", true);
    return;
  }
  const blob = pendingUpload || (await canvasBlob()); // the canvas picture is kept for the history
  const ticket = ++inFlight;
  setStatus("recognising…");
  $("recognize").disabled = true;
  try {
    const res = await fetch("/v1/predict", predictRequest(blob));
    const body = await res.json().catch(() => ({}));
    if (ticket !== inFlight) return; // a newer request superseded this one
    if (!res.ok) {
      const err = body.error || { code: res.status, message: res.statusText };
      setStatus(`${err.message} [${err.code}]`, true);
      return;
    }
    showResult(body);
    addHistory(body, blob);
    setStatus(`done in ${Math.round(body.timing_ms.total)} ms`);
  } catch (e) {
    if (ticket === inFlight) setStatus(`request failed: ${e.message}`, true);
  } finally {
    if (ticket === inFlight) $("recognize").disabled = false;
  }
}
$("recognize").addEventListener("click", recognize);

function showResult(r) {
  $("latex").value = r.latex;
  render();
  showConfidence(r);
}

function showConfidence(r) {
  const el = $("confidence");
  if (!r) {
    el.textContent = "";
    el.title = "";
    el.classList.remove("error");
    return;
  }
  const pct = (p) => `${(100 * p).toFixed(1)}%`;
  el.textContent = `confidence: weakest token ${pct(r.min_prob)} · mean ${pct(r.score)} · beam ${r.beam} · ${r.tokens.length} tokens`;
  el.title = "token probabilities the model gave its own output; low values flag results to check";
  el.classList.toggle("error", r.min_prob < 0.3);
}

function setStatus(text, bad = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", bad);
}

// ------------------------------------------------------------------------------------------ preview and copy
function render() {
  const el = $("preview");
  const tex = $("latex").value;
  if (!tex.trim()) {
    el.replaceChildren(); // nothing to show (KaTeX would leave an empty formula box)
    return;
  }
  if (!window.katex) {
    // KaTeX missing (e.g. a stripped install): still show the text, say why there is no rendering
    el.textContent = `${tex}  (preview unavailable: KaTeX not loaded)`;
    return;
  }
  katex.render(tex, el, { displayMode: true, throwOnError: false, strict: "ignore" });
}
$("latex").addEventListener("input", render);

$("copy").addEventListener("click", async () => {
  const text = $("latex").value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    $("latex").select(); // clipboard API needs a secure context; fall back to the selection
    document.execCommand("copy");
  }
  setStatus("copied");
});

// ------------------------------------------------------------------------------------------ history
function loadHistory() {
  try {
    const items = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

function saveHistory(items) {
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, HISTORY_SIZE)));
  } catch {
    /* storage full or disabled: history is a convenience only */
  }
}

function addHistory(r) {
  const items = loadHistory().filter((h) => h.latex !== r.latex);
  items.unshift({ latex: r.latex, min_prob: r.min_prob, at: new Date().toISOString() });
  saveHistory(items);
  showHistory();
}

function showHistory() {
  const list = $("history");
  list.replaceChildren();
  for (const h of loadHistory()) {
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = h.latex;
    const meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = ` · ${(100 * h.min_prob).toFixed(0)}% · ${new Date(h.at).toLocaleString()}`;
    li.append(code, meta);
    li.title = "click to load into the editor";
    li.addEventListener("click", () => {
      $("latex").value = h.latex;
      render();
    });
    list.append(li);
  }
}
$("clear-history").addEventListener("click", () => {
  saveHistory([]);
  showHistory();
});

// ------------------------------------------------------------------------------------------ start
async function showModelInfo() {
  try {
    const res = await fetch("/v1/models");
    const body = await res.json();
    const m = body.models[0];
    $("model-info").textContent = `model ${m.name} · ${m.backend} · ${m.vocab_size} tokens`;
    const beam = $("beam");
    for (const opt of [...beam.options]) if (Number(opt.value) > m.max_beam) opt.remove();
  } catch {
    $("model-info").textContent = "model info unavailable";
  }
}

redraw();
showPenWidth();
showHistory();
showModelInfo();
