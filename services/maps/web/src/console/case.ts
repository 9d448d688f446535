// One case: what was reported (each report), where (map), what happened (history), by when
// (timers), and the operator's actions on it.

import L from "leaflet";
import { api, ApiError } from "../lib/api";
import { hasScope } from "../lib/auth";
import { categoryName, divisionName, theCity, unitName } from "../lib/city";
import { h, replace, toast } from "../lib/dom";
import { CHANNEL, EVENT_KIND, fmtDue, fmtTime, t, tx } from "../lib/i18n";
import { createMap, divisionsLayer } from "../map/basemap";
import { badge } from "./queue";

interface Location { lon: number | null; lat: number | null; address: string | null; street: string | null; street_name: string | null; district: string | null }
interface Report { report_id: number; channel: string; text: string; reported_at: string; location: Location; media: string[]; reporter: { name: string | null; phone: string | null } | null }
interface HistoryEvent { seq: number; kind: string; to_status: string; actor: string; actor_unit: string; at: string; reason: string; unit: string | null; category: string | null; other_case_id: number | null }
interface Case {
  case_id: number; status: string; version: number; title: string; category: string | null; priority: string | null;
  location: Location; handling_unit: string | null; accept_due: string | null; dispose_due: string | null;
  report_count: number; channels: string[]; merged_into: number | null; needs_operator: boolean;
}
interface Detail { case: Case; reports: Report[]; history: HistoryEvent[]; assignment: any }

// Where each action may start (the event hub's state machine; the hub has the last word).
const FROM: Record<string, string[]> = {
  classify: ["received", "classified", "accepted", "returned", "reopened"],
  accept: ["classified", "returned", "reopened"],
  reject: ["received", "classified", "accepted", "returned", "reopened"],
  dispatch: ["accepted", "returned", "reopened"],
  start: ["dispatched"], finish: ["dispatched", "handling"], return: ["dispatched", "handling"],
  verify: ["handled"], rework: ["handled", "verified"], close: ["verified"], reopen: ["closed", "rejected"],
  merge: ["received", "classified", "accepted", "dispatched", "handling", "handled", "verified", "returned", "reopened"],
  split: ["received", "classified", "accepted", "dispatched", "handling", "handled", "verified", "returned", "reopened"],
};
const CENTER = new Set(["classify", "accept", "reject", "dispatch", "close", "reopen", "merge", "split"]);

let map: L.Map | null = null;

export async function renderCase(root: HTMLElement, caseId: number): Promise<void> {
  let detail: Detail;
  try {
    detail = await api<Detail>(`/api/cases/${caseId}`);
  } catch (error) {
    replace(root, h("p", { class: "error" }, (error as Error).message));
    return;
  }
  draw(root, detail);
}

function draw(root: HTMLElement, detail: Detail): void {
  const c = detail.case;
  const mapBox = h("div", { class: "case-map" });
  const picked = new Set<number>();
  replace(root, h("div", { class: "case-page", "data-case-page": c.case_id },
    h("div", { class: "case-head" },
      h("button", { onclick: () => { location.hash = "queue"; } }, `← ${t("back")}`),
      h("h2", {}, `#${c.case_id} ${c.title}`), badge(c.status),
      h("span", {}, categoryName(c.category)), c.priority ? h("span", { class: "muted" }, c.priority) : null,
      c.merged_into ? h("a", { href: `#case/${c.merged_into}` }, `→ #${c.merged_into}`) : null),
    h("div", {}, mapBox, reportsCard(detail, picked), historyCard(detail)),
    h("div", {}, timersCard(c, detail.assignment), actionsCard(c, detail, picked, (next) => draw(root, next)),
      hasScope("cases:act") ? staffCard(c, detail.assignment, root) : null)));
  map?.remove();
  const at = c.location.lat != null && c.location.lon != null ? [c.location.lat, c.location.lon, 15] as [number, number, number] : undefined;
  map = createMap(mapBox, theCity(), { zoomSnap: 0.5 }, at);
  divisionsLayer(theCity(), false).addTo(map);
  if (hasScope("maps:read")) void drawRoads(map);
  const points: L.LatLng[] = [];
  for (const r of detail.reports) {
    if (r.location.lat == null || r.location.lon == null) continue;
    const p = L.latLng(r.location.lat, r.location.lon);
    points.push(p);
    L.circleMarker(p, { radius: 6, color: "#0369a1", fillColor: "#38bdf8", fillOpacity: 0.8 })
      .bindTooltip(`${tx(CHANNEL[r.channel] ?? r.channel)} · ${r.text.slice(0, 30)}`).addTo(map);
  }
  if (c.location.lat != null && c.location.lon != null) {
    const p = L.latLng(c.location.lat, c.location.lon);
    points.push(p);
    L.circleMarker(p, { radius: 10, color: "#b91c1c", weight: 3, fillColor: "#ef4444", fillOpacity: 0.6 }).addTo(map);
  }
}

