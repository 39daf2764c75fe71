/**
 * The client events of `Client` and `SharedClient`: `on`, `off` and `_emit`, on a
 * `_listeners` Map, for the event names `names`. One copy, mixed into both prototypes.
 */
export function listenerMethods(names) {
  return {
    /** Calls `fn(data)` on client event `name`; returns a function that removes it. */
    on(name, fn) {
      if (names.indexOf(name) < 0) {
        throw new TypeError("Unknown event " + JSON.stringify(name) + "; expected one of " + names.join(", ") + ".");
      }
      if (!this._listeners.has(name)) this._listeners.set(name, new Set());
      var set = this._listeners.get(name);
      set.add(fn);
      return function () { set.delete(fn); };
    },

    /** Removes a listener added with on(). */
    off(name, fn) {
      var set = this._listeners.get(name);
      if (set) set.delete(fn);
    },

    _emit(name, data) {
      var set = this._listeners.get(name);
      if (!set) return;
      Array.from(set).forEach(function (fn) {
        try {
          fn(data);
        } catch (error) {
          // A throwing listener must not stop the others (nor report itself in a loop).
          if (name !== "error" && typeof console !== "undefined") console.error(error);
        }
      });
    },
  };
}
