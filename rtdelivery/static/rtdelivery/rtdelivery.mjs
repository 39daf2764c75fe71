import "./rtdelivery.js";
export const Client = globalThis.RTDelivery.Client;
export default globalThis.RTDelivery;