function reportsCard(detail: Detail, picked: Set<number>): HTMLElement {
  return h("div", { class: "card" }, h("h3", {}, `${t("reports")} (${detail.reports.length})`),
    detail.reports.map((r) => h("div", { class: "report", "data-report": r.report_id },
      detail.reports.length > 1 ? h("input", { type: "checkbox", title: t("split"), onchange: (e: Event) => {
        if ((e.target as HTMLInputElement).checked) picked.add(r.report_id); else picked.delete(r.report_id);
      } }) : null,
      h("div", {},
        h("div", { class: "muted" }, `${tx(CHANNEL[r.channel] ?? r.channel)} · ${fmtTime(r.reported_at)} · ` +
          `${r.location.street_name ?? divisionName(r.location.street)} ${r.location.address ?? ""}` +
          (r.reporter?.phone ? ` · ${r.reporter.name ?? ""} ${r.reporter.phone} (${t("masked")})` : "")),
        h("p", {}, r.text),
        r.media.length ? h("div", {}, r.media.map((m) => h("a", { href: m, target: "_blank", rel: "noopener" }, `📎 ${m.slice(0, 48)} `))) : null))));
}

function historyCard(detail: Detail): HTMLElement {
  return h("div", { class: "card" }, h("h3", {}, t("history")),
    h("ol", { class: "history", "data-testid": "history" }, detail.history.map((e) => h("li", { "data-kind": e.kind },
      h("b", {}, tx(EVENT_KIND[e.kind] ?? e.kind)), " ",
      h("span", { class: "muted" }, `${fmtTime(e.at)} · ${e.actor} (${unitName(e.actor_unit)})`),
      e.unit && e.kind === "dispatched" ? h("div", {}, `→ ${unitName(e.unit)}`) : null,
      e.category && e.kind === "classified" ? h("div", {}, categoryName(e.category)) : null,
      e.other_case_id ? h("div", {}, h("a", { href: `#case/${e.other_case_id}` }, `#${e.other_case_id}`)) : null,
      e.reason ? h("div", { class: "muted" }, e.reason) : null))));
}

function timersCard(c: Case, assignment: any): HTMLElement {
  const timer = (label: string, iso: string | null) => {
    const due = fmtDue(iso);
    return h("div", { class: "timer" }, h("div", { class: "muted" }, `${label} ${fmtTime(iso)}`), h("b", { class: due.late ? "late" : "" }, due.text));
  };
  return h("div", { class: "card" }, h("h3", {}, t("timers")),
    h("div", { class: "timers" }, timer(t("accept_due"), assignment?.accept_due ?? c.accept_due),
      timer(t("due"), assignment?.dispose_due ?? c.dispose_due)),
    h("p", {}, `${t("unit")}: `, h("b", { "data-testid": "handling-unit" }, unitName(c.handling_unit)),
      assignment?.assisting?.length ? ` + ${assignment.assisting.map(unitName).join("、")}` : ""));
}

