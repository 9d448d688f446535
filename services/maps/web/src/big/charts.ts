// ECharts from the board's neutral chart data ({kind, labels, series, threshold}); only the
// chart types used are bundled.

import { BarChart, GaugeChart, LineChart, PieChart } from "echarts/charts";
import { GraphicComponent, GridComponent, LegendComponent, MarkLineComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import { t, type Text, tx } from "../lib/i18n";

echarts.use([BarChart, PieChart, LineChart, GaugeChart, GraphicComponent, GridComponent, TooltipComponent,
  LegendComponent, MarkLineComponent, CanvasRenderer]);

export interface ChartData {
  id: string; kind: string; labels?: Text[]; value?: number | null;
  series?: Array<{ name: Text | null; values: number[] }>; threshold?: number | null;
}

const COLORS = ["#38bdf8", "#a78bfa", "#34d399", "#fbbf24", "#f472b6", "#fb923c", "#60a5fa", "#f87171", "#2dd4bf"];

function rem(): number { return parseFloat(getComputedStyle(document.documentElement).fontSize) || 14; }

export function chartOption(kind: string, data: ChartData): echarts.EChartsCoreOption {
  const size = rem();
  const labels = (data.labels ?? []).map((l) => tx(l));
  const values = data.series?.[0]?.values ?? [];
  const text = { color: "#cbd5e1", fontSize: size * 0.8 };
  const empty = values.length === 0;
  const base = {
    // No animation: boards are pushed every few seconds and would replay it each time.
    color: COLORS, animation: false, textStyle: text,
    tooltip: { trigger: kind === "pie" ? "item" : "axis", textStyle: { fontSize: size * 0.85 } },
    graphic: empty ? [{ type: "text", left: "center", top: "middle", style: { text: t("no_data"), fill: "#64748b", fontSize: size } }] : [],
  };
  if (kind === "pie") {
    if (empty) return { ...base, series: [] };
    return { ...base, legend: { show: true, bottom: 0, type: "scroll", textStyle: { ...text, fontSize: size * 0.75 },
      itemWidth: size * 0.8, itemHeight: size * 0.6, pageTextStyle: text },
    series: [{
      type: "pie", radius: ["38%", "62%"], center: ["50%", "45%"], avoidLabelOverlap: true,
      label: { color: "#e2e8f0", fontSize: size * 0.8, formatter: "{c}" },
      data: labels.map((name, i) => ({ name, value: values[i] })),
    }] };
  }
  if (kind === "rank") {
    return { ...base, grid: { left: "3%", right: "12%", top: 8, bottom: 8, containLabel: true },
      xAxis: { type: "value", axisLabel: text, splitLine: { lineStyle: { color: "#1e293b" } } },
      yAxis: { type: "category", inverse: true, data: labels, axisLabel: { ...text, width: size * 9, overflow: "truncate" } },
      series: [{ type: "bar", data: values, barMaxWidth: size, label: { show: true, position: "right", color: "#e2e8f0", fontSize: size * 0.75 },
        itemStyle: { color: new echarts.graphic.LinearGradient(0, 0, 1, 0, [{ offset: 0, color: "#0ea5e9" }, { offset: 1, color: "#22d3ee" }]) } }] };
  }
  if (kind === "gauge") {
    return { ...base, series: [{ type: "gauge", data: [{ value: data.value ?? 0 }], detail: { fontSize: size * 1.4, color: "#e2e8f0" } }] };
  }
  const line = kind === "line";
  return { ...base,
    grid: { left: "3%", right: "4%", top: 16, bottom: 4, containLabel: true },
    xAxis: { type: "category", data: labels, axisLabel: { ...text, interval: line ? "auto" : 0, rotate: labels.length > 5 && !line ? 30 : 0, width: size * 6, overflow: "truncate" },
      axisLine: { lineStyle: { color: "#334155" } } },
    yAxis: { type: "value", minInterval: 1, axisLabel: text, splitLine: { lineStyle: { color: "#1e293b" } } },
    series: [{ type: line ? "line" : "bar", data: values, smooth: line, barMaxWidth: size * 1.6,
      areaStyle: line ? { opacity: 0.25 } : undefined,
      markLine: data.threshold != null ? { symbol: "none", data: [{ yAxis: data.threshold }],
        lineStyle: { color: "#ef4444", type: "dashed" }, label: { color: "#ef4444", fontSize: size * 0.75 } } : undefined,
      itemStyle: data.threshold != null ? { color: (p: any) => (p.value > data.threshold! ? "#ef4444" : "#38bdf8") } : undefined }] };
}

export class Charts {
  private instances = new Map<string, echarts.ECharts>();

  mount(id: string, element: HTMLElement): void {
    this.instances.get(id)?.dispose();
    this.instances.set(id, echarts.init(element, undefined, { renderer: "canvas" }));
  }

  set(id: string, kind: string, data: ChartData): void {
    this.instances.get(id)?.setOption(chartOption(kind, data), { notMerge: true, lazyUpdate: true });
  }

  resize(): void { this.instances.forEach((c) => c.resize()); }

  dispose(): void { this.instances.forEach((c) => c.dispose()); this.instances.clear(); }
}
