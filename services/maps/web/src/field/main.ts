// The field staff's phone page: my tasks, a task with map and navigation, accept / progress /
// handled with a photo reference, and a new incident at my location. Hash views: #tasks,
// #task/12, #report.

import "../styles/base.css";
import "../styles/field.css";
import L from "leaflet";
import { api, ApiError } from "../lib/api";
import { requireUser, signOut, user } from "../lib/auth";
import { categoryName, loadCity, theCity } from "../lib/city";
import { h, replace, toast } from "../lib/dom";
import { currentLang, EVENT_KIND, fmtDue, fmtTime, onLangChange, setLang, statusText, t, tx } from "../lib/i18n";
import { createMap, divisionsLayer } from "../map/basemap";
import { STATUS_COLORS } from "../map/layers";
import { photoReference } from "./photo";

interface Task { case_id: number | null; task_id?: number; title: string; status: string; category: string | null; lon: number | null; lat: number | null;
  street_name?: string | null; dispose_due: string | null; source: string; text?: string }

const app = document.getElementById("app")!;
const main = h("main", { class: "fd-main" });
let map: L.Map | null = null;
let here: { lon: number; lat: number } | null = null;

function badge(status: string): HTMLElement {
  return h("span", { class: "badge", style: { background: STATUS_COLORS[status] ?? "#64748b" } }, statusText(status));
}

function shell(view: string): void {
  map?.remove();
  map = null;
  replace(app,
    h("header", { class: "fd-header" }, h("h1", {}, t("field_title")),
      h("button", { class: "ghost", onclick: () => setLang(currentLang() === "zh" ? "en" : "zh") }, currentLang() === "zh" ? "EN" : "中"),
      h("button", { class: "ghost", onclick: signOut, title: user()?.name }, t("sign_out"))),
    h("div", { class: "fd-tabs" },
      h("button", { class: view !== "report" ? "active" : "", "data-view": "tasks", onclick: () => { location.hash = "tasks"; } }, t("my_tasks")),
      h("button", { class: view === "report" ? "active" : "", "data-view": "report", onclick: () => { location.hash = "report"; } }, t("new_report"))),
    main);
}

async function tasksView(): Promise<void> {
  replace(main, h("p", { class: "muted" }, "…"));
  try {
    const { items } = await api<{ items: Task[]; source: string }>("/api/field/tasks");
    replace(main, items.length ? items.map((task) => {
      if (task.case_id == null) return orderCard(task);
      const due = fmtDue(task.dispose_due);
      return h("a", { class: "task", href: `#task/${task.case_id}`, "data-task": task.case_id, style: { color: "inherit", textDecoration: "none" } },
        h("div", { class: "task-top" }, h("span", { class: "task-title" }, task.title || task.text || `#${task.case_id}`), badge(task.status)),
        h("div", { class: "muted" }, `#${task.case_id} · ${categoryName(task.category)} · ${task.street_name ?? ""}`),
        h("div", { class: due.late ? "late" : "" }, due.text));
    }) : h("p", { class: "muted" }, t("no_tasks")));
  } catch (error) {
    replace(main, h("p", { class: "error" }, (error as Error).message));
  }
}

/** An emergency order (wartime mode): what to do, where, and "done". */
function orderCard(task: Task): HTMLElement {
  const done = h("button", { class: "primary", "data-order": task.task_id, onclick: async () => {
    try { await api(`/api/field/orders/${task.task_id}/done`, { body: {} }); toast(t("done")); await tasksView(); }
    catch (error) { toast((error as ApiError).detail, "error"); }
  } }, t("handled"));
  return h("div", { class: "task" }, h("div", { class: "task-top" }, h("span", { class: "task-title" }, task.title),
    h("span", { class: "badge", style: { background: "#b91c1c" } }, t("wartime"))),
    task.lat != null && task.lon != null ? h("a", { class: "nav-link", href: `geo:${task.lat},${task.lon}` }, t("navigate")) : null,
    done);
}

