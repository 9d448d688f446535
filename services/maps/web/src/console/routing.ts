// Routing rules (dispatch owns them): list, add, enable/disable, and before saving, a preview
// of where a case of a category, place and time would go with and without the new rule.
// Dispatch answers the preview by its own routing function (POST /rules/preview), nothing saved.
// Shown as unavailable while the dispatch service is not deployed.

import { api, ApiError } from "../lib/api";
import { categoryName, divisionName, theCity, unitName } from "../lib/city";
import { h, replace, toast } from "../lib/dom";
import { fmtTime, t } from "../lib/i18n";

interface Rule { rule_id: number; version: number; updated_at: string; updated_by: string;
  rule: { lead: string; level: string | null; category: string | null; district: string | null; street: string | null;
    from_hour: number | null; to_hour: number | null; assisting: string[]; order: number; enabled: boolean; description: string } }

interface Decision { lead: string; assisting: string[]; priority: string; rule_id: number | null; rule_version: number | null;
  emergency_id: number | null; reason: string; level: string | null }
interface Preview { current: Decision; with_rule: Decision | null }

function localNow(): string {
  const d = new Date();
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 16);
}

function decision(label: string, d: Decision, which: string): HTMLElement {
  return h("div", { class: "decision", "data-decision": which, "data-lead": d.lead, "data-rule": String(d.rule_id ?? "") },
    h("span", { class: "muted" }, `${label} → `), h("b", {}, unitName(d.lead)),
    d.assisting.length ? ` + ${d.assisting.map(unitName).join("、")}` : "",
    d.level ? h("span", { class: "muted" }, ` · ${t(`level_${d.level}`)}`) : "",
    d.rule_id != null ? h("span", { class: "muted" }, ` (${t("by_rule")} #${d.rule_id} v${d.rule_version ?? ""})`) : "",
    d.reason ? h("div", { class: "muted" }, d.reason) : null);
}

export async function renderRouting(root: HTMLElement): Promise<void> {
  let rules: Rule[];
  try {
    const answer = await api<Rule[] | { items: Rule[] }>("/api/routing/rules");
    rules = Array.isArray(answer) ? answer : answer.items;
  } catch (error) {
    const e = error as ApiError;
    replace(root, h("p", { class: "notice" }, e.status === 503 ? t("dispatch_absent") : e.detail));
    return;
  }
  const city = theCity();
  const category = h("select", { name: "category" }, h("option", { value: "" }, t("all")),
    city.categories.map((c) => h("option", { value: c.code }, `${c.code} ${categoryName(c.code)}`)));
  const division = h("select", { name: "division" }, h("option", { value: "" }, t("all")),
    city.divisions.features.map((f) => h("option", { value: (f.properties as any).code }, divisionName((f.properties as any).code))));
  const lead = h("select", { name: "lead" }, city.units.map((u) => h("option", { value: u.id }, unitName(u.id))));
  const order = h("input", { type: "number", value: "0", style: { width: "5rem" } });
  const description = h("input", { placeholder: t("note") });
  const at = h("input", { type: "datetime-local", name: "at", value: localNow() });
  const preview = h("div", { class: "route-preview", "data-testid": "route-preview", hidden: true });
  const draft = (): Record<string, unknown> => {
    const code = division.value;
    const body: Record<string, unknown> = { lead: lead.value, order: Number(order.value), description: description.value };
    if (category.value) body.category = category.value;
    if (code.length === 6) body.district = code; else if (code.length === 9) body.street = code;
    return body;
  };
  const save = async () => {
    try { await api("/api/routing/rules", { body: draft() }); toast(t("done")); await renderRouting(root); }
    catch (error) { toast((error as ApiError).detail, "error"); }
  };
  const showPreview = async () => {
    const rule = draft();
    const place = { district: rule.district ?? null, street: rule.street ?? null };
    preview.hidden = false;
    replace(preview, "…");
    try {
      const answer = await api<Preview>("/api/routing/preview", { body: {
        case: { category: rule.category ?? null, ...place, at: new Date(at.value).toISOString() }, rule } });
      replace(preview, decision(t("preview_current"), answer.current, "current"),
        answer.with_rule ? decision(t("preview_with_rule"), answer.with_rule, "with-rule") : null);
    } catch (error) {
      const e = error as ApiError;
      replace(preview, h("p", { class: "notice", "data-preview": "absent" }, e.status === 503 ? t("preview_absent") : e.detail));
    }
  };
  const toggle = async (r: Rule) => {
    try { await api(`/api/routing/rules/${r.rule_id}`, { method: "PUT", body: { ...r.rule, enabled: !r.rule.enabled } }); await renderRouting(root); }
    catch (error) { toast((error as ApiError).detail, "error"); }
  };
  replace(root,
    h("div", { class: "card" }, h("h3", {}, t("add_rule")),
      h("div", { class: "filters" }, t("category"), category, t("division"), division, t("lead_unit"), lead, t("order"), order, description,
        t("at_hour"), at, h("button", { "data-action": "preview", onclick: () => void showPreview() }, t("preview")),
        h("button", { class: "primary", onclick: () => void save() }, t("save"))), preview),
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["#", t("category"), t("division"), t("lead_unit"), t("order"), t("version"), t("updated"), ""].map((x) => h("th", {}, x)))),
      h("tbody", {}, rules.map((r) => h("tr", {},
        h("td", {}, String(r.rule_id)), h("td", {}, r.rule.category ? categoryName(r.rule.category) : t("all")),
        h("td", {}, divisionName(r.rule.street ?? r.rule.district) === "—" ? t("all") : divisionName(r.rule.street ?? r.rule.district)),
        h("td", {}, `${unitName(r.rule.lead)}${r.rule.assisting.length ? ` + ${r.rule.assisting.map(unitName).join("、")}` : ""}`),
        h("td", {}, String(r.rule.order)), h("td", {}, `v${r.version}`), h("td", {}, `${fmtTime(r.updated_at)} ${r.updated_by}`),
        h("td", {}, h("button", { onclick: () => void toggle(r) }, r.rule.enabled ? "✓" : "✗")))))));
}
