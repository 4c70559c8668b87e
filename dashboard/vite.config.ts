import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The node's admin listener serves the bundle at /dashboard/ from --dashboard-dir, whose default
// is target/dashboard. `npm run dev` proxies the API to a local node (WSGATE_ADMIN_URL).
export default defineConfig({
  base: '/dashboard/',
  plugins: [react()],
  build: {
    outDir: '../target/dashboard',
    emptyOutDir: true,
  },
  server: {
    proxy: {
      '/api': process.env.WSGATE_ADMIN_URL ?? 'http://127.0.0.1:8081',
    },
  },
});
