// The case queue: filter by status, category, division, overdue and text; newest first.

import { api } from "../lib/api";
import { categoryName, divisionName, theCity, unitName } from "../lib/city";
import { h, replace } from "../lib/dom";
import { fmtDue, fmtTime, STATUS, statusText, t, tx } from "../lib/i18n";
import { STATUS_COLORS } from "../map/layers";

interface CaseItem {
  case_id: number; title: string; status: string; category: string | null; report_count: number;
  location: { street: string | null; district: string | null }; handling_unit: string | null;
  first_reported_at: string; dispose_due: string | null; channels: string[];
}

// The queue's filters survive going to a case and back.
const state = { statuses: new Set<string>(["received", "classified", "accepted", "returned", "reopened"]),
  category: "", division: "", overdue: false, text: "" };

export function badge(status: string): HTMLElement {
  return h("span", { class: "badge", style: { background: STATUS_COLORS[status] ?? "#64748b" }, "data-status": status }, statusText(status));
}

export async function renderQueue(root: HTMLElement): Promise<void> {
  const city = theCity();
  const body = h("tbody");
  const more = h("button", { hidden: true }, t("load_more"));
  const info = h("span", { class: "muted" });
  let cursor: string | null = null;

  const chips = Object.keys(STATUS).map((s) => h("button", {
    class: `chip${state.statuses.has(s) ? " on" : ""}`, "data-status-filter": s,
    onclick: (e: Event) => {
      if (state.statuses.has(s)) state.statuses.delete(s); else state.statuses.add(s);
      (e.target as HTMLElement).classList.toggle("on");
      void load(true);
    },
  }, statusText(s)));
  const category = h("select", { name: "category", onchange: () => { state.category = category.value; void load(true); } },
    h("option", { value: "" }, `${t("category")}: ${t("all")}`),
    city.categories.map((c) => h("option", { value: c.code, selected: c.code === state.category }, `${c.code} ${categoryName(c.code)}`)));
  const divisions = city.divisions.features.map((f) => f.properties as any);
  const division = h("select", { name: "division", onchange: () => { state.division = division.value; void load(true); } },
    h("option", { value: "" }, `${t("division")}: ${t("all")}`),
    divisions.map((d) => h("option", { value: d.code, selected: d.code === state.division },
      `${d.level === "street" ? "　" : ""}${tx({ zh: d.name, en: d.name_en ?? d.name })}`)));
  const overdue = h("input", { type: "checkbox", name: "overdue", checked: state.overdue,
    onchange: () => { state.overdue = overdue.checked; void load(true); } });
  const text = h("input", { name: "text", placeholder: t("search_text"), value: state.text });
  const search = h("button", { class: "primary", onclick: () => { state.text = text.value.trim(); void load(true); } }, t("search"));
  text.addEventListener("keydown", (e) => { if (e.key === "Enter") search.click(); });

  async function load(reset: boolean): Promise<void> {
    if (reset) { cursor = null; replace(body); }
    try {
      const page = await api<{ items: CaseItem[]; next_cursor: string | null }>("/api/cases", { query: {
        status: [...state.statuses], category: state.category, division: state.division,
        overdue: state.overdue, text: state.text.length >= 2 ? state.text : undefined, limit: 50, cursor: cursor ?? undefined,
      } });
      for (const c of page.items) body.appendChild(row(c));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      info.textContent = `${body.children.length}`;
    } catch (error) {
      replace(body, h("tr", {}, h("td", { colspan: 9, class: "error" }, (error as Error).message)));
    }
  }
  more.onclick = () => void load(false);

  replace(root,
    h("div", { class: "filters" }, h("span", { class: "muted" }, t("status")), chips),
    h("div", { class: "filters" }, category, division, h("label", {}, overdue, ` ${t("overdue")}`), text, search, info),
    h("table", { class: "grid", "data-testid": "queue" },
      h("thead", {}, h("tr", {}, ["#", t("title"), t("category"), t("status"), t("division"), t("reported"), t("due"), t("reports"), t("unit")].map((c) => h("th", {}, c)))),
      body),
    more);
  await load(true);
}

function row(c: CaseItem): HTMLElement {
  const due = fmtDue(c.dispose_due);
  return h("tr", { class: "row", "data-case": c.case_id, onclick: () => { location.hash = `case/${c.case_id}`; } },
    h("td", {}, String(c.case_id)), h("td", {}, c.title), h("td", {}, categoryName(c.category)),
    h("td", {}, badge(c.status)), h("td", {}, divisionName(c.location.street ?? c.location.district)),
    h("td", {}, fmtTime(c.first_reported_at)), h("td", { class: due.late ? "late" : "" }, due.text),
    h("td", {}, String(c.report_count)), h("td", {}, unitName(c.handling_unit)));
}
