// Sign-in for every page: the token lives in sessionStorage (gone with the tab); the password
// only in memory, to renew the short-lived token before it expires (the identity service has
// no refresh tokens), and never where another page could read it.

import { h, replace } from "./dom";
import { t } from "./i18n";

export interface User {
  sub: string; name: string; unit: string; department: string;
  roles: string[]; scopes: string[]; sees_all: boolean; expires_at: string | null;
}
interface Session { token: string; user: User; expiresAt: number }

const KEY = "cityos.session";
let session: Session | null = load();
let credentials: { username: string; password: string } | null = null;
let renewTimer: number | undefined;
let promptOpen: Promise<Session> | null = null;
let requirement: (user: User) => boolean = () => true;

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    const value = raw ? (JSON.parse(raw) as Session) : null;
    return value && value.expiresAt > Date.now() + 5000 ? value : null;
  } catch { return null; }
}

export function token(): string { return session?.token ?? ""; }
export function user(): User | null { return session?.user ?? null; }
export function hasScope(scope: string): boolean { return !!session?.user.scopes.includes(scope); }

async function signIn(username: string, password: string): Promise<Session> {
  const response = await fetch("/api/session", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ?? response.statusText);
  const next = { token: body.access_token, user: body.user,
    expiresAt: Date.now() + (body.expires_in ?? 600) * 1000 } as Session;
  session = next;
  credentials = { username, password };
  sessionStorage.setItem(KEY, JSON.stringify(next));
  scheduleRenewal();
  return next;
}

function scheduleRenewal(): void {
  window.clearTimeout(renewTimer);
  if (!session || !credentials) return;
  const wait = Math.max(5000, session.expiresAt - Date.now() - 60000);
  renewTimer = window.setTimeout(async () => {
    if (!credentials) return;
    try { await signIn(credentials.username, credentials.password); }
    catch { onUnauthorized(); }
  }, wait);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
  session = null;
  credentials = null;
  location.reload();
}

/** Called on a 401: ask to sign in again (once, however many calls failed). */
export function onUnauthorized(): Promise<unknown> {
  session = null;
  sessionStorage.removeItem(KEY);
  return prompt();
}

/** The signed-in user, asking for a sign-in first when needed; `allowed` says whether this
 * user may use the page (else the form says so and offers to switch accounts). */
export async function requireUser(allowed: (user: User) => boolean): Promise<User> {
  requirement = allowed;
  if (session && allowed(session.user)) { scheduleRenewal(); return session.user; }
  return (await prompt()).user;
}

function prompt(): Promise<Session> {
  if (promptOpen) return promptOpen;
  promptOpen = new Promise<Session>((resolve) => {
    const error = h("p", { class: "signin-error", role: "alert" });
    const name = h("input", { name: "username", autocomplete: "username", required: true, placeholder: t("username") });
    const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, placeholder: t("password") });
    const form = h("form", { class: "signin-card" },
      h("h1", {}, t("app_name")), h("p", { class: "muted" }, t("sign_in_needed")),
      h("label", {}, t("username"), name), h("label", {}, t("password"), pass), error,
      h("button", { type: "submit", class: "primary" }, t("sign_in")));
    const overlay = h("div", { class: "signin-overlay" }, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      replace(error);
      try {
        const next = await signIn(name.value.trim(), pass.value);
        if (!requirement(next.user)) {
          replace(error, `${t("not_permitted")} (${next.user.roles.join(", ") || "—"})`);
          return;
        }
        overlay.remove();
        promptOpen = null;
        resolve(next);
      } catch (e) {
        replace(error, `${t("sign_in_failed")}: ${(e as Error).message}`);
      }
    });
    document.body.appendChild(overlay);
    name.focus();
  });
  return promptOpen;
}
