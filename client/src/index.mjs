/*!
 * rtdelivery: the browser client of rtdelivery, the Django app for real-time delivery.
 *
 *   import { Client } from "rtdelivery";
 *   const client = new Client();  // url from {% rtdelivery_config %}, else "/rt/"
 *   client.subscribe("chat.lobby", (event) => console.log(event.seq, event.data));
 *   await client.publish("chat.lobby", { text: "hi" });
 *
 * Transports, in fallback order: WebSocket ("ws"), Server-Sent Events ("sse"), long polling
 * ("longpoll"), short polling ("poll"). The client keeps a cursor per topic and resumes from it
 * on every (re)connection, on every transport; events are delivered exactly once, in seq order,
 * per topic. See docs/client.md for the whole contract.
 */
import { backoffDelay } from "./backoff.mjs";
import { Client } from "./client.mjs";
import { TRANSPORTS as ALL_TRANSPORTS, VERSION } from "./constants.mjs";
import { RTDeliveryError } from "./errors.mjs";
import { createSharedClient } from "./shared.mjs";
import { useSharedClient } from "./sharing.mjs";

// Tab sharing (`new Client({shared: true})`, shared.mjs) is in both builds.
useSharedClient(createSharedClient);

/** The transport names, in the default fallback order. */
export const TRANSPORTS = ALL_TRANSPORTS.slice();

export { Client, RTDeliveryError, VERSION, backoffDelay };

/** The namespace, as the classic script's `RTDelivery` global. */
export default { VERSION, TRANSPORTS, Client, RTDeliveryError, backoffDelay };
