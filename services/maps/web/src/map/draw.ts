// Drawing a polygon on the map (wartime mode's box select): click to add points, double-click
// or click the first point again to finish.

import L from "leaflet";

export class PolygonTool {
  private points: L.LatLng[] = [];
  private line: L.Polyline | null = null;
  private guide: L.Polyline | null = null;
  private shape: L.Polygon | null = null;
  active = false;

  constructor(private map: L.Map, private onDone: (polygon: GeoJSON.Polygon) => void) {}

  start(): void {
    this.clear();
    this.active = true;
    this.map.doubleClickZoom.disable();
    this.map.getContainer().classList.add("drawing");
    this.map.on("click", this.add, this);
    this.map.on("dblclick", this.finish, this);
    this.map.on("mousemove", this.follow, this);
  }

  private stop(): void {
    this.active = false;
    this.map.off("click", this.add, this);
    this.map.off("dblclick", this.finish, this);
    this.map.off("mousemove", this.follow, this);
    this.map.getContainer().classList.remove("drawing");
    setTimeout(() => this.map.doubleClickZoom.enable(), 300);
    this.guide?.remove();
    this.line?.remove();
    this.guide = this.line = null;
  }

  clear(): void {
    if (this.active) this.stop();
    this.shape?.remove();
    this.shape = null;
    this.points = [];
  }

  private add(event: L.LeafletMouseEvent): void {
    const first = this.points[0];
    if (first && this.points.length >= 3 &&
        this.map.latLngToContainerPoint(first).distanceTo(event.containerPoint) < 10) {
      this.finish();
      return;
    }
    this.points.push(event.latlng);
    if (!this.line) this.line = L.polyline(this.points, { color: "#fbbf24", weight: 2, dashArray: "6 4" }).addTo(this.map);
    else this.line.setLatLngs(this.points);
  }

  private follow(event: L.LeafletMouseEvent): void {
    const last = this.points[this.points.length - 1];
    if (!last) return;
    const path = [last, event.latlng];
    if (!this.guide) this.guide = L.polyline(path, { color: "#fbbf24", weight: 1, opacity: 0.7, interactive: false }).addTo(this.map);
    else this.guide.setLatLngs(path);
  }

  private finish(): void {
    // A double-click also fired two clicks: drop a point repeated at the end.
    const pts = this.points.filter((p, i) => i === 0 || !p.equals(this.points[i - 1], 1e-7));
    this.stop();
    if (pts.length < 3) { this.points = []; return; }
    this.shape = L.polygon(pts, { color: "#fbbf24", weight: 2, fillOpacity: 0.08, interactive: false }).addTo(this.map);
    const ring = pts.map((p) => [p.lng, p.lat]);
    ring.push(ring[0]);
    this.onDone({ type: "Polygon", coordinates: [ring] });
  }
}
