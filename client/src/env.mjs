// What the browser offers: cookies, the page's URL and configuration, transport support.

export function readCookie(name) {
  if (typeof document === "undefined" || !document.cookie) return null;
  var parts = document.cookie.split(";");
  for (var i = 0; i < parts.length; i++) {
    var part = parts[i].trim();
    if (part.slice(0, name.length + 1) === name + "=") {
      return decodeURIComponent(part.slice(name.length + 1));
    }
  }
  return null;
}

export function baseHref() {
  return typeof location !== "undefined" ? location.href : undefined;
}

/** The configuration rendered by Django's `{% rtdelivery_config %}` tag, or {}. */
export function pageConfig() {
  var doc = globalThis.document;
  var element = doc && doc.getElementById ? doc.getElementById("rtdelivery-config") : null;
  if (!element) return {};
  try {
    return JSON.parse(element.textContent) || {};
  } catch (error) {
    return {};
  }
}

export function supported(name) {
  if (name === "ws") return typeof WebSocket !== "undefined";
  if (name === "sse") {
    return typeof fetch !== "undefined" && typeof TextDecoder !== "undefined" &&
      typeof ReadableStream !== "undefined";
  }
  return typeof fetch !== "undefined";
}
