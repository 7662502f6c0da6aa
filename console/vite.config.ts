import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the console with hot reload and forwards gRPC-Web
// calls (POST /steward.*) to a gateway (`steward up`; STEWARD_GATEWAY to
// change where). The production build (dist/) is served by the gateway itself.
const gateway = process.env.STEWARD_GATEWAY ?? "http://127.0.0.1:50050";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", assetsDir: "assets", sourcemap: false, chunkSizeWarningLimit: 800 },
  server: { proxy: { "^/steward\\.": { target: gateway, changeOrigin: false } } },
});
