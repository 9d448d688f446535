// Live vehicles on one canvas above the map: thousands of points drawn in a few milliseconds
// per frame. Each vehicle glides from where it is drawn to its newest fix over the time
// between its fixes, so 5,000 vehicles reporting every 10 s move smoothly instead of jumping.
// Positions are kept in Web Mercator units (0..1), so a frame is a multiply-add per vehicle.

import L from "leaflet";

export interface Columns {
  full: boolean; datasets: string[]; d: number[]; id: string[]; x: number[]; y: number[];
  v: Array<number | null>; h: Array<number | null>; val: Array<number | null>; t: number[]; gone: string[];
  u?: Array<string | null>;  // field staff: their unit
}

export const SPEED_LIMITS = [5, 20, 40, 60, Infinity];
export const SPEED_COLORS = ["#94a3b8", "#ef4444", "#f59e0b", "#22c55e", "#22d3ee"];

export function speedClass(speed: number | null): number {
  const s = speed ?? 0;
  return SPEED_LIMITS.findIndex((limit) => s < limit);
}

function mercX(lon: number): number { return lon / 360 + 0.5; }
function mercY(lat: number): number {
  const phi = (Math.max(-85, Math.min(85, lat)) * Math.PI) / 180;
  return 0.5 - Math.log(Math.tan(Math.PI / 4 + phi / 2)) / (2 * Math.PI);
}

export interface VehicleInfo { key: string; dataset: string; id: string; lon: number; lat: number; speed: number; ts: number }

export class VehicleLayer {
  private canvas: HTMLCanvasElement;
  private ctx: CanvasRenderingContext2D;
  private map: L.Map | null = null;
  private slots = new Map<string, number>();
  private keys: string[] = [];
  private capacity = 0;
  private n = 0;
  private fx = new Float64Array(0); private fy = new Float64Array(0);
  private tx = new Float64Array(0); private ty = new Float64Array(0);
  private t0 = new Float64Array(0); private dur = new Float64Array(0);
  private fixTs = new Float64Array(0); private speed = new Float32Array(0);
  private cls = new Uint8Array(0); private lonLat = new Float64Array(0);
  private frame = 0;
  private hidden = false;
  visibleClasses: Set<number> | null = null;
  datasets: Set<string> | null = null;
  color: string | null = null;  // one colour; null: by speed class
  radius = 2.5;
  onFirstDraw: (() => void) | null = null;

  constructor() {
    this.canvas = L.DomUtil.create("canvas", "vehicle-canvas") as HTMLCanvasElement;
    this.ctx = this.canvas.getContext("2d", { alpha: true })!;
  }

  addTo(map: L.Map): this {
    this.map = map;
    map.getContainer().appendChild(this.canvas);
    map.on("resize", this.resize, this);
    map.on("zoomstart", this.hide, this);
    map.on("zoomend", this.show, this);
    this.resize();
    const loop = (now: number) => { this.draw(now); this.frame = requestAnimationFrame(loop); };
    this.frame = requestAnimationFrame(loop);
    return this;
  }

  remove(): void {
    cancelAnimationFrame(this.frame);
    if (this.map) {
      this.map.off("resize", this.resize, this);
      this.map.off("zoomstart", this.hide, this);
      this.map.off("zoomend", this.show, this);
    }
    this.canvas.remove();
    this.map = null;
  }

  get size(): number { return this.n; }

  private hide(): void { this.hidden = true; this.canvas.style.visibility = "hidden"; }
  private show(): void { this.hidden = false; this.canvas.style.visibility = "visible"; }

