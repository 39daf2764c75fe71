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

/** `length` random characters of [A-Za-z0-9_-] (crypto when there is one). */
export function randomId(length) {
  var alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  var bytes = new Uint8Array(length);
  var c = globalThis.crypto;
  if (c && typeof c.getRandomValues === "function") {
    c.getRandomValues(bytes);
  } else {
    for (var i = 0; i < length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  var out = "";
  for (var j = 0; j < length; j++) out += alphabet.charAt(bytes[j] & 63);
  return out;
}

/**
 * An idempotency key for a publish: crypto.randomUUID(), which only secure contexts (https,
 * localhost) have; elsewhere 32 random characters of the same alphabet the server accepts.
 */
export function newKey() {
  var c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") {
    try {
      return c.randomUUID();
    } catch (_) {
      // Not a secure context in a browser that throws instead of leaving it out.
    }
  }
  return randomId(32);
}
