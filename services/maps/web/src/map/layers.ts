// A theme's layers on the map, built from its configuration (no code per theme): static
// layers are fetched once, live ones (vehicles, sensors, cases, field staff) are fed by the
// live feed.

import L from "leaflet";
import { api } from "../lib/api";
import { hasScope } from "../lib/auth";
import { categoryName, type City, groupName, unitName } from "../lib/city";
import { escapeHtml } from "../lib/dom";
import { fmtDue, statusText, t, type Text, tx } from "../lib/i18n";
import { divisionsLayer } from "./basemap";
import { type Columns, VehicleLayer } from "./vehicles";

export interface CaseFilter {
  categories?: string[] | null; groups?: string[] | null; statuses?: string[] | null;
  open?: boolean | null; today?: boolean | null; overdue?: boolean | null;
}
export interface Style {
  color: string; color_by: string | null; colors: Record<string, string>; radius: number;
  opacity: number; threshold: number | null; warn: number | null; label: string | null;
}
export interface LayerConfig {
  id: string; kind: string; title: Text; visible: boolean; dataset: string | null;
  category: string | null; cases: CaseFilter | null; style: Style; minutes: number;
  cell_m: number; selectable: boolean; legend: boolean;
}
export interface FilterConfig { id: string; title: Text; layer: string; field: string; options: string[] }
export interface Theme {
  id: string; title: Text; description: Text | null; wartime: boolean; overall: boolean;
  view: { center: number[] | null; zoom: number | null };
  layers: LayerConfig[]; filters: FilterConfig[];
  figures: Array<{ id: string; title: Text; unit: Text | null; format: string; alert_above: number | null }>;
  charts: Array<{ id: string; title: Text; kind: string }>;
}
export interface CaseView {
  id: number; status: string; category: string | null; group: string | null; lon: number | null;
  lat: number | null; street: string | null; unit: string | null; priority: string | null;
  due: string | null; overdue: boolean; received_at: string | null;
}

const CLOSED = new Set(["closed", "merged", "rejected"]);
export const STATUS_COLORS: Record<string, string> = {
  received: "#f59e0b", classified: "#eab308", accepted: "#3b82f6", dispatched: "#8b5cf6",
  handling: "#a855f7", handled: "#10b981", verified: "#14b8a6", returned: "#f97316",
  reopened: "#f43f5e",
};
const PALETTE = ["#38bdf8", "#f472b6", "#facc15", "#4ade80", "#fb923c", "#a78bfa", "#2dd4bf",
  "#f87171", "#c084fc", "#fbbf24", "#60a5fa", "#34d399", "#e879f9"];

