// The live event list: each case that changed, newest first.

import { categoryName, divisionName } from "../lib/city";
import { h } from "../lib/dom";
import { statusText, t } from "../lib/i18n";
import type { CaseView } from "../map/layers";

const MAX = 40;

export class Ticker {
  readonly list = h("ol", { class: "ticker-list" });
  private title = h("h3", {}, t("events_ticker"));
  readonly element = h("div", { class: "panel ticker" }, this.title, this.list);

  relabel(): void { this.title.textContent = t("events_ticker"); }

  add(items: CaseView[]): void {
    const time = new Date().toLocaleTimeString([], { hour12: false });
    for (const c of items) {
      this.list.prepend(h("li", { class: `tick status-${c.status}`, "data-case": c.id },
        h("span", { class: "tick-time" }, time),
        h("span", { class: "tick-status" }, statusText(c.status)),
        h("span", {}, `${t("case")} #${c.id} · ${categoryName(c.category)}`),
        c.street ? h("span", { class: "muted" }, divisionName(c.street)) : null));
    }
    while (this.list.children.length > MAX) this.list.lastElementChild!.remove();
  }
}
