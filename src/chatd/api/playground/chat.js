// The chat: the conversation, one streamed answer at a time (POST /v1/chat/completions
// with stream and usage), every choice of n shown, the Stop button (aborting the fetch
// closes the connection; chatd then cancels the generation and frees its engine slot),
// tool calls (and the results typed for them, sent back as the next turn), logprobs,
// JSON answers checked, errors shown inline with OpenAI's message, and each answer's
// usage and timings.

import { request, sseEvents } from "./api.js";
import { byTestId, el } from "./dom.js";
import { appendTokens } from "./logprobs.js";
import { ToolCallsView } from "./tools.js";

/** One choice of an answer: its box, text, tool calls and finish reason. */
class ChoiceView {
  constructor(index, showIndex) {
    this.index = index;
    this.text = "";
    this.finish = null;
    this.body = el("div", { class: "content", "data-testid": "choice-content" });
    this.tools = el("div", { class: "tool-calls" });
    this.extra = el("div", { class: "extra" });
    this.node = el(
      "div",
      { class: "choice", "data-testid": "choice", "data-index": String(index) },
      showIndex ? el("div", { class: "choice-label", text: `choice ${index}` }) : null,
      this.body,
      this.tools,
      this.extra,
    );
    this.toolCalls = new ToolCallsView(this.tools);
  }

  /** One chunk's ``choices[i]``: text (as shaded tokens when logprobs came), calls. */
  apply(choice) {
    const delta = choice.delta || {};
    if (delta.content) {
      this.text += delta.content;
      if (choice.logprobs && choice.logprobs.content) {
        appendTokens(this.body, choice.logprobs.content);
      } else {
        this.body.append(delta.content);
      }
    }
    if (delta.refusal) this.body.append(el("em", { text: delta.refusal }));
    if (delta.tool_calls) this.toolCalls.update(delta.tool_calls);
    if (choice.finish_reason) this.finish = choice.finish_reason;
  }

  /** JSON mode: the answer parsed and pretty-printed, or why it does not parse. */
  showJSON() {
    try {
      const value = JSON.parse(this.text);
      this.extra.append(
        el("div", { class: "badge ok", text: "valid JSON" }),
        el("pre", { class: "json", "data-testid": "json-view", text: JSON.stringify(value, null, 2) }),
      );
    } catch (e) {
      this.extra.append(
        el("div", { class: "badge bad", "data-testid": "json-invalid", text: `not JSON: ${e.message}` }),
      );
    }
  }

  /** Ended with whole tool calls (not cut by max_tokens): the user may answer them. */
  answerable() {
    return this.finish !== null && this.finish !== "length" && this.toolCalls.toMessage().length > 0;
  }

  /** This choice as the conversation's assistant message (``content`` null beside calls). */
  message() {
    const calls = this.toolCalls.toMessage();
    if (!calls.length) return { role: "assistant", content: this.text };
    return { role: "assistant", content: this.text || null, tool_calls: calls };
  }
}

/** Usage in words: prompt / cached / completion tokens, time to first token and total. */
function usageText(usage, ttft, total) {
  const parts = [];
  if (usage) {
    const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
    parts.push(
      `prompt ${usage.prompt_tokens}`,
      `cached ${cached}`,
      `completion ${usage.completion_tokens} tokens`,
    );
  }
  if (ttft !== null) parts.push(`first token ${Math.round(ttft)} ms`);
  parts.push(`total ${Math.round(total)} ms`);
  return parts.join(" · ");
}

/**
 * The conversation. ``history`` holds what the next request repeats: each turn's input
 * (a user message, or the assistant's tool calls and their results) and choice 0's reply
 * (with n > 1 the first choice continues). An answer whose choice 0 ends in tool calls is
 * ``pending``: its result boxes wait under the calls. Sending the results makes the calls
 * and the ``tool`` messages the next turn's input; a new user message instead keeps only
 * the answer's text (calls without results would be refused by the API).
 */
