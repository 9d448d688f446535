// A map with no tiles: the city is drawn from its own data (divisions, roads) on a plain
// background, so nothing is fetched from outside.

import L from "leaflet";
import "leaflet/dist/leaflet.css";
import type { City } from "../lib/city";
import { tx } from "../lib/i18n";

/** A map of the city; `focus` ([lat, lon, zoom]) shows one place instead of the whole city. */
export function createMap(element: HTMLElement, city: City, options: L.MapOptions = {},
  focus?: [number, number, number]): L.Map {
  const map = L.map(element, {
    preferCanvas: true, zoomControl: true, attributionControl: false, zoomSnap: 0.25,
    minZoom: 8, maxZoom: 18, ...options,
  });
  const show = () => (focus ? map.setView([focus[0], focus[1]], focus[2]) : fitCity(map, city));
  show();
  // The container may get its final size after the map is made (grid layouts): refit once.
  requestAnimationFrame(() => { map.invalidateSize(); show(); });
  return map;
}

export function fitCity(map: L.Map, city: City): void {
  const [w, s, e, n] = city.bbox;
  map.fitBounds([[s + 0.015, w + 0.015], [n - 0.015, e - 0.015]], { padding: [4, 4] });
}

/** Districts (bold) and streets (thin), district names as labels. */
export function divisionsLayer(city: City, dark = true): L.LayerGroup {
  const group = L.layerGroup();
  const stroke = dark ? "#4cc9f0" : "#2563eb";
  L.geoJSON(city.divisions, {
    style: (f) => (f?.properties as any).level === "district"
      ? { color: stroke, weight: 2, opacity: 0.9, fillColor: stroke, fillOpacity: dark ? 0.04 : 0.03 }
      : { color: stroke, weight: 0.8, opacity: 0.45, dashArray: "4 4", fill: false },
    interactive: false,
  }).addTo(group);
  for (const f of city.divisions.features) {
    const p = f.properties as any;
    if (p.level !== "district") continue;
    const center = L.geoJSON(f).getBounds().getCenter();
    L.marker(center, {
      interactive: false,
      icon: L.divIcon({ className: "division-label", html: tx({ zh: p.name, en: p.name_en ?? p.name }), iconSize: undefined }),
    }).addTo(group);
  }
  return group;
}
