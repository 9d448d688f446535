// The operators' console (middle screen): case queue, case page with actions, routing rules,
// dataset registrations and dead letters. Views are addressed by the hash: #queue, #case/12,
// #routing, #data.

import "../styles/base.css";
import "../styles/console.css";
import { api } from "../lib/api";
import { hasScope, requireUser, signOut, user } from "../lib/auth";
import { loadCity } from "../lib/city";
import { h, replace } from "../lib/dom";
import { currentLang, onLangChange, setLang, t } from "../lib/i18n";
import { renderCase } from "./case";
import { renderData } from "./data";
import { renderQueue } from "./queue";
import { renderRouting } from "./routing";

const app = document.getElementById("app")!;
const main = h("main", { class: "cs-main" });
const services = h("div", { class: "services" });

function header(): HTMLElement {
  const view = location.hash.slice(1).split("/")[0] || "queue";
  const tab = (id: string, label: string, allowed = true) => allowed
    ? h("button", { class: view === id || (id === "queue" && view === "case") ? "active" : "", "data-view": id,
      onclick: () => { location.hash = id; } }, label) : null;
  return h("header", { class: "cs-header" },
    h("h1", {}, t("console_title")),
    h("nav", {}, tab("queue", t("queue"), hasScope("cases:read")), tab("routing", t("routing"), hasScope("cases:dispatch")),
      tab("data", t("data"), hasScope("ingest:read"))),
    services,
    h("button", { class: "ghost", onclick: () => setLang(currentLang() === "zh" ? "en" : "zh") }, currentLang() === "zh" ? "EN" : "中"),
    h("span", { class: "who" }, `${user()!.name} · ${user()!.unit}`),
    h("button", { class: "ghost", onclick: signOut }, t("sign_out")));
}

async function showServices(): Promise<void> {
  try {
    const status = await api<Record<string, boolean>>("/api/services");
    replace(services, ...Object.entries(status).map(([name, up]) =>
      h("span", { class: `svc ${up ? "up" : "down"}`, title: t("services") }, name)));
  } catch { /* the badges are a convenience */ }
}

async function route(): Promise<void> {
  replace(app, header(), main);
  const [view, arg] = location.hash.slice(1).split("/");
  if (view === "case" && arg) await renderCase(main, Number(arg));
  else if (view === "routing") await renderRouting(main);
  else if (view === "data" || (!hasScope("cases:read") && hasScope("ingest:read"))) await renderData(main);
  else await renderQueue(main);
}

async function start(): Promise<void> {
  document.documentElement.lang = currentLang() === "zh" ? "zh-CN" : "en";
  await Promise.all([loadCity(), requireUser((u) =>
    ["cases:dispatch", "cases:act", "ingest:read"].some((s) => u.scopes.includes(s)) && !u.roles.every((r) => r === "field_staff"))]);
  window.addEventListener("hashchange", () => void route());
  onLangChange(() => void route());
  await route();
  void showServices();
  setInterval(() => void showServices(), 30000);
}

void start();
