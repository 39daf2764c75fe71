// Entry of the classic-script build (rtdelivery.js): the same API as `globalThis.RTDelivery`.
import RTDelivery from "./index.mjs";

globalThis.RTDelivery = RTDelivery;
