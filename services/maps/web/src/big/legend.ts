// The legend over the map: each layer with its switch, colour key and count, and the theme's
// filters as chips (click to hide a value).

import L from "leaflet";
import { groupName, categoryName } from "../lib/city";
import { h, replace } from "../lib/dom";
import { statusText, t, tx } from "../lib/i18n";
import { STATUS_COLORS, type Theme, type ThemeLayers } from "../map/layers";
import { SPEED_COLORS } from "../map/vehicles";

const SPEED_NAMES = [
  { zh: "停驶", en: "Stopped" }, { zh: "缓行<20", en: "Slow <20" }, { zh: "20-40", en: "20-40" },
  { zh: "40-60", en: "40-60" }, { zh: "≥60 km/h", en: "≥60 km/h" },
];

export class Legend {
  readonly element = h("div", { class: "legend panel" });
  private hidden = new Map<string, Set<string>>();
  private pending = false;

  constructor(container: HTMLElement) {
    container.appendChild(this.element);
    L.DomEvent.disableClickPropagation(this.element);
    L.DomEvent.disableScrollPropagation(this.element);
  }

  /** Re-render at most once per frame, however many updates arrive. */
  render(layers: ThemeLayers, theme: Theme): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(layers, theme); });
  }

  private draw(layers: ThemeLayers, theme: Theme): void {
    const rows = [...layers.entries.values()].filter((e) => e.config.legend).map((e) => {
      const box = h("input", { type: "checkbox", checked: e.config.visible, "data-layer": e.config.id,
        onchange: (ev: Event) => layers.setVisible(e.config.id, (ev.target as HTMLInputElement).checked) });
      const swatch = h("span", { class: "swatch", style: { background: e.config.kind === "vehicles" && !e.config.style.color_by ? e.config.style.color
        : e.config.kind === "vehicles" ? `linear-gradient(90deg, ${SPEED_COLORS.join(",")})` : e.config.style.color } });
      const count = e.count < 0 ? t("unavailable") : e.config.kind === "divisions" ? "" : String(e.count);
      return h("label", { class: "legend-row" }, box, swatch, h("span", { class: "legend-name" }, tx(e.config.title)),
        h("span", { class: "legend-count", "data-count": e.config.id }, count));
    });
    const filters = theme.filters.map((f) => {
      const entry = layers.entries.get(f.layer);
      const hidden = this.hidden.get(f.id) ?? new Set<string>();
      let values = f.options.length ? f.options : [...(entry?.values ?? [])].filter(Boolean).sort();
      if (f.field === "speed_class") values = ["0", "1", "2", "3", "4"];
      const chips = values.map((v) => h("button", {
        class: `chip${hidden.has(v) ? " off" : ""}`, "data-value": v,
        style: { borderColor: f.field === "speed_class" ? SPEED_COLORS[Number(v)] : f.field === "status" ? STATUS_COLORS[v] : "" },
        onclick: () => {
          if (hidden.has(v)) hidden.delete(v); else hidden.add(v);
          this.hidden.set(f.id, hidden);
          layers.setHidden(f.layer, hidden);
          this.draw(layers, theme);
        },
      }, label(f.field, v)));
      return h("div", { class: "legend-filter" }, h("div", { class: "legend-sub" }, tx(f.title)), h("div", { class: "chips" }, chips));
    });
    replace(this.element, h("div", { class: "legend-title" }, t("layers")), rows, filters);
  }
}

function label(field: string, value: string): string {
  if (field === "group") return groupName(value);
  if (field === "category") return categoryName(value);
  if (field === "status") return statusText(value);
  if (field === "speed_class") return tx(SPEED_NAMES[Number(value)]);
  return value;
}
