// Vite builds the front end from ui/ into dist/ (tauri.conf.json's
// frontendDist); vitest runs ui/tests in happy-dom with mocked IPC.
import { defineConfig } from "vitest/config";
import preact from "@preact/preset-vite";

export default defineConfig({
  root: "ui",
  plugins: [preact()],
  // Tauri expects a fixed port and its own error output.
  clearScreen: false,
  server: { port: 1420, strictPort: true, host: "127.0.0.1" },
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    // The webviews Tauri 2 supports (WebKitGTK 2.40+, WebView2, Safari 15+).
    target: "es2021",
  },
  test: {
    environment: "happy-dom",
    include: ["tests/**/*.test.{ts,tsx}"],
    setupFiles: ["tests/setup.ts"],
  },
});