function actionsCard(c: Case, detail: Detail, picked: Set<number>, redraw: (d: Detail) => void): HTMLElement {
  const reason = h("input", { name: "reason", placeholder: t("reason"), style: { flex: "1" } });
  const category = h("select", { name: "category" }, theCity().categories.map((x) =>
    h("option", { value: x.code, selected: x.code === c.category }, `${x.code} ${categoryName(x.code)}`)));
  const unit = h("select", { name: "unit" }, h("option", { value: "" }, t("default_unit")),
    theCity().units.map((u) => h("option", { value: u.id }, unitName(u.id))));
  const into = h("input", { name: "into", type: "number", placeholder: t("merge_into"), style: { width: "9rem" } });

  const act = async (action: string, body: Record<string, unknown> = {}) => {
    try {
      const next = await api<Detail>(`/api/cases/${c.case_id}/${action}`, { body: {
        reason: reason.value.trim(), expected_version: c.version, ...body } });
      toast(`${t(action)}: ${t("done")}`);
      if (next.case.case_id !== c.case_id) { location.hash = `case/${next.case.case_id}`; return; }
      const fresh = await api<Detail>(`/api/cases/${c.case_id}`);
      redraw(fresh);
    } catch (error) {
      toast((error as ApiError).detail ?? (error as Error).message, "error");
    }
  };
  const center = hasScope("cases:dispatch");
  const button = (action: string, onclick: () => void, kind = "") => {
    const allowed = FROM[action]?.includes(c.status) && (!CENTER.has(action) || center);
    return h("button", { class: kind, disabled: !allowed, "data-action": action, onclick }, t(action));
  };
  return h("div", { class: "card actions" }, h("h3", {}, t("actions")),
    h("div", { class: "row" }, reason),
    h("div", { class: "row" }, category, button("classify", () => void act("classify", { category: category.value }))),
    h("div", { class: "row" }, button("accept", () => void act("accept"), "primary"), button("reject", () => void act("reject"), "danger")),
    h("div", { class: "row" }, unit, button("dispatch", () => void act("dispatch", unit.value ? { unit: unit.value } : {}), "primary")),
    h("div", { class: "row" }, button("start", () => void act("start")), button("finish", () => void act("finish")), button("return", () => void act("return"))),
    h("div", { class: "row" }, button("verify", () => void act("verify"), "primary"), button("rework", () => void act("rework")),
      button("close", () => void act("close"), "primary"), button("reopen", () => void act("reopen"))),
    h("div", { class: "row" }, into, button("merge", () => void act("merge", { into_case_id: Number(into.value) }))),
    detail.reports.length > 1 ? h("div", { class: "row" }, button("split", () => void act("split", { report_ids: [...picked] }))) : null);
}

interface StaffRow { staff_id: string; name: string | null; unit: string; lon: number | null; lat: number | null; open_tasks: number; distance_m: number | null }
interface StaffList { unit: string; staff_id: string | null; items: StaffRow[] }

/** Pick the person of the handling unit who takes the case: its on-duty staff, nearest first. */
function staffCard(c: Case, assignment: any, root: HTMLElement): HTMLElement {
  const list = h("ul", { class: "staff-list", "data-testid": "staff-list" });
  const load = async () => {
    replace(list, "…");
    try {
      const answer = await api<StaffList>(`/api/cases/${c.case_id}/staff`);
      replace(list, answer.items.length ? answer.items.map((p) => h("li", { "data-staff": p.staff_id },
        h("b", {}, p.name ?? p.staff_id), " ",
        h("span", { class: "muted" }, `${p.distance_m == null ? t("no_position") : fmtDistance(p.distance_m)} · ${p.open_tasks} ${t("open_tasks")}`),
        h("button", { class: "primary", "data-action": "assign", onclick: () => void give(p.staff_id) }, t("assign"))))
        : h("li", { class: "muted" }, t("no_staff_on_duty")));
    } catch (error) {
      replace(list, h("li", { class: "error" }, (error as ApiError).detail ?? (error as Error).message));
    }
  };
  const give = async (staffId: string) => {
    try {
      await api(`/api/cases/${c.case_id}/assign`, { body: { staff_id: staffId } });
      toast(`${t("assign")}: ${staffId}`);
      await renderCase(root, c.case_id);
    } catch (error) {
      toast((error as ApiError).detail ?? (error as Error).message, "error");
    }
  };
  return h("div", { class: "card", "data-testid": "staff-card" }, h("h3", {}, t("staff_picker")),
    assignment ? h("p", {}, `${t("unit")}: ${unitName(assignment.lead)}`,
      assignment.staff_id ? [" · ", `${t("assigned_to")}: `, h("b", { "data-testid": "assignee" }, assignment.staff_id)] : null) : null,
    assignment ? h("button", { "data-action": "load-staff", onclick: () => void load() }, t("load_staff"))
      : h("p", { class: "muted" }, t("not_dispatched")),
    list);
}

function fmtDistance(m: number): string {
  return m < 1000 ? `${m} m` : `${(m / 1000).toFixed(1)} km`;
}

async function drawRoads(target: L.Map): Promise<void> {
  try {
    const roads = await api<GeoJSON.FeatureCollection>("/api/themes/overall/layers/roads");
    L.geoJSON(roads, { interactive: false, style: { color: "#94a3b8", weight: 1.2, opacity: 0.9 } }).addTo(target);
  } catch { /* the case map works without roads */ }
}
