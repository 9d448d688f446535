// The big screen: the overall situation map and the thematic maps, live over SSE, with
// wartime mode (draw an area, see what is inside, issue a task).

import "../styles/base.css";
import "../styles/big.css";
import L from "leaflet";
import { api, follow } from "../lib/api";
import { hasScope, requireUser, signOut, user } from "../lib/auth";
import { type City, loadCity } from "../lib/city";
import { h, replace } from "../lib/dom";
import { currentLang, onLangChange, setLang, t, tx } from "../lib/i18n";
import { createMap } from "../map/basemap";
import { ThemeLayers, type Theme } from "../map/layers";
import { type ChartData, Charts } from "./charts";
import { Legend } from "./legend";
import { Ticker } from "./ticker";
import { Wartime } from "./wartime";

interface ThemeSummary { id: string; title: { zh: string; en: string }; overall: boolean; wartime: boolean }
interface Board { theme: string; at: string; figures: Array<{ id: string; value: number | null }>; charts: ChartData[] }

const app = document.getElementById("app")!;

class BigScreen {
  private map!: L.Map;
  private layers: ThemeLayers | null = null;
  private theme: Theme | null = null;
  private themes: ThemeSummary[] = [];
  private charts = new Charts();
  private feed: AbortController | null = null;
  private board: Board | null = null;
  private legend!: Legend;
  private ticker = new Ticker();
  private wartime!: Wartime;
  private firstRender = false;
  private el = {
    tabs: h("nav", { class: "theme-tabs", "aria-label": "themes" }),
    figures: h("div", { class: "figures" }),
    left: h("div", { class: "charts-col" }),
    right: h("div", { class: "charts-col" }),
    live: h("span", { class: "live-dot", "data-live": "0" }),
    clock: h("span", { class: "clock" }),
    title: h("div", { class: "bs-title" }),
    description: h("div", { class: "theme-description" }),
    mapBox: h("div", { class: "bs-map", id: "map" }),
  };

  constructor(private city: City) {}

  async start(): Promise<void> {
    this.layout();
    this.map = createMap(this.el.mapBox, this.city, { zoomSnap: 0.25 });
    this.legend = new Legend(this.el.mapBox);
    this.wartime = new Wartime(this.map, this.el.mapBox, () => this.layers);
    this.map.on("click", (e: L.LeafletMouseEvent) => this.pickVehicle(e));
    window.addEventListener("resize", () => this.charts.resize());
    window.addEventListener("hashchange", () => void this.switchTo(this.hashTheme()));
    onLangChange(() => this.relabel());
    setInterval(() => this.tick(), 1000);
    this.tick();
    this.themes = await api<ThemeSummary[]>("/api/themes");
    await this.switchTo(this.hashTheme());
    (window as any).__cityos = {
      vehicles: () => this.layers?.vehicles?.size ?? 0,
      staff: () => this.layers?.staffCount() ?? 0,
      focus: (lon: number, lat: number, zoom: number) => this.map.setView([lat, lon], zoom, { animate: false }),
      cases: () => this.layers?.openCases().length ?? 0,
      theme: () => this.theme?.id, board: () => this.board,
    };
  }

  private hashTheme(): string {
    const match = /theme=([a-z_0-9]+)/.exec(location.hash);
    return match?.[1] ?? this.themes.find((th) => th.overall)?.id ?? this.themes[0]?.id ?? "overall";
  }

  private layout(): void {
    const u = user()!;
    const header = h("header", { class: "bs-header" },
      this.el.title, this.el.tabs,
      h("div", { class: "bs-status" }, this.el.live, this.el.clock,
        h("button", { class: "ghost lang", onclick: () => setLang(currentLang() === "zh" ? "en" : "zh") },
          currentLang() === "zh" ? "EN" : "中"),
        h("span", { class: "who" }, u.name),
        h("button", { class: "ghost", onclick: signOut }, t("sign_out"))));
    replace(app, header, h("main", { class: "bs-grid" },
      h("aside", { class: "bs-side" }, this.el.figures, this.el.left),
      h("section", { class: "bs-center" }, this.el.mapBox, this.el.description),
      h("aside", { class: "bs-side" }, this.el.right, this.ticker.element)));
  }

  private relabel(): void {
    this.layout();
    this.map.invalidateSize();
    this.wartime.enable(!!this.theme?.wartime);
    this.ticker.relabel();
    this.layers?.relabel();
    if (this.theme) this.renderTheme(this.theme);
    if (this.board) this.renderBoard(this.board);
    this.layers?.onChange();
  }

