// The sidebar's request fields: sampling parameters, the local engine's extensions,
// response_format (JSON mode or a JSON schema from the editor), tools and tool_choice,
// logprobs, store and metadata. Only what the user set is sent, so the server's own
// defaults apply to the rest. A schema or tools editor that is not valid JSON is an
// inline error and nothing is sent.

import { byTestId, el, showError } from "./dom.js";
import { parseTools } from "./tools.js";

const NUMBERS = {
  temperature: parseFloat,
  top_p: parseFloat,
  max_tokens: (v) => parseInt(v, 10),
  seed: (v) => parseInt(v, 10),
  n: (v) => parseInt(v, 10),
  top_k: (v) => parseInt(v, 10),
  min_p: parseFloat,
  repetition_penalty: parseFloat,
  min_tokens: (v) => parseInt(v, 10),
};

/** Parse the schema editor's text: an object, or an error message. */
export function parseSchema(text) {
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (e) {
    return { error: `The schema is not valid JSON: ${e.message}` };
  }
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
    return { error: "The schema must be a JSON object." };
  }
  return { schema };
}

export class Params {
  constructor(root = document) {
    this.format = byTestId("response-format", root);
    this.schemaEditor = byTestId("schema-editor", root);
    this.schemaError = byTestId("schema-error", root);
    this.toolsError = byTestId("tools-error", root);
    this.metadataRows = byTestId("metadata-rows", root);
    this.format.addEventListener("change", () => {
      this.schemaEditor.hidden = this.format.value !== "json_schema";
    });
    byTestId("metadata-add", root).addEventListener("click", () => this.addMetadataRow());
    this.addMetadataRow();
  }

  /** One more key/value pair for the stored completion's metadata. */
  addMetadataRow(key = "", value = "") {
    const row = el(
      "div",
      { class: "meta-row", "data-testid": "metadata-row" },
      el("input", {
        "aria-label": "metadata key",
        placeholder: "key",
        "data-testid": "metadata-key",
        value: key,
      }),
      el("input", {
        "aria-label": "metadata value",
        placeholder: "value",
        "data-testid": "metadata-value",
        value,
      }),
      el("button", {
        type: "button",
        class: "small",
        "aria-label": "remove this metadata pair",
        text: "×",
        onclick: () => row.remove(),
      }),
    );
    this.metadataRows.append(row);
  }

  value(id) {
    return document.getElementById(id).value.trim();
  }

  /**
   * The request fields, or ``null`` when an editor holds invalid JSON (its inline error
   * is shown). ``logprobs`` and ``jsonMode`` tell the chat view how to show the answer.
   */
  read() {
    const fields = {};
    for (const [name, parse] of Object.entries(NUMBERS)) {
      const raw = this.value(name);
      if (raw !== "") fields[name] = parse(raw);
    }
    const stop = this.value("stop")
      .split("\n")
      .map((s) => s.replace(/\\n/g, "\n"))
      .filter((s) => s !== "");
    if (stop.length) fields.stop = stop.length === 1 ? stop[0] : stop;

    let ok = true;
    showError(this.schemaError, "");
    if (this.format.value === "json_object") fields.response_format = { type: "json_object" };
    if (this.format.value === "json_schema") {
      const { schema, error } = parseSchema(document.getElementById("schema").value);
      showError(this.schemaError, error);
      if (error) ok = false;
      else {
        fields.response_format = {
          type: "json_schema",
          json_schema: { name: this.value("schema_name") || "answer", schema, strict: true },
        };
      }
    }

    const { tools, error: toolsError } = parseTools(document.getElementById("tools").value);
    showError(this.toolsError, toolsError);
    if (toolsError) ok = false;
    if (tools) {
      fields.tools = tools;
      if (!document.getElementById("parallel_tool_calls").checked) fields.parallel_tool_calls = false;
    }
    const choice = this.value("tool_choice");
    if (choice) fields.tool_choice = choice;

    if (document.getElementById("logprobs").checked) {
      fields.logprobs = true;
      const top = this.value("top_logprobs");
      if (top !== "") fields.top_logprobs = parseInt(top, 10);
    }
    if (document.getElementById("store").checked) {
      fields.store = true;
      const metadata = {};
      for (const row of this.metadataRows.querySelectorAll('[data-testid="metadata-row"]')) {
        const key = row.querySelector('[data-testid="metadata-key"]').value.trim();
        const val = row.querySelector('[data-testid="metadata-value"]').value;
        if (key) metadata[key] = val;
      }
      if (Object.keys(metadata).length) fields.metadata = metadata;
    }
    return ok ? fields : null;
  }
}
