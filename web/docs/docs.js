/* The docs page: Swagger UI (npm swagger-ui-dist, served by the gateway) over the merged OpenAPI
 * document. No external requests: no validator badge, no persisted key (an API key typed into
 * "Authorize" lives only as long as the page). */
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  window.ui = window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    displayRequestDuration: true,
    filter: true,
  });
});
