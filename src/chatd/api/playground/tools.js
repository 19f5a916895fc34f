// Tools: the tool definitions editor (a JSON array, checked before sending), the tool
// calls of an answer, built up from the stream's deltas (each call's name arrives first,
// its arguments in pieces) and shown as the function's name and its arguments as
// pretty-printed JSON, and the results the user types for them (one box per call id),
// sent back as ``tool`` messages so the model can go on. Only ``tools`` are offered: the
// legacy ``functions`` are not.

import { el } from "./dom.js";

/** The editor's text as a tools array (empty text: no tools), or an error message. */
export function parseTools(text) {
  if (!text.trim()) return {};
  let tools;
  try {
    tools = JSON.parse(text);
  } catch (e) {
    return { error: `The tools are not valid JSON: ${e.message}` };
  }
  if (!Array.isArray(tools)) tools = [tools];
  for (const tool of tools) {
    if (!tool || typeof tool !== "object" || !tool.function || !tool.function.name) {
      return { error: 'Each tool needs {"type": "function", "function": {"name": ...}}.' };
    }
    tool.type ??= "function";
  }
  return { tools };
}

/** Pretty JSON when the arguments parse (they do once complete), else the raw text. */
function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** The tool calls of one choice, rendered into ``container`` as they stream in. */
export class ToolCallsView {
  constructor(container) {
    this.container = container;
    this.calls = [];
  }

  /** Apply one chunk's ``delta.tool_calls``. */
  update(deltas) {
    for (const delta of deltas) {
      let call = this.calls[delta.index];
      if (!call) {
        call = { id: "", name: "", arguments: "" };
        call.nameNode = el("div", { class: "tool-name", "data-testid": "tool-name" });
        call.argsNode = el("pre", { class: "tool-args", "data-testid": "tool-args" });
        call.node = el(
          "div",
          { class: "tool-call", "data-testid": "tool-call" },
          el("span", { class: "badge", text: "tool call" }),
          call.nameNode,
          call.argsNode,
        );
        this.calls[delta.index] = call;
        this.container.append(call.node);
      }
      if (delta.id) call.id = delta.id;
      const fn = delta.function || {};
      if (fn.name) call.name += fn.name;
      if (fn.arguments) call.arguments += fn.arguments;
      call.nameNode.textContent = call.name;
      call.argsNode.textContent = pretty(call.arguments);
    }
  }

  /** The calls as an assistant message's ``tool_calls``, exactly as they were received. */
  toMessage() {
    return this.calls.filter(Boolean).map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    }));
  }

  /**
   * A result box under every call and one "Send results" button, enabled once every box
   * holds something (the API needs one ``tool`` message per call id). ``onSend`` gets the
   * ``tool`` messages, in the calls' order.
   */
  offerResults(onSend) {
    return new ToolResultsForm(this.container, this.calls.filter(Boolean), onSend);
  }
}

/** The result boxes of one answer's calls and their Send results button. */
class ToolResultsForm {
  constructor(container, calls, onSend) {
    this.locked = false;
    this.boxes = calls.map((call) => {
      const box = el("textarea", {
        class: "tool-result",
        rows: "2",
        spellcheck: "false",
        placeholder: "the tool's result (e.g. JSON)",
        "aria-label": `result of ${call.name} (${call.id})`,
        "data-testid": "tool-result",
        "data-call-id": call.id,
      });
      box.addEventListener("input", () => this.refresh());
      call.node.append(el("label", { class: "tool-result-label", text: "result" }), box);
      return { id: call.id, box };
    });
    this.button = el("button", {
      type: "button",
      class: "primary small",
      "data-testid": "send-tool-results",
      text: "Send results",
      onclick: () => {
        if (this.complete()) onSend(this.messages());
      },
    });
    this.hint = el("span", { class: "muted", "data-testid": "tool-results-hint" });
    this.node = el("div", { class: "tool-results" }, this.button, this.hint);
    container.append(this.node);
    this.refresh();
  }

  complete() {
    return !this.locked && this.boxes.every(({ box }) => box.value.trim() !== "");
  }

  refresh() {
    this.button.disabled = !this.complete();
    if (this.locked) return;
    const missing = this.boxes.filter(({ box }) => box.value.trim() === "").length;
    this.hint.textContent = missing ? `${missing} result${missing > 1 ? "s" : ""} to fill in` : "";
  }

  /** One ``tool`` message per call, its content exactly as typed. */
  messages() {
    return this.boxes.map(({ id, box }) => ({ role: "tool", tool_call_id: id, content: box.value }));
  }

  /** No more sending from here: the results went (``sent``) or the conversation moved on. */
  lock(sent) {
    this.locked = true;
    for (const { box } of this.boxes) box.readOnly = true;
    this.button.disabled = true;
    this.button.hidden = true;
    this.hint.textContent = sent ? "results sent" : "not answered";
    this.node.dataset.state = sent ? "sent" : "abandoned";
  }

  /** Sending failed (an API error): the results can be sent again. */
  unlock() {
    this.locked = false;
    for (const { box } of this.boxes) box.readOnly = false;
    this.button.hidden = false;
    delete this.node.dataset.state;
    this.refresh();
  }
}
