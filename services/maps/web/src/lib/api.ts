// Calls to the maps service with the signed-in person's token, and its live feed
// (server-sent events read with fetch, because EventSource cannot send a bearer token).

import { token, onUnauthorized } from "./auth";

export class ApiError extends Error {
  constructor(public status: number, public detail: string, public service?: string) {
    super(detail);
  }
}

type Query = Record<string, string | number | boolean | Array<string> | undefined | null>;

function url(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
    else params.append(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export async function api<T = any>(path: string, options: { method?: string; body?: unknown; query?: Query } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url(path, options.query), {
    method: options.method ?? (options.body === undefined ? "GET" : "POST"),
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401) void onUnauthorized();
    throw new ApiError(response.status, body?.detail ?? response.statusText, body?.extra?.service);
  }
  return body as T;
}

export interface LiveHandlers {
  onEvent(event: string, data: any): void;
  onState?(connected: boolean): void;
}

/** Follow an SSE endpoint until `signal` aborts, reconnecting with back-off. */
export async function follow(path: string, handlers: LiveHandlers, signal: AbortSignal): Promise<void> {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${token()}` }, signal,
      });
      if (response.status === 401) { await onUnauthorized(); continue; }
      if (!response.ok || !response.body) throw new Error(`live feed: ${response.status}`);
      handlers.onState?.(true);
      delay = 1000;
      await readEvents(response.body, handlers.onEvent);
    } catch (error) {
      if (signal.aborted) return;
      console.warn("live feed interrupted", error);
    }
    handlers.onState?.(false);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function readEvents(stream: ReadableStream<Uint8Array>, emit: (event: string, data: any) => void): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length) emit(event, JSON.parse(data.join("\n")));
        event = "message";
        data = [];
      } else if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
  }
}