  private tick(): void {
    this.el.clock.textContent = new Date().toLocaleString(currentLang() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
  }

  async switchTo(themeId: string): Promise<void> {
    if (this.theme?.id === themeId) return;
    const theme = await api<Theme>(`/api/themes/${themeId}`);
    this.feed?.abort();
    this.layers?.destroy();
    this.wartime.reset();
    this.theme = theme;
    this.board = null;
    this.renderTheme(theme);
    const layers = new ThemeLayers(this.map, this.city, theme);
    layers.canOpenConsole = hasScope("cases:dispatch");
    layers.onChange = () => this.legend.render(layers, theme);
    this.layers = layers;
    if (theme.view.center) this.map.setView([theme.view.center[1], theme.view.center[0]], theme.view.zoom ?? 11);
    await layers.load();
    if (layers.vehicles) layers.vehicles.onFirstDraw = () => this.markFirstRender();
    this.wartime.enable(theme.wartime);
    this.follow(theme.id);
  }

  private markFirstRender(): void {
    if (this.firstRender || !this.layers?.vehicles?.size) return;
    this.firstRender = true;
    performance.mark("cityos:first-render");
  }

  private renderTheme(theme: Theme): void {
    replace(this.el.title, h("span", {}, t("app_name")), h("span", { class: "sep" }, "·"), tx(theme.title));
    this.el.description.textContent = tx(theme.description);
    replace(this.el.tabs, ...this.themes.map((th) => h("button", {
      class: `tab${th.id === theme.id ? " active" : ""}`, "data-theme": th.id,
      onclick: () => { location.hash = `theme=${th.id}`; },
    }, tx(th.title))));
    replace(this.el.figures, ...theme.figures.map((f) => h("div", { class: "figure", "data-figure": f.id },
      h("div", { class: "figure-value" }, "—"), h("div", { class: "figure-title" }, tx(f.title)))));
    this.charts.dispose();
    const half = Math.ceil(theme.charts.length / 2);
    const box = (c: Theme["charts"][number]) => {
      const body = h("div", { class: "chart-body" });
      return { el: h("div", { class: "panel chart", "data-chart": c.id }, h("h3", {}, tx(c.title)), body), body };
    };
    const left = theme.charts.slice(0, half).map(box);
    const right = theme.charts.slice(half).map(box);
    replace(this.el.left, ...left.map((b) => b.el));
    replace(this.el.right, ...right.map((b) => b.el));
    [...theme.charts].forEach((c, i) => this.charts.mount(c.id, (i < half ? left[i] : right[i - half]).body));
  }

  private renderBoard(board: Board): void {
    if (!this.theme || board.theme !== this.theme.id) return;
    this.board = board;
    for (const f of board.figures) {
      const config = this.theme.figures.find((x) => x.id === f.id);
      const card = this.el.figures.querySelector<HTMLElement>(`[data-figure="${f.id}"]`);
      if (!config || !card) continue;
      const value = f.value;
      const shown = value == null ? "—" : config.format === "percent" ? `${value}%`
        : config.format === "float" ? value.toFixed(1) : value.toLocaleString();
      replace(card.querySelector(".figure-value")!, shown, config.unit ? h("small", {}, ` ${tx(config.unit)}`) : null);
      card.classList.toggle("alert", config.alert_above != null && value != null && value > config.alert_above);
    }
    for (const c of board.charts) {
      const config = this.theme.charts.find((x) => x.id === c.id);
      if (config) this.charts.set(c.id, config.kind, c);
    }
  }

  private follow(themeId: string): void {
    const controller = new AbortController();
    this.feed = controller;
    void follow(`/api/live?theme=${themeId}`, {
      onState: (up) => { this.el.live.dataset.live = up ? "1" : "0"; this.el.live.title = up ? t("live") : t("offline"); },
      onEvent: (event, data) => {
        if (controller.signal.aborted || !this.layers) return;
        if (event === "vehicles") { this.layers.applyVehicles(data); this.legend.render(this.layers, this.theme!); }
        else if (event === "sensors") this.layers.applySensors(data);
        else if (event === "staff") this.layers.applyStaff(data);
        else if (event === "cases") { this.layers.applyCases(data); if (!data.full) this.ticker.add(data.items); }
        else if (event === "board") this.renderBoard(data);
      },
    }, controller.signal);
  }

  private pickVehicle(event: L.LeafletMouseEvent): void {
    if (this.wartime.drawing) return;
    const hit = this.layers?.vehicles?.pick(event.containerPoint);
    if (!hit) return;
    L.popup().setLatLng([hit.lat, hit.lon]).setContent(
      `<b>${t("vehicle")} ${hit.id}</b><br>${hit.dataset}<br>${t("speed")}: ${hit.speed.toFixed(0)} km/h<br>` +
      `${t("updated")}: ${new Date(hit.ts * 1000).toLocaleTimeString()}`).openOn(this.map);
  }
}

async function main(): Promise<void> {
  document.documentElement.lang = currentLang() === "zh" ? "zh-CN" : "en";
  const [city] = await Promise.all([loadCity(), requireUser((u) => u.scopes.includes("maps:read"))]);
  await new BigScreen(city).start();
}

void main();