  private resize(): void {
    if (!this.map) return;
    const size = this.map.getSize();
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(size.x * dpr);
    this.canvas.height = Math.round(size.y * dpr);
    this.canvas.style.width = `${size.x}px`;
    this.canvas.style.height = `${size.y}px`;
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  private grow(min: number): void {
    if (min <= this.capacity) return;
    const cap = Math.max(min, this.capacity * 2, 1024);
    const f64 = (a: Float64Array, k = 1) => { const b = new Float64Array(cap * k); b.set(a); return b; };
    this.fx = f64(this.fx); this.fy = f64(this.fy); this.tx = f64(this.tx); this.ty = f64(this.ty);
    this.t0 = f64(this.t0); this.dur = f64(this.dur); this.fixTs = f64(this.fixTs);
    this.lonLat = f64(this.lonLat, 2);
    const s = new Float32Array(cap); s.set(this.speed); this.speed = s;
    const c = new Uint8Array(cap); c.set(this.cls); this.cls = c;
    this.capacity = cap;
  }

  /** Where slot i is drawn at time `now` (Mercator units). */
  private at(i: number, now: number): [number, number] {
    const d = this.dur[i];
    const k = d <= 0 ? 1 : Math.min(1, (now - this.t0[i]) / d);
    return [this.fx[i] + (this.tx[i] - this.fx[i]) * k, this.fy[i] + (this.ty[i] - this.fy[i]) * k];
  }

  update(c: Columns, now = performance.now()): void {
    const seen = c.full ? new Set<string>() : null;
    this.grow(this.n + c.id.length);
    for (let j = 0; j < c.id.length; j++) {
      const key = `${c.datasets[c.d[j]]}/${c.id[j]}`;
      seen?.add(key);
      const x = mercX(c.x[j]), y = mercY(c.y[j]);
      let i = this.slots.get(key);
      if (i === undefined) {
        i = this.n++;
        this.slots.set(key, i);
        this.keys[i] = key;
        this.fx[i] = x; this.fy[i] = y; this.dur[i] = 0;
      } else {
        if (c.t[j] <= this.fixTs[i]) continue;
        const [cx, cy] = this.at(i, now);
        this.fx[i] = cx; this.fy[i] = cy;
        // Glide over the time between fixes (bounded): arrives as the next fix is due.
        this.dur[i] = Math.min(15000, Math.max(1000, (c.t[j] - this.fixTs[i]) * 1000));
      }
      this.tx[i] = x; this.ty[i] = y; this.t0[i] = now; this.fixTs[i] = c.t[j];
      this.speed[i] = c.v[j] ?? 0;
      this.cls[i] = speedClass(c.v[j]);
      this.lonLat[2 * i] = c.x[j]; this.lonLat[2 * i + 1] = c.y[j];
    }
    const gone = seen ? this.keys.slice(0, this.n).filter((k) => !seen.has(k)) : c.gone;
    gone.forEach((k) => this.drop(k));
  }

  private drop(key: string): void {
    const i = this.slots.get(key);
    if (i === undefined) return;
    const last = --this.n;
    const lastKey = this.keys[last];
    if (i !== last) {
      for (const a of [this.fx, this.fy, this.tx, this.ty, this.t0, this.dur, this.fixTs]) a[i] = a[last];
      this.speed[i] = this.speed[last]; this.cls[i] = this.cls[last];
      this.lonLat[2 * i] = this.lonLat[2 * last]; this.lonLat[2 * i + 1] = this.lonLat[2 * last + 1];
      this.keys[i] = lastKey;
      this.slots.set(lastKey, i);
    }
    this.keys.length = this.n;
    this.slots.delete(key);
  }

  private visible(i: number): boolean {
    if (this.visibleClasses && !this.visibleClasses.has(this.cls[i])) return false;
    if (this.datasets) return this.datasets.has(this.keys[i].slice(0, this.keys[i].indexOf("/")));
    return true;
  }

  private transform(): [number, number, number] {
    const map = this.map!;
    const scale = 256 * Math.pow(2, map.getZoom());
    const origin = map.getPixelOrigin();
    const pane = map.containerPointToLayerPoint([0, 0]);
    return [scale, origin.x + pane.x, origin.y + pane.y];
  }

  draw(now: number): void {
    if (!this.map || this.hidden) return;
    const ctx = this.ctx;
    const size = this.map.getSize();
    ctx.clearRect(0, 0, size.x, size.y);
    if (this.n === 0) return;
    const [scale, ox, oy] = this.transform();
    const r = this.radius, d = r * 2;
    const classes = this.color ? 1 : SPEED_COLORS.length;
    for (let c = 0; c < classes; c++) {
      ctx.beginPath();
      for (let i = 0; i < this.n; i++) {
        if ((!this.color && this.cls[i] !== c) || !this.visible(i)) continue;
        const span = this.dur[i];
        const k = span <= 0 ? 1 : Math.min(1, (now - this.t0[i]) / span);
        const px = (this.fx[i] + (this.tx[i] - this.fx[i]) * k) * scale - ox;
        const py = (this.fy[i] + (this.ty[i] - this.fy[i]) * k) * scale - oy;
        if (px < -d || py < -d || px > size.x + d || py > size.y + d) continue;
        ctx.rect(px - r, py - r, d, d);
      }
      ctx.fillStyle = this.color ?? SPEED_COLORS[c];
      ctx.fill();
    }
    if (this.onFirstDraw) { const fn = this.onFirstDraw; this.onFirstDraw = null; fn(); }
  }

  /** The vehicle drawn nearest to a container point, within `tolerance` pixels. */
  pick(point: L.Point, tolerance = 8): VehicleInfo | null {
    if (!this.map) return null;
    const now = performance.now();
    const [scale, ox, oy] = this.transform();
    let best = -1, bestD = tolerance * tolerance;
    for (let i = 0; i < this.n; i++) {
      if (!this.visible(i)) continue;
      const [mx, my] = this.at(i, now);
      const dx = mx * scale - ox - point.x, dy = my * scale - oy - point.y;
      const dd = dx * dx + dy * dy;
      if (dd < bestD) { bestD = dd; best = i; }
    }
    if (best < 0) return null;
    const key = this.keys[best];
    const slash = key.indexOf("/");
    return { key, dataset: key.slice(0, slash), id: key.slice(slash + 1), lon: this.lonLat[2 * best],
      lat: this.lonLat[2 * best + 1], speed: this.speed[best], ts: this.fixTs[best] };
  }
}
