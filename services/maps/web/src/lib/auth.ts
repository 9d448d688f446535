// Sign-in for every page: the access token and its refresh token live in sessionStorage (gone
// with the tab). The short-lived access token is renewed with the refresh token before it
// expires; each renewal answers a new refresh token (the old one is used up), so the password
// is never kept anywhere. Signing out revokes the refresh token at the identity service.

import { h, replace } from "./dom";
import { t } from "./i18n";

export interface User {
  sub: string; name: string; unit: string; department: string;
  roles: string[]; scopes: string[]; sees_all: boolean; expires_at: string | null;
}
interface Session { token: string; user: User; expiresAt: number; refresh: string | null; refreshExpiresAt: number }

const KEY = "cityos.session";
const MARGIN_MS = 60000;  // renew this long before the access token expires
let session: Session | null = load();
let renewTimer: number | undefined;
let renewing: Promise<Session> | null = null;
let promptOpen: Promise<Session> | null = null;
let requirement: (user: User) => boolean = () => true;

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    const value = raw ? (JSON.parse(raw) as Session) : null;
    const usable = value && (value.expiresAt > Date.now() + 5000 ||
      (value.refresh && value.refreshExpiresAt > Date.now() + 5000));
    return usable ? value : null;
  } catch { return null; }
}

export function token(): string { return session?.token ?? ""; }
export function user(): User | null { return session?.user ?? null; }
export function hasScope(scope: string): boolean { return !!session?.user.scopes.includes(scope); }

async function post(path: string, body: unknown): Promise<any> {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail ?? response.statusText);
  return answer;
}

function keep(body: any): Session {
  const now = Date.now();
  const next: Session = { token: body.access_token, user: body.user,
    expiresAt: now + (body.expires_in ?? 600) * 1000, refresh: body.refresh_token ?? null,
    refreshExpiresAt: now + (body.refresh_expires_in ?? 0) * 1000 };
  session = next;
  sessionStorage.setItem(KEY, JSON.stringify(next));
  scheduleRenewal();
  return next;
}

async function signIn(username: string, password: string): Promise<Session> {
  return keep(await post("/api/session", { username, password }));
}

/** A new access token for the refresh token (one renewal at a time: a refresh token is
 * single use, and a second use would end the sign-in). */
function renew(): Promise<Session> {
  if (renewing) return renewing;
  const refresh = session?.refresh;
  if (!refresh) return Promise.reject(new Error("no refresh token"));
  renewing = post("/api/session/refresh", { refresh_token: refresh }).then(keep)
    .finally(() => { renewing = null; });
  return renewing;
}

function scheduleRenewal(): void {
  window.clearTimeout(renewTimer);
  if (!session?.refresh) return;
  const wait = Math.max(0, session.expiresAt - Date.now() - MARGIN_MS);
  renewTimer = window.setTimeout(() => { renew().catch(() => void prompt()); }, wait);
}

function forget(): void {
  window.clearTimeout(renewTimer);
  session = null;
  sessionStorage.removeItem(KEY);
}

export function signOut(): void {
  const refresh = session?.refresh;
  forget();
  const done = refresh
    ? fetch("/api/session/end", { method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }) }).catch(() => undefined)
    : Promise.resolve();
  void done.then(() => location.reload());
}

/** Called on a 401: renew with the refresh token, else ask to sign in again (once, however
 * many calls failed). */
export async function onUnauthorized(): Promise<unknown> {
  if (session?.refresh) {
    try { return await renew(); } catch { /* used up, revoked or expired: sign in again */ }
  }
  forget();
  return prompt();
}

/** The signed-in user, asking for a sign-in first when needed; `allowed` says whether this
 * user may use the page (else the form says so and offers to switch accounts). */
export async function requireUser(allowed: (user: User) => boolean): Promise<User> {
  requirement = allowed;
  if (session && session.expiresAt <= Date.now() + MARGIN_MS) {
    await renew().catch(() => forget());  // back after a while: renew before the first call
  }
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
