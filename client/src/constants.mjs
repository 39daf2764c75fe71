// Names and numbers of the wire protocol (docs/protocol.md) and of the client.

export const VERSION = "0.1.0";
export const TRANSPORTS = ["ws", "sse", "longpoll", "poll"];
export const STATE_EVENTS = [
  "connecting", "open", "transport", "subscribed", "recovered", "reset", "presence",
  "disconnected", "error", "closed", "ended", "unsubscribed", "state", "subscription", "outbox",
  // Tab sharing's; accepted on a plain client too (never emitted there), as declared.
  "leader",
];
// client.state values (docs/client.md, "States").
export const STATES = ["idle", "connecting", "open", "reconnecting", "offline", "closed"];
// Subscription states: waiting for the server, confirmed, refused by it, left.
export const SUB_STATES = ["pending", "live", "refused", "ended"];
// Close codes of the WebSocket protocol (docs/protocol.md). Daphne lets an application close
// only with 1000 or 3000-4999, so there rtdelivery closes with stand-ins: 4002 for 1001,
// 4008 for 1008, 4009 for 1009, 4011 for 1011, 4013 for 1013.
export const WS_TOO_SLOW = 4001;
export const STAND_INS = { 4002: 1001, 4008: 1008, 4009: 1009, 4011: 1011, 4013: 1013 };
export const WS_GOING_AWAY = 1001;
export const WS_POLICY = 1008;
// Too many open connections for this user or address (the WebSocket's HTTP 429).
export const WS_TOO_MANY_CONNECTIONS = 4029;
// The connection token expired (after an error frame with the cursor): refresh, resume.
export const WS_TOKEN_EXPIRED = 4003;
// The server ended this user's access (rtdelivery.disconnect(), logout): don't reconnect.
export const WS_ACCESS_ENDED = 4004;
// rt.close / error-frame reasons that are not an end of access.
export const RESUMABLE_REASONS = ["too_slow", "going_away", "token_expired"];
// Backoff attempt floors: "don't hammer" after a policy close or a 429/403.
export const POLICY_ATTEMPT_FLOOR = 5;
export const RATE_ATTEMPT_FLOOR = 3;
export const MAX_CATCH_UP_PAGES = 1000;
// Error codes that refuse one topic (the others of the request are fine): the client drops that
// topic from its request and goes on with the rest at once.
export const TOPIC_REFUSALS = ["forbidden", "token_topics", "invalid_topic"];
// Publish answers after which the same publish (same key) is sent again later.
export const RETRY_PUBLISH_STATUS = [408, 425, 429, 500, 502, 503, 504];