function hashColor(value: string): string {
  let hash = 0;
  for (const ch of value) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

function midnight(): number { const d = new Date(); d.setHours(0, 0, 0, 0); return d.getTime(); }

export function caseMatches(c: CaseView, f: CaseFilter | null): boolean {
  if (!f) return !CLOSED.has(c.status);
  if (f.open != null && CLOSED.has(c.status) === f.open) return false;
  if (f.statuses && !f.statuses.includes(c.status)) return false;
  if (f.categories && !f.categories.includes(c.category ?? "")) return false;
  if (f.groups && !f.groups.includes(c.group ?? "")) return false;
  if (f.overdue != null && c.overdue !== f.overdue) return false;
  if (f.today != null && ((c.received_at ? Date.parse(c.received_at) >= midnight() : false) !== f.today)) return false;
  return true;
}

function attr(props: any, name: string): string {
  const value = props?.[name] ?? props?.attrs?.[name];
  return value == null ? "—" : String(value);
}

interface Entry { config: LayerConfig; group: L.LayerGroup | null; count: number; values: Set<string> }

export class ThemeLayers {
  readonly entries = new Map<string, Entry>();
  vehicles: VehicleLayer | null = null;
  private cases = new Map<number, CaseView>();
  private caseMarkers = new Map<string, Map<number, L.CircleMarker>>();
  private hidden = new Map<string, Set<string>>();  // layer -> filtered-out values
  onChange: () => void = () => {};
  canOpenConsole = false;

  // Points (cases, sites, enterprises) above the live vehicle canvas; areas and lines below.
  private readonly pane = "points";
  private readonly scale = Math.max(1, parseFloat(getComputedStyle(document.documentElement).fontSize) / 14);
  // People are few and each is someone to click: drawn as SVG elements, not on the canvas.
  private readonly staffRenderer = L.svg({ pane: this.pane });
  // Positions carry staff ids; names come from dispatch's staff list, for those who may list
  // staff (cases:read), asked again at most every 10 s when someone new appears.
  private readonly staffNames = new Map<string, string>();
  private readonly staffSeen = new Set<string>();
  private namesAskedAt = 0;
  private namesTimer: number | null = null;

  constructor(private map: L.Map, private city: City, private theme: Theme) {
    if (!map.getPane(this.pane)) map.createPane(this.pane).style.zIndex = "460";
  }

  async load(): Promise<void> {
    for (const config of this.theme.layers) {
      const entry: Entry = { config, group: null, count: 0, values: new Set() };
      this.entries.set(config.id, entry);
      if (config.kind === "vehicles") {
        if (this.vehicles) continue;  // one live vehicle canvas per map
        const layer = new VehicleLayer();
        // Sized with the type: a 4K wall draws bigger points than a laptop.
        layer.radius = config.style.radius * this.scale;
        layer.color = config.style.color_by === "speed" ? null : config.style.color;
        layer.datasets = config.dataset ? new Set([config.dataset]) : null;
        this.vehicles = layer;
        if (config.visible) layer.addTo(this.map);
        continue;
      }
      entry.group = L.layerGroup();
      if (config.visible) entry.group.addTo(this.map);
      if (config.kind === "cases") this.caseMarkers.set(config.id, new Map());
    }
    await Promise.all([...this.entries.values()].map((e) => this.fill(e).catch((error) => {
      console.warn(`layer ${e.config.id}`, error);
      e.count = -1;
    })));
    this.onChange();
  }

  private async fill(entry: Entry): Promise<void> {
    const { config, group } = entry;
    if (!group) return;
    const path = `/api/themes/${this.theme.id}/layers/${config.id}`;
    switch (config.kind) {
      case "divisions":
        divisionsLayer(this.city).addTo(group);
        entry.count = this.city.divisions.features.length;
        break;
      case "roads": {
        const data = await api<GeoJSON.FeatureCollection>(path);
        L.geoJSON(data, {
          interactive: false,
          style: (f) => {
            const cls = (f?.properties as any)?.category ?? attr(f?.properties, "class");
            return { color: config.style.colors[cls] ?? config.style.color,
              weight: cls === "expressway" ? 2.6 : cls === "arterial" ? 1.6 : 0.8, opacity: 0.9 };
          },
        }).addTo(group);
        entry.count = data.features.length;
        break;
      }
      case "entities":
      case "staypoints":
        await this.fillFeatures(entry, await api<GeoJSON.FeatureCollection>(path));
        break;
      case "hotspots":
      case "density":
        this.fillCells(entry, (await api<{ cells: Array<{ lon: number; lat: number; count: number; cell_m: number }> }>(path)).cells);
        break;
      default:
        break;  // live layers: filled by the feed
    }
  }

  private fillFeatures(entry: Entry, data: GeoJSON.FeatureCollection): void {
    const { config, group } = entry;
    const style = config.style;
    group!.clearLayers();
    entry.values.clear();
    const hidden = this.hidden.get(config.id);
    let count = 0;
    L.geoJSON(data, {
      filter: (f) => {
        const value = style.color_by ? attr(f.properties, style.color_by) : "";
        entry.values.add(value);
        return !hidden?.has(value);
      },
      pointToLayer: (f, latlng) => {
        count++;
        const value = style.color_by ? attr(f.properties, style.color_by) : "";
        const color = style.color_by ? (style.colors[value] ?? hashColor(value)) : style.color;
        const marker = L.circleMarker(latlng, { radius: style.radius * this.scale, color: "#0b1220", weight: 1,
          fillColor: color, fillOpacity: style.opacity, pane: this.pane });
        const p = f.properties as any;
        const name = p?.name ?? p?.subject ?? f.id ?? "";
        marker.bindPopup(`<b>${escapeHtml(String(name))}</b><br>${escapeHtml(tx(config.title))}` +
          (style.color_by ? `<br>${escapeHtml(style.color_by)}: ${escapeHtml(value)}` : ""));
        if (style.label) marker.bindTooltip(escapeHtml(attr(p, style.label)), { direction: "top" });
        return marker;
      },
      style: () => ({ color: style.color, weight: 1.5, opacity: style.opacity }),
    }).addTo(group!);
    entry.count = count || data.features.length;
  }

  private fillCells(entry: Entry, cells: Array<{ lon: number; lat: number; count: number; cell_m: number }>): void {
    const { config, group } = entry;
    group!.clearLayers();
    const max = Math.max(1, ...cells.map((c) => c.count));
    for (const c of cells) {
      const dy = c.cell_m / 110574 / 2;
      const dx = c.cell_m / (111320 * Math.cos((c.lat * Math.PI) / 180)) / 2;
      L.rectangle([[c.lat - dy, c.lon - dx], [c.lat + dy, c.lon + dx]], {
        stroke: false, fillColor: config.style.color, fillOpacity: 0.15 + 0.65 * (c.count / max),
      }).bindTooltip(`${c.count}`).addTo(group!);
    }
    entry.count = cells.length;
  }

  // -- live data ------------------------------------------------------------------------------

  applyVehicles(columns: Columns): void {
    this.vehicles?.update(columns);
    for (const e of this.entries.values()) if (e.config.kind === "vehicles") e.count = this.vehicles?.size ?? 0;
  }

  applySensors(columns: Columns): void {
    for (const entry of this.entries.values()) {
      if (entry.config.kind !== "sensors" || !entry.group) continue;
      if (columns.full) entry.group.clearLayers();
      const byId = new Map<string, L.CircleMarker>();
      entry.group.eachLayer((l) => byId.set((l as any).options.sensorId, l as L.CircleMarker));
      const { threshold, warn, radius } = entry.config.style;
      for (let j = 0; j < columns.id.length; j++) {
        const value = columns.val[j];
        const color = value == null ? "#64748b" : threshold != null && value > threshold ? "#ef4444"
          : warn != null && value > warn ? "#f59e0b" : "#22c55e";
        const id = columns.id[j];
        let marker = byId.get(id);
        if (!marker) {
          marker = L.circleMarker([columns.y[j], columns.x[j]], { radius: radius * this.scale, weight: 1.5, color: "#0b1220",
            fillOpacity: 0.9, sensorId: id, pane: this.pane } as L.CircleMarkerOptions);
          marker.bindTooltip("", { permanent: true, direction: "right", className: "sensor-label" });
          marker.addTo(entry.group);
        }
        marker.setLatLng([columns.y[j], columns.x[j]]).setStyle({ fillColor: color });
        marker.setTooltipContent(value == null ? id : `${value.toFixed(0)}`);
      }
      entry.count = entry.group.getLayers().length;
    }
    this.onChange();
  }

  /** Field staff on duty: one marker per person, moved on each fix, removed when gone. */
  applyStaff(columns: Columns): void {
    let newcomer = false;
    for (const entry of this.entries.values()) {
      if (entry.config.kind !== "staff" || !entry.group) continue;
      if (columns.full) entry.group.clearLayers();
      const byId = new Map<string, L.CircleMarker>();
      entry.group.eachLayer((l) => byId.set((l as any).options.staffId, l as L.CircleMarker));
      for (const key of columns.gone) {
        byId.get(key.slice(key.indexOf("/") + 1))?.remove();
      }
      const { color, radius } = entry.config.style;
      for (let j = 0; j < columns.id.length; j++) {
        const id = columns.id[j];
        const unit = columns.u?.[j] ?? null;
        let marker = byId.get(id);
        if (!marker) {
          marker = L.circleMarker([columns.y[j], columns.x[j]], { radius: radius * this.scale, weight: 2,
            color: "#f8fafc", fillColor: color, fillOpacity: 0.95, staffId: id, pane: this.pane,
            renderer: this.staffRenderer, className: "staff-marker" } as L.CircleMarkerOptions);
          const m = marker;
          marker.bindPopup(() => this.staffPopup(m)).bindTooltip(() => escapeHtml(this.staffNames.get(id) ?? id));
          marker.addTo(entry.group);
        }
        Object.assign(marker.options, { unit, fixedAt: columns.t[j] });
        marker.setLatLng([columns.y[j], columns.x[j]]);
        if (!this.staffSeen.has(id)) { this.staffSeen.add(id); newcomer = true; }
      }
      entry.count = entry.group.getLayers().length;
    }
    if (newcomer) this.wantStaffNames();
    this.onChange();
  }

  private staffPopup(marker: L.CircleMarker): string {
    const { staffId, unit, fixedAt } = marker.options as { staffId: string; unit: string | null; fixedAt: number };
    const name = this.staffNames.get(staffId);
    return `<b data-staff-name>${t("field_staff")} ${escapeHtml(name ?? staffId)}</b>` +
      (name ? ` <span class="muted">${escapeHtml(staffId)}</span>` : "") +
      `<br>${t("unit")}: ${escapeHtml(unitName(unit))}<br>${t("updated")}: ${new Date(fixedAt * 1000).toLocaleTimeString()}`;
  }

  /** Ask for the names of the staff on duty (throttled); markers show them once known. */
  private wantStaffNames(): void {
    if (!hasScope("cases:read") || this.namesTimer != null) return;
    this.namesTimer = window.setTimeout(() => {
      this.namesTimer = null;
      this.namesAskedAt = Date.now();
      api<{ names: Record<string, string> }>("/api/staff/names").then((answer) => {
        for (const [id, name] of Object.entries(answer.names)) this.staffNames.set(id, name);
      }).catch(() => { /* the ids stand in */ });
    }, Math.max(0, this.namesAskedAt + 10_000 - Date.now()));
  }

  staffCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.config.kind === "staff") n = Math.max(n, e.count);
    return n;
  }

  applyCases(message: { full: boolean; items: CaseView[] }): void {
    if (message.full) this.cases.clear();
    for (const c of message.items) {
      if (CLOSED.has(c.status)) this.cases.delete(c.id); else this.cases.set(c.id, c);
    }
    if (message.full) this.caseMarkers.forEach((markers) => { markers.forEach((m) => m.remove()); markers.clear(); });
    const touched = message.full ? [...this.cases.values()] : message.items;
    for (const [layerId, markers] of this.caseMarkers) {
      const entry = this.entries.get(layerId)!;
      for (const c of touched) this.placeCase(entry, markers, c);
      entry.count = markers.size;
      for (const c of this.cases.values()) entry.values.add(this.caseValue(entry.config, c));
    }
    for (const entry of this.entries.values()) {
      if (entry.config.kind === "hotspots" && !message.full) void this.fill(entry).catch(() => undefined);
    }
    this.onChange();
  }

  private caseValue(config: LayerConfig, c: CaseView): string {
    const field = this.filterField(config.id);
    if (field === "category") return c.category ?? "";
    if (field === "status") return c.status;
    return c.group ?? "";
  }

  private filterField(layerId: string): string | null {
    return this.theme.filters.find((f) => f.layer === layerId)?.field ?? null;
  }

  private caseColor(config: LayerConfig, c: CaseView): string {
    switch (config.style.color_by) {
      case "status": return STATUS_COLORS[c.status] ?? config.style.color;
      case "group": return hashColor(c.group ?? "");
      case "category": return hashColor(c.category ?? "");
      default: return config.style.color;
    }
  }

  private placeCase(entry: Entry, markers: Map<number, L.CircleMarker>, c: CaseView): void {
    const current = markers.get(c.id);
    const live = this.cases.get(c.id);
    const hidden = this.hidden.get(entry.config.id);
    if (!live || live.lon == null || live.lat == null || !caseMatches(live, entry.config.cases)
        || hidden?.has(this.caseValue(entry.config, live))) {
      current?.remove();
      markers.delete(c.id);
      return;
    }
    const style = { radius: entry.config.style.radius * this.scale, fillColor: this.caseColor(entry.config, live),
      fillOpacity: 0.95, color: live.overdue ? "#ff1f1f" : "#0b1220", weight: live.overdue ? 3 : 1 };
    if (current) {
      current.setLatLng([live.lat, live.lon]).setStyle(style);
      current.setPopupContent(this.casePopup(live));
      return;
    }
    const marker = L.circleMarker([live.lat, live.lon], { ...style, caseId: live.id, pane: this.pane } as L.CircleMarkerOptions);
    marker.bindPopup(this.casePopup(live));
    marker.addTo(entry.group!);
    markers.set(c.id, marker);
  }

  private casePopup(c: CaseView): string {
    const due = fmtDue(c.due);
    const link = this.canOpenConsole ? `<br><a href="/console#case/${c.id}" target="_blank">${t("open_in_console")}</a>` : "";
    return `<b>${t("case")} #${c.id}</b> · ${escapeHtml(categoryName(c.category))}<br>` +
      `${escapeHtml(statusText(c.status))} · ${escapeHtml(groupName(c.group))}<br>` +
      `${t("unit")}: ${escapeHtml(unitName(c.unit))}<br>` +
      `<span class="${due.late ? "late" : ""}">${escapeHtml(due.text)}</span>${link}`;
  }

  // -- switches --------------------------------------------------------------------------------

  setVisible(layerId: string, visible: boolean): void {
    const entry = this.entries.get(layerId);
    if (!entry) return;
    entry.config = { ...entry.config, visible };
    if (entry.config.kind === "vehicles") {
      if (visible) this.vehicles?.addTo(this.map); else this.vehicles?.remove();
    } else if (entry.group) {
      if (visible) entry.group.addTo(this.map); else entry.group.remove();
    }
  }

  /** Show only items whose filter field is not in `hiddenValues`. */
  setHidden(layerId: string, hiddenValues: Set<string>): void {
    this.hidden.set(layerId, hiddenValues);
    const entry = this.entries.get(layerId);
    if (!entry) return;
    if (entry.config.kind === "vehicles" && this.vehicles) {
      this.vehicles.visibleClasses = new Set([0, 1, 2, 3, 4].filter((c) => !hiddenValues.has(String(c))));
    } else if (entry.config.kind === "cases") {
      const markers = this.caseMarkers.get(layerId)!;
      for (const c of this.cases.values()) this.placeCase(entry, markers, c);
      entry.count = markers.size;
    } else if (entry.config.kind === "entities") {
      void this.fill(entry);
    }
    this.onChange();
  }

  openCases(): CaseView[] { return [...this.cases.values()]; }

  /** Redraw what carries words (district names) in the current language. */
  relabel(): void {
    for (const entry of this.entries.values()) {
      if (entry.config.kind === "divisions" && entry.group) { entry.group.clearLayers(); void this.fill(entry); }
    }
  }

  destroy(): void {
    this.vehicles?.remove();
    for (const e of this.entries.values()) e.group?.remove();
    this.entries.clear();
  }
}
