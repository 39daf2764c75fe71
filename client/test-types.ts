// Compiled by `make lint` (tsc --noEmit) against the committed rtdelivery.d.ts: typed use of
// the client, as docs/client.md shows it, must type-check.
import RTDelivery, { Client, RTDeliveryError, TRANSPORTS, VERSION } from "rtdelivery";
import type {
  ClientState,
  OutboxEntry,
  PresenceSnapshot,
  RTEvent,
  Subscription,
  SubscriptionState,
  TransportName,
} from "rtdelivery";

const names: TransportName[] = TRANSPORTS;
const version: string = VERSION;
const client = new Client({
  url: "/rt/",
  transports: ["ws", "sse"],
  livenessTimeout: 5000,
  outboxTimeout: 60000,
  getToken: async () => "token",
});
const off: () => void = client.on("open", ({ transport }) => console.log(transport));
off();
client.on("state", ({ state, previous }) => {
  const now: ClientState = state;
  console.log(now, previous, client.online);
});
client.on("subscription", ({ topic, state, error }) => console.log(topic, state, error?.code));
client.on("outbox", ({ size }) => console.log(size, client.outbox.length));

interface Message {
  text: string;
}
const sub: Subscription = client.subscribe<Message>(
  "chat.lobby",
  (event: RTEvent<Message>) => {
    const text: string = event.data.text;
    console.log(event.seq, text);
  },
  {
    onState: (state: SubscriptionState) => console.log(state),
    onError: (error) => console.log(error.code, error.topic),
  },
);
if (sub.state === "refused" && sub.error) console.log(sub.error.topic);
sub.unsubscribe();

client
  .publish("chat.lobby", { text: "hi" }, { type: "message", key: "my-key-1" })
  .then(({ seq, id, duplicate }) => console.log(seq, id, duplicate === true))
  .catch((error: unknown) => {
    if (error instanceof RTDeliveryError) console.log(error.code, error.status);
  });
const waiting: OutboxEntry[] = client.outbox;
console.log(waiting.map((entry) => [entry.key, entry.state]));

client.history<Message>("chat.lobby", { limit: 50 }).then(({ events, cursor, recovered }) => {
  console.log(events.map((event) => event.data.text), cursor, recovered);
});
const watch = client.watchPresence("chat.lobby", (snapshot: PresenceSnapshot) => {
  console.log(snapshot.count, snapshot.users.map((user) => user.name));
});
console.log(watch.snapshot?.count);
watch.stop();

const error = new RTDeliveryError("refused", "forbidden", 403);
const same: typeof Client = RTDelivery.Client;
const classic: typeof Client = globalThis.RTDelivery.Client;
console.log(names, version, same === classic, error.code);
