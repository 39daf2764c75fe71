// RTDeliveryError and the reading of the server's error answers.

/** An error from rtdelivery: `code` is the server's error code when it sent one. */
export class RTDeliveryError extends Error {
  constructor(message, code, status, detail) {
    super(message);
    this.name = "RTDeliveryError";
    this.code = code || "error";
    this.status = status || 0;
    this.detail = detail;
  }
}

/** Reads an rtdelivery JSON error answer into an RTDeliveryError. */
export async function httpError(response) {
  var code = "http_" + response.status;
  var message = "HTTP " + response.status;
  try {
    var body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) {
    // Not JSON (a proxy's page): keep the status.
  }
  return new RTDeliveryError(message, code, response.status);
}

export function isAbort(error) {
  return error && (error.name === "AbortError" || error.code === "stopped");
}
