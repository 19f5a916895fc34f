// The model picker: every model id the key may use (GET /chatd/models) with the state of
// each of its routes: the local engine (loaded, loading, unloaded) or a channel
// (available, cooling down). Models that cannot answer now are listed but disabled.

import { getJSON } from "./api.js";
import { el } from "./dom.js";

/** One route in words: "local · loaded", "channel openai", "openai: cooling down (12s)". */
export function describeRoute(route) {
  if (route.kind === "local") return `local · ${route.state}`;
  if (route.state === "cooling_down") {
    const left = Math.ceil(route.cooling_seconds_left ?? 0);
    return `channel ${route.name} · cooling down (${left}s)`;
  }
  return `channel ${route.name}`;
}

/** The picker's label of a model: its id and its routes' states. */
function label(model) {
  const routes = model.routes.map(describeRoute).join(", ");
  return `${model.id} — ${routes}${model.available ? "" : " — unavailable"}`;
}

export class ModelPicker {
  constructor(select, routesList) {
    this.select = select;
    this.routesList = routesList;
    this.models = [];
    select.addEventListener("change", () => this.showRoutes());
  }

  /** The chosen model id ("" when none can be chosen). */
  get value() {
    return this.select.value;
  }

  /** (Re)load the list, keeping the current choice when it is still available. */
  async load() {
    const previous = this.select.value;
    const list = await getJSON("/chatd/models");
    this.models = list.data;
    this.select.replaceChildren(
      ...this.models.map((m) =>
        el("option", {
          value: m.id,
          disabled: !m.available,
          "data-available": String(m.available),
          text: label(m),
        }),
      ),
    );
    const usable = this.models.filter((m) => m.available).map((m) => m.id);
    if (usable.includes(previous)) this.select.value = previous;
    else if (usable.length) this.select.value = usable[0];
    this.showRoutes();
  }

  /** The chosen model's routes, one line each, under the picker. */
  showRoutes() {
    const model = this.models.find((m) => m.id === this.select.value);
    const items = (model ? model.routes : []).map((route) =>
      el("li", {
        "data-testid": "model-route",
        "data-kind": route.kind,
        "data-state": route.state,
        class: `route ${route.state}`,
        text: describeRoute(route),
      }),
    );
    if (!this.models.length) items.push(el("li", { class: "muted", text: "no model" }));
    this.routesList.replaceChildren(...items);
  }
}
