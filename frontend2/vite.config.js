import { fileURLToPath } from 'node:url'
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The build ships inside the Python package: rebalance_opt/server.py serves this folder.
const outDir = fileURLToPath(new URL('../rebalance_opt/web', import.meta.url))
const apiPort = process.env.REBALANCE_OPT_PORT ?? '8765'

export default defineConfig({
  plugins: [react()],
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` against a running `python cli.py serve ACCOUNT`
    proxy: { '/api': `http://127.0.0.1:${apiPort}` },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.js'],
    include: ['src/**/*.test.{js,jsx}'],
    css: false,
  },
})
