// Compiled by `make lint` (tsc --noEmit) against dist's declarations: typed usage of the client
// must type-check as written in docs/client.md.
import RTDelivery, { Client, RTDeliveryError, TRANSPORTS, VERSION } from "rtdelivery";
import type { RTEvent, TransportName } from "rtdelivery";

const names: TransportName[] = TRANSPORTS;
const version: string = VERSION;
const client = new Client({ url: "/rt/", transports: ["ws", "sse"] });
const off: () => void = client.on("open", ({ transport }) => console.log(transport));
off();
const sub = client.subscribe<{ text: string }>("chat.lobby", (event: RTEvent<{ text: string }>) => {
  const text: string = event.data.text;
  console.log(event.seq, text);
});
sub.unsubscribe();
client
  .publish("chat.lobby", { text: "hi" }, { type: "message" })
  .then(({ seq, id }) => console.log(seq, id))
  .catch((error: unknown) => {
    if (error instanceof RTDeliveryError) console.log(error.code, error.status);
  });
const same: typeof Client = RTDelivery.Client;
const classic: typeof Client = globalThis.RTDelivery.Client;
console.log(names, version, same === classic);
