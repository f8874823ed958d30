import { defineConfig } from 'vite';

// A static page: relative asset paths, so dist/ can be served from any path or opened by
// `ble-ota web`. The protocol package resolves to its browser entry (the `browser` condition).
export default defineConfig({
  base: './',
  build: { outDir: 'dist', target: 'es2022', emptyOutDir: true },
  logLevel: 'warn',
});
