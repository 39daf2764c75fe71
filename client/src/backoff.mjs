// Reconnect delays.

/** Full jitter: a random delay in [0, min(max, base * 2^attempt)) milliseconds. */
export function backoffDelay(base, max, attempt) {
  var cap = Math.min(max, base * Math.pow(2, Math.min(attempt, 30)));
  return Math.floor(Math.random() * cap);
}