async function taskView(caseId: number): Promise<void> {
  let detail: any;
  try { detail = await api(`/api/field/tasks/${caseId}`); }
  catch (error) { replace(main, h("p", { class: "error" }, (error as Error).message)); return; }
  const c = detail.case;
  const mapBox = h("div", { class: "fd-map" });
  const note = h("textarea", { name: "note", rows: 2, placeholder: t("note") });
  const photo = h("input", { type: "file", accept: "image/*", capture: "environment", name: "photo" });
  const ref = h("input", { name: "photo_ref", placeholder: `${t("photo_ref")} (${t("optional")})` });
  photo.addEventListener("change", async () => { if (photo.files?.[0]) ref.value = await photoReference(photo.files[0]); });
  const step = async (name: string) => {
    try {
      await api(`/api/field/tasks/${caseId}/${name}`, { body: { note: note.value.trim(), evidence: ref.value.trim() ? [ref.value.trim()] : [] } });
      toast(t("done"));
      await taskView(caseId);
    } catch (error) {
      const e = error as ApiError;
      toast(e.status === 503 ? `${t("unavailable")}: ${e.detail}` : e.detail, "error");
    }
  };
  const lon = c.location?.lon, lat = c.location?.lat;
  replace(main,
    h("a", { class: "back", href: "#tasks" }, `← ${t("back")}`),
    h("div", { class: "task", "data-task-page": caseId },
      h("div", { class: "task-top" }, h("span", { class: "task-title" }, `#${c.case_id} ${c.title}`), badge(c.status)),
      h("div", { class: "muted" }, `${categoryName(c.category)} · ${c.location?.street_name ?? ""} ${c.location?.address ?? ""}`),
      h("div", { class: fmtDue(c.dispose_due).late ? "late" : "" }, fmtDue(c.dispose_due).text),
      detail.reports.map((r: any) => h("p", {}, r.text))),
    mapBox,
    lon != null && lat != null ? h("a", { class: "nav-link", href: `geo:${lat},${lon}?q=${lat},${lon}` }, t("navigate")) : null,
    h("div", { class: "fd-form" },
      h("label", {}, t("note"), note),
      h("label", {}, t("photo"), photo), ref,
      h("div", { class: "big-buttons" },
        h("button", { class: "primary", "data-step": "accept", disabled: c.status !== "dispatched", onclick: () => void step("accept") }, t("accept_task")),
        h("button", { "data-step": "progress", disabled: !["dispatched", "handling"].includes(c.status), onclick: () => void step("progress") }, t("progress")),
        h("button", { class: "primary", "data-step": "handled", disabled: !["dispatched", "handling"].includes(c.status), onclick: () => void step("handled") }, t("handled")))),
    h("ul", { class: "history-small" }, detail.history.slice(-6).reverse().map((e: any) =>
      h("li", {}, `${fmtTime(e.at)} ${tx(EVENT_KIND[e.kind] ?? e.kind)} ${e.reason ? `· ${e.reason.slice(0, 60)}` : ""}`))));
  map = createMap(mapBox, theCity(), { zoomControl: false }, lon != null && lat != null ? [lat, lon, 15] : undefined);
  divisionsLayer(theCity()).addTo(map);
  if (lon != null && lat != null) {
    L.circleMarker([lat, lon], { radius: 10, color: "#fff", weight: 2, fillColor: "#ef4444", fillOpacity: 0.9 }).addTo(map);
  }
  locate((p) => { if (map) L.circleMarker([p.lat, p.lon], { radius: 7, color: "#fff", weight: 2, fillColor: "#3b82f6", fillOpacity: 1 }).addTo(map); });
}

function locate(done: (p: { lon: number; lat: number }) => void, failed?: () => void): void {
  if (!navigator.geolocation) { failed?.(); return; }
  navigator.geolocation.getCurrentPosition((pos) => {
    here = { lon: pos.coords.longitude, lat: pos.coords.latitude };
    done(here);
  }, () => failed?.(), { enableHighAccuracy: true, timeout: 8000, maximumAge: 30000 });
}

function reportView(): void {
  const text = h("textarea", { name: "text", rows: 4, required: true, placeholder: t("describe") });
  const category = h("select", { name: "category" }, h("option", { value: "" }, `${t("category")} (${t("optional")})`),
    theCity().categories.map((c) => h("option", { value: c.code }, categoryName(c.code))));
  const where = h("div", { class: "muted", "data-testid": "where" }, t("locating"));
  const photo = h("input", { type: "file", accept: "image/*", capture: "environment" });
  const ref = h("input", { name: "photo_ref", placeholder: `${t("photo_ref")} (${t("optional")})` });
  photo.addEventListener("change", async () => { if (photo.files?.[0]) ref.value = await photoReference(photo.files[0]); });
  const mapBox = h("div", { class: "fd-map" });
  let marker: L.CircleMarker | null = null;
  const place = (p: { lon: number; lat: number }) => {
    here = p;
    where.textContent = `${t("my_location")}: ${p.lon.toFixed(5)}, ${p.lat.toFixed(5)}`;
    if (!map) return;
    marker?.remove();
    marker = L.circleMarker([p.lat, p.lon], { radius: 9, color: "#fff", weight: 2, fillColor: "#3b82f6", fillOpacity: 1 }).addTo(map);
    map.setView([p.lat, p.lon], 15);
  };
  const submit = h("button", { class: "primary", type: "submit" }, t("submit"));
  const form = h("form", { class: "fd-form" }, h("label", {}, t("describe"), text), category,
    h("div", {}, where, h("button", { type: "button", onclick: () => locate(place, () => { where.textContent = t("tap_map"); }) }, t("locate"))),
    mapBox, h("label", {}, t("photo"), photo), ref, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!here) { toast(t("tap_map"), "error"); return; }
    submit.disabled = true;
    try {
      const receipt = await api<{ case_id: number }>("/api/field/reports", { body: {
        text: text.value.trim(), lon: here.lon, lat: here.lat, category: category.value || undefined,
        media: ref.value.trim() ? [ref.value.trim()] : [] } });
      toast(`${t("submitted")} #${receipt.case_id}`);
      replace(main, h("p", { "data-testid": "receipt" }, `${t("submitted")} #${receipt.case_id}`),
        h("a", { class: "back", href: "#tasks" }, t("my_tasks")));
    } catch (error) {
      toast((error as ApiError).detail ?? String(error), "error");
      submit.disabled = false;
    }
  });
  replace(main, form);
  map = createMap(mapBox, theCity(), { zoomControl: false });
  divisionsLayer(theCity()).addTo(map);
  map.on("click", (e: L.LeafletMouseEvent) => place({ lon: e.latlng.lng, lat: e.latlng.lat }));
  if (here) place(here);
  locate(place, () => { where.textContent = t("tap_map"); });
}

async function route(): Promise<void> {
  const [view, arg] = location.hash.slice(1).split("/");
  shell(view);
  if (view === "task" && arg) await taskView(Number(arg));
  else if (view === "report") reportView();
  else await tasksView();
}

async function start(): Promise<void> {
  document.documentElement.lang = currentLang() === "zh" ? "zh-CN" : "en";
  await Promise.all([loadCity(), requireUser((u) => u.scopes.includes("cases:act") || u.scopes.includes("cases:report"))]);
  window.addEventListener("hashchange", () => void route());
  onLangChange(() => void route());
  await route();
}

void start();
