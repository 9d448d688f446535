// For data stewards: dataset registrations, each dataset's dead letters, data contribution.

import { api } from "../lib/api";
import { h, replace } from "../lib/dom";
import { fmtTime, t } from "../lib/i18n";

interface Dataset { name: string; version: number; registered_at: string; registration: { title: string; owner: string; kind: string } }
interface Letter { id: number; row_number: number; reason: string; raw: string; received_at: string; batch_id: string }
interface Contribution { department: string; dataset: string; received: number; accepted: number; rejected: number; validity_rate: number }

export async function renderData(root: HTMLElement): Promise<void> {
  const letters = h("div", { class: "card", "data-testid": "dead-letters" }, h("h3", {}, t("dead_letters")), h("p", { class: "muted" }, "←"));
  let datasets: Dataset[] = [];
  let contribution: Contribution[] = [];
  try {
    [datasets, contribution] = await Promise.all([api<Dataset[]>("/api/datasets"), api<Contribution[]>("/api/contribution")]);
  } catch (error) {
    replace(root, h("p", { class: "error" }, (error as Error).message));
    return;
  }
  const show = async (name: string) => {
    const rows = await api<Letter[]>(`/api/datasets/${name}/dead-letters`, { query: { limit: 200 } });
    replace(letters, h("h3", {}, `${t("dead_letters")} · ${name} (${rows.length})`),
      rows.length ? h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, [t("row"), t("reason"), t("raw"), t("received")].map((x) => h("th", {}, x)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {}, String(r.row_number)), h("td", {}, r.reason),
          h("td", {}, h("pre", { class: "raw" }, r.raw)), h("td", {}, fmtTime(r.received_at)))))) : h("p", { class: "muted" }, t("no_data")));
  };
  replace(root,
    h("div", { class: "case-page" },
      h("div", {},
        h("div", { class: "card" }, h("h3", {}, t("datasets")),
          h("table", { class: "grid", "data-testid": "datasets" },
            h("thead", {}, h("tr", {}, ["", t("title"), t("owner"), t("kind"), t("version")].map((x) => h("th", {}, x)))),
            h("tbody", {}, datasets.map((d) => h("tr", { class: "row", "data-dataset": d.name, onclick: () => void show(d.name) },
              h("td", {}, d.name), h("td", {}, d.registration.title), h("td", {}, d.registration.owner), h("td", {}, d.registration.kind), h("td", {}, `v${d.version}`)))))),
        h("div", { class: "card" }, h("h3", {}, t("contribution")),
          h("table", { class: "grid" },
            h("thead", {}, h("tr", {}, [t("owner"), "", t("received"), t("accepted"), t("rejected"), t("validity")].map((x) => h("th", {}, x)))),
            h("tbody", {}, contribution.map((c) => h("tr", {}, h("td", {}, c.department), h("td", {}, c.dataset),
              h("td", {}, String(c.received)), h("td", {}, String(c.accepted)), h("td", {}, String(c.rejected)),
              h("td", {}, `${(100 * c.validity_rate).toFixed(1)}%`))))))),
      letters));
}
