// Wartime mode: draw an area, list every resource and open case inside it (grouped), and issue
// a task to the chosen field staff.

import L from "leaflet";
import { api, ApiError } from "../lib/api";
import { hasScope } from "../lib/auth";
import { categoryName, groupName, unitName } from "../lib/city";
import { h, replace, toast } from "../lib/dom";
import { statusText, t } from "../lib/i18n";
import { PolygonTool } from "../map/draw";
import type { ThemeLayers } from "../map/layers";

interface Item { kind: string; dataset: string; id: string; lon: number | null; lat: number | null; name?: string | null; category?: string | null; status?: string; speed?: number | null; unit?: string | null }
interface Group { kind: string; group: string; count: number; items: Item[] }
interface Selection { groups: Group[]; total: number; errors: string[] }

const KIND_NAMES: Record<string, { zh: string; en: string }> = {
  incident: { zh: "事件", en: "Incidents" }, staff: { zh: "在岗人员", en: "Field staff" },
  mobile: { zh: "移动资源", en: "Mobile" },
  entity: { zh: "设施", en: "Facilities" }, media: { zh: "视频", en: "Media" },
};

export class Wartime {
  private tool: PolygonTool;
  private polygon: GeoJSON.Polygon | null = null;
  private highlight = L.layerGroup();
  private chosen = new Set<string>();
  private toolbar = h("div", { class: "wartime-bar" });
  private panel = h("div", { class: "selection panel", hidden: true, "data-testid": "selection" });

  constructor(private map: L.Map, container: HTMLElement, _layers: () => ThemeLayers | null) {
    this.tool = new PolygonTool(map, (polygon) => void this.select(polygon));
    container.append(this.toolbar, this.panel);
    // Clicks on the controls must not reach the map (they would become polygon points).
    for (const el of [this.toolbar, this.panel]) {
      L.DomEvent.disableClickPropagation(el);
      L.DomEvent.disableScrollPropagation(el);
    }
    this.highlight.addTo(map);
    this.enable(false);
  }

  get drawing(): boolean { return this.tool.active; }

  enable(wartime: boolean): void {
    replace(this.toolbar,
      wartime ? h("span", { class: "wartime-flag" }, t("wartime")) : null,
      h("button", { class: "primary", "data-action": "draw", onclick: () => this.begin() }, t("draw_area")),
      h("button", { class: "ghost", onclick: () => this.reset() }, t("clear")));
  }

  private begin(): void {
    this.reset();
    this.tool.start();
    toast(t("draw_hint"));
  }

  reset(): void {
    this.tool.clear();
    this.highlight.clearLayers();
    this.panel.hidden = true;
    this.polygon = null;
    this.chosen.clear();
  }

  private async select(polygon: GeoJSON.Polygon): Promise<void> {
    this.polygon = polygon;
    replace(this.panel, h("div", { class: "muted" }, "…"));
    this.panel.hidden = false;
    try {
      this.render(await api<Selection>("/api/select", { body: { polygon } }));
    } catch (error) {
      replace(this.panel, h("div", { class: "error" }, (error as Error).message));
    }
  }

  private render(selection: Selection): void {
    this.highlight.clearLayers();
    const groups = selection.groups.map((g) => {
      const items = g.items.slice(0, 60).map((item) => this.itemRow(g, item));
      for (const item of g.items) {
        if (item.lat != null && item.lon != null) {
          L.circleMarker([item.lat, item.lon], { radius: 7, color: "#fbbf24", weight: 2, fill: false, interactive: false }).addTo(this.highlight);
        }
      }
      return h("details", { class: "sel-group", open: g.kind !== "mobile" || selection.groups.length < 3, "data-group": g.group, "data-kind": g.kind },
        h("summary", {}, h("span", { class: `kind kind-${g.kind}` }, KIND_NAMES[g.kind]?.[document.documentElement.lang === "en" ? "en" : "zh"] ?? g.kind),
          h("span", { class: "sel-name" }, this.groupTitle(g)), h("b", { class: "sel-count" }, String(g.count))),
        h("ul", {}, items), g.count > items.length ? h("div", { class: "muted" }, `… +${g.count - items.length}`) : null);
    });
    const canTask = hasScope("cases:dispatch");
    const text = h("input", { class: "task-text", placeholder: t("task_text") });
    replace(this.panel,
      h("div", { class: "sel-head" }, h("h3", {}, t("inside_area")), h("b", { "data-testid": "selection-total" }, String(selection.total)),
        h("button", { class: "ghost close", onclick: () => this.reset() }, "×")),
      selection.total === 0 ? h("p", { class: "muted" }, t("nothing_inside")) : null,
      selection.errors.map((e) => h("p", { class: "warn" }, `${t("unavailable")}: ${e}`)),
      h("div", { class: "sel-groups" }, groups),
      canTask ? h("div", { class: "task-form" }, text,
        h("button", { class: "primary", "data-action": "issue-task", onclick: () => void this.issue(text.value) }, t("issue_task"))) : null);
  }

  private groupTitle(g: Group): string {
    if (g.group.startsWith("cases/")) return groupName(g.group.slice(6));
    if (g.kind === "staff") return unitName(g.group);
    return g.group;
  }

  private itemRow(g: Group, item: Item): HTMLElement {
    const key = `${item.dataset}/${item.id}`;
    const label = g.kind === "incident"
      ? `#${item.id} ${categoryName(item.category)} · ${statusText(item.status ?? "")}`
      : `${item.name ?? item.id}${item.speed != null ? ` · ${item.speed.toFixed(0)} km/h` : ""}`;
    // Tasks go to people: only field staff on duty can be ticked.
    const pick = g.kind === "staff"
      ? h("input", { type: "checkbox", checked: this.chosen.has(key), "data-staff": item.id, onchange: (e: Event) => {
        if ((e.target as HTMLInputElement).checked) this.chosen.add(key); else this.chosen.delete(key);
      } }) : null;
    return h("li", {}, pick, h("a", { href: "#", onclick: (e: Event) => {
      e.preventDefault();
      if (item.lat != null && item.lon != null) this.map.flyTo([item.lat, item.lon], Math.max(this.map.getZoom(), 14));
    } }, label));
  }

  private async issue(text: string): Promise<void> {
    const staff = [...this.chosen].map((k) => k.slice(k.indexOf("/") + 1));
    if (!staff.length) { toast(t("select_staff"), "error"); return; }
    if (!text.trim()) { toast(t("task_text"), "error"); return; }
    try {
      const sent = await api<{ emergency_id: number; tasks: unknown[] }>("/api/tasks", { body: { text, staff_ids: staff, polygon: this.polygon } });
      toast(`${t("task_sent")} (${sent.tasks.length})`);
      this.panel.querySelector<HTMLElement>(".task-form")?.setAttribute("data-sent", String(sent.emergency_id));
    } catch (error) {
      const e = error as ApiError;
      toast(e.status === 503 ? `${t("unavailable")}: ${e.detail}` : e.detail, "error");
    }
  }
}
