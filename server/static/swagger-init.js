// Starts Swagger UI on /docs. A file, not an inline <script>, so the page's CSP needs no
// 'unsafe-inline' for scripts. FastAPI's default options, minus its CDN.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  oauth2RedirectUrl: window.location.origin + "/docs/oauth2-redirect",
  presets: [SwaggerUIBundle.presets.apis],
});