export class Chat {
  constructor({ models, params, root = document }) {
    this.models = models;
    this.params = params;
    this.history = [];
    this.pending = null; // {choice, form}: the last answer's tool calls, not answered yet
    this.cleared = 0; // Clear during an answer: that answer joins no conversation
    this.controller = null;
    this.transcript = byTestId("transcript", root);
    this.prompt = byTestId("prompt", root);
    this.sendButton = byTestId("send", root);
    this.stopButton = byTestId("stop", root);
    this.system = byTestId("system-prompt", root);
    byTestId("composer", root).addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.prompt.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.send();
      }
    });
    this.stopButton.addEventListener("click", () => this.stop());
    byTestId("clear", root).addEventListener("click", () => this.clear());
  }

  clear() {
    this.stop();
    this.cleared += 1;
    this.history = [];
    this.pending = null;
    this.transcript.replaceChildren();
  }

  stop() {
    if (this.controller) this.controller.abort();
  }

  busy(on) {
    this.sendButton.disabled = on;
    this.stopButton.disabled = !on;
  }

  /** A user message: the next turn. Tool calls left unanswered keep only their text. */
  async send() {
    const text = this.prompt.value.trim();
    if (!text || this.controller) return;
    const fields = this.params.read();
    if (fields === null) return; // an editor's inline error says why
    if (this.pending) {
      const { choice, form } = this.pending;
      this.pending = null;
      form.lock(false);
      if (choice.text) this.history.push({ role: "assistant", content: choice.text });
    }
    const user = { role: "user", content: text };
    this.prompt.value = "";
    this.transcript.append(
      el(
        "div",
        { class: "message user", "data-testid": "user-message" },
        el("div", { class: "role", text: "user" }),
        text,
      ),
    );
    await this.turn([user], fields);
  }

  /**
   * The results typed for the pending tool calls: the assistant message with its calls
   * as received and one ``tool`` message per call, then the next answer, streamed with
   * the sidebar's current fields (the tools stay declared; tool_choice is the panel's).
   * If the API refuses it, the results can be sent again.
   */
  async sendResults(results) {
    if (!this.pending || this.controller) return;
    const fields = this.params.read();
    if (fields === null) return;
    const pending = this.pending;
    this.pending = null;
    pending.form.lock(true);
    const cleared = this.cleared;
    const ok = await this.turn([pending.choice.message(), ...results], fields);
    if (!ok && cleared === this.cleared) {
      this.pending = pending;
      pending.form.unlock();
    }
  }

  /**
   * Stream one answer to the conversation so far plus ``input``. Unless it failed (or
   * Clear came meanwhile), ``input`` and choice 0's reply join the history (a stopped
   * answer's text so far too). Resolves to whether it joined.
   */
  async turn(input, fields) {
    const system = this.system.value.trim();
    const messages = [...(system ? [{ role: "system", content: system }] : []), ...this.history, ...input];
    const body = {
      model: this.models.value,
      messages,
      ...fields,
      stream: true,
      stream_options: { include_usage: true },
    };
    const answer = new AnswerView(this.transcript, body.n ?? 1);
    this.controller = new AbortController();
    this.busy(true);
    const cleared = this.cleared;
    try {
      await answer.run(body, this.controller.signal);
      if (answer.node.dataset.state === "error" || cleared !== this.cleared) return false;
      this.history.push(...input);
      const choice = answer.choice(0);
      if (answer.node.dataset.state === "done" && choice.answerable()) {
        // held back until answered (or not): see send() and sendResults()
        this.pending = { choice, form: choice.toolCalls.offerResults((r) => this.sendResults(r)) };
      } else if (choice.text) {
        this.history.push({ role: "assistant", content: choice.text });
      }
      return true;
    } finally {
      this.controller = null;
      this.busy(false);
      this.transcript.scrollTop = this.transcript.scrollHeight;
    }
  }
}

/** One answer being streamed: its choices, status line and usage line. */
class AnswerView {
  constructor(transcript, n) {
    this.n = n;
    this.transcript = transcript;
    this.choices = new Map();
    this.choicesNode = el("div", { class: "choices" });
    this.status = el("span", {
      class: "status",
      "data-testid": "answer-status",
      "data-state": "streaming",
      text: "streaming…",
    });
    this.usage = el("span", { class: "usage", "data-testid": "usage" });
    this.meta = el("div", { class: "meta" }, this.status, this.usage);
    this.node = el(
      "div",
      { class: "message assistant", "data-testid": "answer" },
      el("div", { class: "role", text: "assistant" }),
      this.choicesNode,
      this.meta,
    );
    transcript.append(this.node);
    for (let i = 0; i < n; i++) this.choice(i);
  }

  choice(index) {
    if (!this.choices.has(index)) {
      const view = new ChoiceView(index, this.n > 1);
      this.choices.set(index, view);
      this.choicesNode.append(view.node);
    }
    return this.choices.get(index);
  }

  /** Keep the newest text in view, unless the reader scrolled up to read. */
  follow() {
    const t = this.transcript;
    if (t.scrollHeight - t.scrollTop - t.clientHeight < 80) t.scrollTop = t.scrollHeight;
  }

  setStatus(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
    this.node.dataset.state = state;
  }

  /** Stream the answer; whatever happens, the status line says how it ended. */
  async run(body, signal) {
    const started = performance.now();
    let ttft = null;
    let usage = null;
    let id = null;
    try {
      const resp = await request("/v1/chat/completions", { method: "POST", body, signal });
      for await (const chunk of sseEvents(resp)) {
        id = chunk.id || id;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const d = choice.delta || {};
          if (ttft === null && (d.content || d.tool_calls || d.refusal)) ttft = performance.now() - started;
          this.choice(choice.index).apply(choice);
        }
        this.follow();
      }
      const reasons = [...this.choices.values()].map((c) => c.finish);
      this.setStatus("done", `done (${[...new Set(reasons)].join(", ")})`);
      if (body.response_format && body.response_format.type !== "text") {
        for (const view of this.choices.values()) view.showJSON();
      }
      if (body.store && id) {
        this.meta.append(
          el("span", { class: "stored-id", "data-testid": "completion-id", text: `stored as ${id}` }),
        );
      }
    } catch (error) {
      if (error.name === "AbortError") {
        this.setStatus("stopped", "stopped");
      } else {
        this.setStatus("error", "error");
        this.node.append(
          el("div", { class: "error", role: "alert", "data-testid": "error", text: error.message }),
        );
      }
    }
    this.usage.textContent = usageText(usage, ttft, performance.now() - started);
    return this;
  }
}
