// RTDeliveryError and the reading of the server's error answers.

/** An error from rtdelivery: `code` is the server's error code when it sent one. */
export class RTDeliveryError extends Error {
  constructor(message, code, status, detail) {
    super(message);
    this.name = "RTDeliveryError";
    this.code = code || "error";
    this.status = status || 0;
    this.detail = detail;
    /** The topic this error is about (a refused subscription), else null. */
    this.topic = detail && typeof detail.topic === "string" ? detail.topic : null;
  }
}

/** Reads an rtdelivery JSON error answer into an RTDeliveryError. */
export async function httpError(response) {
  var code = "http_" + response.status;
  var message = "HTTP " + response.status;
  var detail;
  try {
    var body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      detail = body.error;
    }
  } catch (_) {
    // Not JSON (a proxy's page): keep the status.
  }
  return new RTDeliveryError(message, code, response.status, detail);
}

export function isAbort(error) {
  return error && (error.name === "AbortError" || error.code === "stopped");
}

/**
 * The topic an error is about: the server's `"topic"`, else (servers before it said so) the
 * longest of `topics` its message names, quoted. Null when it names none.
 */
export function errorTopic(error, topics) {
  if (!error) return null;
  if (error.topic && topics.indexOf(error.topic) >= 0) return error.topic;
  if (error.topic) return null;
  var message = String(error.message || "");
  var found = null;
  topics.forEach(function (topic) {
    var named = ["'", '"', "`"].some(function (q) { return message.indexOf(q + topic + q) >= 0; });
    if (named && (found === null || topic.length > found.length)) found = topic;
  });
  return found;
}
