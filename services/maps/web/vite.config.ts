// Builds the three screens into the Python package (cityos_maps/static), so the service runs
// without node; build-info.json records a hash of the sources, which a Python test compares
// with the sources in the tree to catch a build that was not redone.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const ROOT = fileURLToPath(new URL(".", import.meta.url));
const OUT = resolve(ROOT, "../cityos_maps/static");
// What the build is made of (the Python test hashes the same list, in the same order).
const SOURCES = ["index.html", "console.html", "field.html", "package-lock.json", "vite.config.ts",
  "tsconfig.json", "src"];

function files(path: string): string[] {
  const full = join(ROOT, path);
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full).sort().flatMap((name) => files(join(path, name)));
}

function buildInfo(): Plugin {
  return {
    name: "cityos-build-info",
    closeBundle() {
      const hash = createHash("sha256");
      for (const file of SOURCES.flatMap(files).sort()) {
        hash.update(relative(ROOT, join(ROOT, file)).split("\\").join("/") + "\0");
        hash.update(readFileSync(join(ROOT, file)));
        hash.update("\0");
      }
      writeFileSync(join(OUT, "build-info.json"),
        JSON.stringify({ sources_sha256: hash.digest("hex"), sources: SOURCES }, null, 1) + "\n");
    },
  };
}

export default defineConfig({
  root: ROOT,
  base: "/",
  plugins: [buildInfo()],
  build: {
    outDir: OUT,
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      input: {
        index: resolve(ROOT, "index.html"),
        console: resolve(ROOT, "console.html"),
        field: resolve(ROOT, "field.html"),
      },
    },
  },
  server: {
    // `npm run dev`: the pages from Vite, the data from a running cityos-maps.
    proxy: { "/api": "http://127.0.0.1:8010" },
  },
});
