// The city's reference data (divisions, categories, units), loaded once per page.

import { currentLang, tx } from "./i18n";

export interface Category {
  code: string; group: string; name: string; name_en: string; department: string;
  handling_level: string; accept_within_minutes: number; dispose_within_hours: number; priority: string;
}
export interface Unit { id: string; level: string; department: string; name: string; name_en?: string; parent: string | null; division: string }
export interface City {
  divisions: GeoJSON.FeatureCollection;
  categories: Category[];
  units: Unit[];
  departments: Array<{ code: string; name: string; name_en: string }>;
  groups_en: Record<string, string>;
  bbox: [number, number, number, number];
}

let city: City | null = null;
const byCode = new Map<string, Category>();
const byUnit = new Map<string, Unit>();
const divisionNames = new Map<string, { zh: string; en: string }>();

export async function loadCity(): Promise<City> {
  if (city) return city;
  const response = await fetch("/api/city");
  city = (await response.json()) as City;
  city.categories.forEach((c) => byCode.set(c.code, c));
  city.units.forEach((u) => byUnit.set(u.id, u));
  for (const f of city.divisions.features) {
    const p = f.properties as any;
    divisionNames.set(p.code, { zh: p.name, en: p.name_en ?? p.name });
  }
  return city;
}

export function theCity(): City {
  if (!city) throw new Error("city not loaded");
  return city;
}

export function categoryName(code: string | null | undefined): string {
  const c = code ? byCode.get(code) : undefined;
  if (!c) return currentLang() === "zh" ? "未分类" : "Unclassified";
  return currentLang() === "zh" ? c.name : c.name_en;
}

export function category(code: string | null | undefined): Category | undefined {
  return code ? byCode.get(code) : undefined;
}

export function groupName(group: string | null | undefined): string {
  if (!group) return currentLang() === "zh" ? "未分类" : "Unclassified";
  return currentLang() === "zh" ? group : (city?.groups_en[group] ?? group);
}

export function unitName(id: string | null | undefined): string {
  if (!id) return "—";
  const u = byUnit.get(id);
  return u ? tx({ zh: u.name, en: u.name_en ?? u.name }) : id;
}

export function divisionName(code: string | null | undefined): string {
  const d = code ? divisionNames.get(code) : undefined;
  return d ? tx(d) : (code ?? "—");
}
