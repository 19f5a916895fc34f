// Tools: the tool definitions editor (a JSON array, checked before sending) and the tool
// calls of an answer, built up from the stream's deltas (each call's name arrives first,
// its arguments in pieces) and shown as the function's name and its arguments as
// pretty-printed JSON.

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

  /** The calls as an assistant message's ``tool_calls``. */
  toMessage() {
    return this.calls.filter(Boolean).map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    }));
  }
}
