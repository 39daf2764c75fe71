// Hook for tab sharing (`new Client({shared: true})`): one connection per origin and url for
// all the tabs of a browser. An implementation (shared.mjs) installs itself with
// useSharedClient(factory); `factory(options, client)` returns the object the constructor
// gives instead (or null to keep the plain client). Without one, `shared` is ignored.

var factory = null;

export function useSharedClient(fn) {
  factory = typeof fn === "function" ? fn : null;
}

export function sharedClient(options, client) {
  return factory ? factory(options, client) : null;
}
