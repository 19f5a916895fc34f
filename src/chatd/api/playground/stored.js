// The stored-completions browser, for the key in use: the list (newest first, filtered
// by model and one metadata pair, paged with ``after``), one completion opened (its
// messages from /messages, tool calls and results included, its answer, metadata and
// usage) and deleted. A list the
// server refuses (a page size out of 1..100, say) shows its error inline.

import { getJSON, request } from "./api.js";
import { byTestId, el, showError } from "./dom.js";

const BASE = "/v1/chat/completions";

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function preview(completion) {
  const message = completion.choices?.[0]?.message;
  const text = message?.content ?? (message?.tool_calls?.length ? "(tool calls)" : "");
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** A message's tool calls, each as ``name(arguments)``. */
function toolCalls(message) {
  return (message.tool_calls || []).map((t) =>
    el("pre", {
      class: "tool-args",
      "data-testid": "stored-tool-call",
      text: `${t.function.name}(${t.function.arguments})`,
    }),
  );
}

/** A stored message's role line: a tool result names the call it answers (its id as is). */
function roleLine(m) {
  return el(
    "div",
    { class: "role" },
    m.role,
    m.tool_call_id
      ? el("code", { class: "call-id", "data-testid": "stored-call-id", text: m.tool_call_id })
      : null,
  );
}

/** Text content as is; parts as JSON; none (an assistant's tool calls only) as nothing. */
function contentText(content) {
  if (content === null || content === undefined) return "";
  return typeof content === "string" ? content : JSON.stringify(content);
}

function metadataPills(metadata) {
  return Object.entries(metadata || {}).map(([k, v]) =>
    el("span", { class: "pill", "data-testid": "stored-metadata", text: `${k}=${v}` }),
  );
}

export class StoredBrowser {
  constructor(root = document) {
    this.form = byTestId("stored-filters", root);
    this.list = byTestId("stored-list", root);
    this.more = byTestId("stored-more", root);
    this.detail = byTestId("stored-detail", root);
    this.error = byTestId("stored-error", root);
    this.lastId = null;
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.search();
    });
    this.more.addEventListener("click", () => this.load(true));
  }

  /** The list's query: limit, newest first, the filters, and ``after`` for the next page. */
  query(next) {
    const data = new FormData(this.form);
    const limit = String(data.get("limit") || "").trim() || "20";
    const params = new URLSearchParams({ limit, order: "desc" });
    const model = String(data.get("model") || "").trim();
    const key = String(data.get("key") || "").trim();
    if (model) params.set("model", model);
    if (key) params.set(`metadata[${key}]`, String(data.get("value") || ""));
    if (next && this.lastId) params.set("after", this.lastId);
    return params;
  }

  search() {
    return this.load(false);
  }

  async load(next) {
    showError(this.error, "");
    let page;
    try {
      page = await getJSON(`${BASE}?${this.query(next)}`);
    } catch (error) {
      showError(this.error, error.message);
      return;
    }
    const rows = page.data.map((c) => this.row(c));
    if (next) this.list.append(...rows);
    else this.list.replaceChildren(...rows);
    if (!this.list.children.length) {
      const text = "No stored completion matches.";
      this.list.append(el("li", { class: "muted", "data-testid": "stored-empty", text }));
    }
    this.lastId = page.last_id ?? this.lastId;
    this.more.hidden = !page.has_more;
  }

  row(completion) {
    return el(
      "li",
      { "data-testid": "stored-row", "data-id": completion.id },
      el(
        "button",
        { type: "button", class: "stored-open", onclick: () => this.open(completion.id) },
        el("code", { text: completion.id }),
        el("span", { class: "muted", text: ` ${completion.model} · ${when(completion.created)}` }),
        el("div", { class: "preview", text: preview(completion) }),
        el("div", {}, metadataPills(completion.metadata)),
      ),
    );
  }

  async open(id) {
    showError(this.error, "");
    let completion, messages;
    try {
      const path = `${BASE}/${encodeURIComponent(id)}`;
      [completion, messages] = await Promise.all([
        getJSON(path),
        getJSON(`${path}/messages?limit=100`),
      ]);
    } catch (error) {
      showError(this.error, error.message);
      return;
    }
    const usage = completion.usage;
    this.detail.replaceChildren(
      el("h2", {}, el("code", { "data-testid": "stored-detail-id", text: completion.id })),
      el("p", { class: "muted", text: `${completion.model} · ${when(completion.created)}` }),
      el("div", {}, metadataPills(completion.metadata)),
      el("h3", { text: "Messages" }),
      ...messages.data.map((m) =>
        el(
          "div",
          { class: `message ${m.role}`, "data-testid": "stored-message" },
          roleLine(m),
          contentText(m.content),
          ...toolCalls(m),
        ),
      ),
      el("h3", { text: "Answer" }),
      ...completion.choices.map((c) =>
        el(
          "div",
          { class: "message assistant", "data-testid": "stored-answer" },
          el("div", { class: "role", text: `choice ${c.index} · ${c.finish_reason}` }),
          c.message.content ?? "",
          ...toolCalls(c.message),
        ),
      ),
      usage
        ? el("p", {
            class: "usage",
            text: `prompt ${usage.prompt_tokens} · completion ${usage.completion_tokens} tokens`,
          })
        : null,
      el(
        "button",
        {
          type: "button",
          class: "danger",
          "data-testid": "stored-delete",
          onclick: () => this.remove(id),
        },
        "Delete",
      ),
    );
  }

  async remove(id) {
    showError(this.error, "");
    try {
      await request(`${BASE}/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (error) {
      showError(this.error, error.message);
      return;
    }
    this.list.querySelector(`[data-id="${CSS.escape(id)}"]`)?.remove();
    this.detail.replaceChildren(
      el("p", { class: "muted", "data-testid": "stored-deleted", text: `Deleted ${id}.` }),
    );
  }
}
